"""Shared test helpers: collectors run as real subprocesses on real sockets.

chDB allows one engine path per process, so no test opens a store inside the
pytest process: collectors, the CLI and direct engine edits (tests/engine.py)
each run in their own process, on a directory of their own.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any, Optional

import pytest

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
ENGINE = str(Path(__file__).with_name("engine.py"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(30)

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(30)

    def get(self, path: str) -> Any:
        with urllib.request.urlopen(self.url + path, timeout=60) as resp:
            return json.load(resp)


def make_record(event_type: str = "resolution", **fields: Any):
    """A valid AuditRecord of the wire schema, as an SDK would send it."""
    from aitrail._ids import uuid7
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
    return collector.get("/api/v1/summary")["records"]


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


@pytest.fixture(autouse=True)
def _own_spool(tmp_path, monkeypatch):
    """Every test (and every process it starts) gets a spool directory of its own."""
    monkeypatch.setenv("AITRAIL_SPOOL_DIR", str(tmp_path / "spool"))


@pytest.fixture
def collector(tmp_path):
    proc = CollectorProc(tmp_path / "store").start()
    yield proc
    proc.stop()


@pytest.fixture
def sdk(collector):
    """The real SDK, sending to ``collector`` over gRPC."""
    import aitrail
    aitrail.configure(endpoint=collector.grpc, service="test-svc", environment="test",
                      redaction_key="test-key", flush_interval=0.05)
    yield aitrail
    aitrail.shutdown()
