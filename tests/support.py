"""Shared test helpers (fixtures are in conftest.py): collectors run as real
subprocesses on real sockets.

chDB allows one engine path per process, so no test opens a store inside the
pytest process: collectors, the CLI and direct engine edits (tests/engine.py)
each run in their own process, on a directory of their own.
"""

from __future__ import annotations

import datetime
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Optional

import pytest

ROOT = Path(__file__).resolve().parent.parent
TESTS = Path(__file__).resolve().parent
PY = sys.executable
ENGINE = str(Path(__file__).with_name("engine.py"))

# Every process a test starts runs this checkout's code, whichever venv's editable
# install (or none) the interpreter has: a git worktree tests its own sources.
os.environ["PYTHONPATH"] = os.pathsep.join(
    [str(ROOT / "sdk"), str(ROOT / "collector")]
    + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])

# Ports for the collectors tests start. A port from bind(0) is free only until the
# probe closes it; the collector binds it a second later, and under pytest-xdist
# another worker's bind(0) could be handed the same one meanwhile (gRPC sets
# SO_REUSEPORT, so two collectors could even share it without an error). So each
# worker takes its ports from a slice of its own, below the kernel's ephemeral range
# (32768-60999 by default, where bind(0) and outgoing connections take theirs),
# never the same port twice, each probed free first.
_PORT_RANGE = (20000, 32000)
_WORKER = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
_WORKERS = max(1, int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")))
_SLICE = (_PORT_RANGE[1] - _PORT_RANGE[0]) // _WORKERS
_SLICE_START = _PORT_RANGE[0] + _SLICE * (int(_WORKER[2:] or 0) % _WORKERS)
_next_port = random.Random(os.getpid()).randrange(_SLICE)  # two runs side by side differ


def free_port() -> int:
    global _next_port
    for _ in range(_SLICE):
        port = _SLICE_START + _next_port % _SLICE
        _next_port += 1
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue  # in use, or lingering (TIME_WAIT) from an earlier test
            return port
    raise RuntimeError(f"no free port in {_SLICE_START}..{_SLICE_START + _SLICE - 1}")


class CollectorProc:
    """``aitrail collector`` in a subprocess, on its own store directory."""

    def __init__(self, data_dir: Path, *extra: str):
        self.data_dir = Path(data_dir)
        self.extra = extra
        self.grpc_port = free_port()
        self.http_port = free_port()
        self.proc: Optional[subprocess.Popen] = None
        self.log = self.data_dir.parent / f"{self.data_dir.name}-collector.log"

    @property
    def grpc(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def start(self, timeout: float = 60) -> "CollectorProc":
        cmd = [PY, "-m", "aitrail.cli", "collector", "--data-dir", str(self.data_dir),
               "--grpc-listen", self.grpc, "--http-listen", f"127.0.0.1:{self.http_port}",
               *self.extra]
        self.proc = subprocess.Popen(cmd, stdout=open(self.log, "ab"), stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"collector exited {self.proc.returncode}:\n{self.log.read_text()}")
            try:
                with urllib.request.urlopen(self.url + "/healthz", timeout=1):
                    return self
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"collector did not come up:\n{self.log.read_text()}")

    def stop(self, timeout: float = 90) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                # Ask the collector for every thread's stack (faulthandler on SIGUSR1),
                # so the failure says where shutdown hung, then kill it.
                self.proc.send_signal(signal.SIGUSR1)
                time.sleep(2)
                self.kill()
                tail = self.log.read_text(errors="replace")[-8000:]
                pytest.fail(f"collector did not stop within {timeout:.0f} s of SIGTERM; "
                            f"its log ends:\n{tail}")
            if self.proc.returncode != 0:  # its shutdown watchdog fired: the log has the stacks
                tail = self.log.read_text(errors="replace")[-8000:]
                pytest.fail(f"collector exited {self.proc.returncode} on SIGTERM; its log ends:\n{tail}")

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(30)

    def get(self, path: str) -> Any:
        with urllib.request.urlopen(self.url + path, timeout=60) as resp:
            return json.load(resp)


def make_record(event_type: str = "resolution", **fields: Any):
    """A valid AuditRecord of the wire schema, as an SDK would send it."""
    from aitrail.record.ids import uuid7
    from aitrail.v1 import audit_pb2 as pb
    rec = pb.AuditRecord(record_id=uuid7(), event_type=event_type, task_id="T-raw",
                         start_time_unix_nano=time.time_ns(), service="raw-client")
    if event_type == "resolution":
        rec.resolution.outcome = "closed"
    elif event_type == "model_call":
        rec.model_call.model = "m"
    for name, value in fields.items():
        target, _, leaf = name.rpartition(".")
        obj = rec
        for part in filter(None, target.split(".")):
            obj = getattr(obj, part)
        setattr(obj, leaf, value)
    return rec


def stub(endpoint: str):
    import grpc

    from aitrail.v1 import audit_pb2_grpc
    return audit_pb2_grpc.AuditServiceStub(grpc.insecure_channel(endpoint))


def count_records(collector: CollectorProc) -> int:
    """Records clients sent; the collector's own data_access records of reads made by
    the test (each search and timeline is audited) are not counted."""
    total = collector.get("/api/v1/summary")["records"]  # counted before its own read record
    reads = collector.get("/api/v1/records?limit=1&type=data_access&service=aitrail-collector")
    # The search counts the summary's read record, not its own.
    return total - (reads["total"] - 1)


def engine(data_dir: Path, *sql: str) -> list:
    """Run statements on a store no collector holds; returns rows per statement."""
    out = subprocess.run([PY, ENGINE, str(data_dir), *sql], capture_output=True, text=True,
                         timeout=120)
    if out.returncode != 0:
        raise RuntimeError(out.stderr)
    return json.loads(out.stdout)


def cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([PY, "-m", "aitrail.cli", *args], capture_output=True, text=True,
                          timeout=timeout)


# ---------------------------------------------------------------- the console

CONSOLE_USERS = {"audrey": ("auditor", "audrey-passw0rd-long"),
                 "andy": ("analyst", "andy-passw0rd-long"),
                 "ada": ("admin", "ada-passw0rd-long!")}
BULK_TASKS = 120          # tasks of two records each, beyond the one detailed task
FORMULA = '=HYPERLINK("http://evil.example/","click")'


class ConsoleSite:
    """A collector with console accounts and a known scenario (console_scenario)."""

    def __init__(self, proc: CollectorProc, users_file: Path):
        self.proc, self.users_file = proc, users_file
        self.url, self.grpc, self.data_dir = proc.url, proc.grpc, proc.data_dir
        self.trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
        # The UTC day the scenario was sealed on (set once it is): a test of "today's"
        # period must ask for that day, not the day it runs on, or a run that crosses
        # midnight finds the scenario in yesterday's period.
        self.sealed_day: Optional[datetime.date] = None

    def api(self, path: str, token: Optional[str] = None, method: str = "GET",
            body: Optional[dict] = None) -> tuple[int, Any]:
        """(status, parsed JSON or text) of an API call with an optional bearer token."""
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method)
        if token:
            req.add_header("Authorization", f"Bearer {token}")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=60) as resp:
                status, raw, ctype = resp.status, resp.read(), resp.headers.get("content-type", "")
        except urllib.error.HTTPError as err:
            status, raw, ctype = err.code, err.read(), err.headers.get("content-type", "")
        text = raw.decode("utf-8")
        return status, json.loads(text) if "json" in ctype else text

    def token(self, role: str) -> str:
        """An API token of ``role``, owned by an enabled user of that role (else the
        first enabled user): a token acts for an existing user."""
        from aitrail_collector.web.auth.accounts import Accounts
        accounts = Accounts(str(self.users_file))
        enabled = [u for u in accounts.users() if not u["disabled"]]
        owner = next((u for u in enabled if u["role"] == role), enabled[0])["username"]
        return accounts.create_token(f"test-{role}-{time.time_ns()}", role, owner)[1]


def console_scenario(grpc_endpoint: str, trace_id: str) -> None:
    """One fully worked task (T-console-1) and BULK_TASKS small ones, as raw records."""
    from aitrail.v1 import audit_pb2 as pb
    t0 = time.time_ns() - 3_600 * 10**9
    common = {"request_id": "req-console-1", "trace_id": trace_id, "task_id": "T-console-1"}
    detailed = [
        make_record("model_call", **common, **{
            "model_call.model": "triage-llm", "model_call.model_version": "2026-10",
            "model_call.prompt_template_id": "triage", "model_call.prompt_version": "v7",
            "model_call.input": "Ticket: I was charged twice, please help",
            "model_call.output": "category: billing", "model_call.confidence": 0.62}),
        make_record("review", **common, **{
            "review.reviewer_id": "rev-ann", "review.decision": "modify",
            "review.time_spent_ms": 42_000, "review.modified_output": "category: refund",
            "review.diff": "--- model output\n+++ reviewer output\n@@ -1 +1 @@\n"
                           "-category: billing\n+category: refund",
            "review.rationale.reason_code": "wrong_category",
            "review.rationale.text": "double charge means a refund"}),
        make_record("escalation", **common, **{
            "escalation.from_reviewer": "rev-ann", "escalation.to_reviewer": "rev-sam",
            "escalation.reason": "refund above 500"}),
        make_record("resolution", **common, **{
            "resolution.outcome": "refunded", "resolution.final_decision": FORMULA}),
    ]
    bulk = []
    for i in range(BULK_TASKS):
        task = {"task_id": f"T-bulk-{i:03d}"}
        bulk.append(make_record("model_call", **task, **{
            "model_call.model": "triage-llm", "model_call.prompt_version": "v6" if i % 2 else "v7",
            "model_call.input": f"bulk ticket {i}", "model_call.output": "category: shipping"}))
        bulk.append(make_record("review", **task, **{
            "review.reviewer_id": f"rev-{i % 4}", "review.time_spent_ms": 1000 * (i + 1),
            "review.decision": "reject" if i % 5 == 0 else "approve"}))
    for n, rec in enumerate(detailed + bulk):
        rec.start_time_unix_nano = t0 + n * 10**6
        rec.end_time_unix_nano = rec.start_time_unix_nano + 1000
    client = stub(grpc_endpoint)
    for i in range(0, len(detailed + bulk), 100):
        batch = (detailed + bulk)[i:i + 100]
        assert client.Export(pb.ExportRequest(records=batch), timeout=60).accepted == len(batch)


NOT_INDEPENDENT_OK = ("OK, but this cannot detect a rewrite by someone who can write the data "
                      "directory")


def verdict(stdout: str) -> str:
    """The last line of `aitrail verify` text output, with the qualifier that a default
    setup's OK carries (its trust root sits in the data directory) read as a plain OK,
    for tests about something else."""
    last = stdout.splitlines()[-1] if stdout.splitlines() else ""
    return "OK" + last[len(NOT_INDEPENDENT_OK):] if last.startswith(NOT_INDEPENDENT_OK) else last
