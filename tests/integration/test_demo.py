"""End to end: ``aitrail demo`` writes a verifiable ledger that the CLI can read back.

The demo runs once (as a subprocess, exactly as a user runs it); the tests then
read its store with the ``aitrail`` CLI and check the numbers it printed against
what is actually in the ledger.
"""

from __future__ import annotations

import collections
import json
import random
import re
import signal
import subprocess

import pytest
from support import PY, verdict
from support import cli as _cli

from aitrail_collector.demo.scenario import SENIORS, make_tickets  # imports only; opens no store

TASKS, SEED = 200, 7


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    data_dir = str(tmp_path_factory.mktemp("demo") / "store")
    proc = _cli("demo", "--no-serve", "--data-dir", data_dir, "--grpc-listen", "127.0.0.1:0",
                "--http-listen", "127.0.0.1:0", "--tasks", str(TASKS), "--seed", str(SEED),
                timeout=180)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return data_dir, proc.stdout


def _query(data_dir: str, *args: str) -> list[dict]:
    proc = _cli("query", "--data-dir", data_dir, "--format", "json", *args)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["total"] == len(result["records"])
    return result["records"]


@pytest.fixture(scope="module")
def ledger(demo) -> list[dict]:
    """Every record the demo wrote, read back through ``aitrail query``."""
    return _query(demo[0], "--limit", "10000")


@pytest.fixture(scope="module")
def reviews(demo, ledger) -> list[dict]:
    found = _query(demo[0], "--type", "review", "--limit", "1000")
    assert found == [r for r in ledger if r["event_type"] == "review"]
    return found


def _of_type(ledger: list[dict], event_type: str) -> list[dict]:
    return [r for r in ledger if r["event_type"] == event_type]


def _section(output: str, title: str) -> dict[str, int]:
    """The ``name  count`` rows printed under one heading of the demo's summary."""
    lines = output.splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() == title)
    rows = {}
    for line in lines[start + 1:]:
        m = re.match(r"^ {4}(\w+) +(\d+)$", line)
        if not m:
            break
        rows[m.group(1)] = int(m.group(2))
    return rows


def test_demo_reports_every_ticket_and_a_verified_ledger(demo, ledger):
    data_dir, out = demo
    by_type = _section(out, "Records by event type")
    assert by_type["resolution"] == TASKS
    assert by_type["task_created"] == TASKS
    assert by_type["model_call"] > TASKS  # some timeouts were retried
    assert by_type["review"] > TASKS  # some tickets were escalated to a second review
    assert by_type["escalation"] > 0 and by_type["data_access"] > 0
    assert by_type["total"] == sum(v for k, v in by_type.items() if k != "total")
    assert re.search(r"Verification +OK: %d records" % by_type["total"], out)
    assert "WARNING" not in out
    # The printed counts are the ledger's, not the bot's own.
    stored = collections.Counter(r["event_type"] for r in ledger)
    assert dict(stored) == {k: v for k, v in by_type.items() if k != "total"}

    proc = _cli("verify", "--data-dir", data_dir)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert verdict(proc.stdout).startswith(f"OK: {by_type['total']} records in 1 chain(s)")
    head = re.search(r"Chain head +main +seq (\d+) +([0-9a-f]{64})$", out, re.M)
    assert head and int(head.group(1)) == by_type["total"]


def test_reviews_and_override_rate_match_the_ledger(demo, reviews):
    out = demo[1]
    counts = collections.Counter(r["decision"] for r in reviews)
    assert {"approve", "reject", "modify"} <= set(counts)
    assert _section(out, "Reviews by decision") == {
        d: counts[d] for d in ("approve", "reject", "modify")}
    decided = counts["approve"] + counts["reject"] + counts["modify"]
    expected = 100 * (counts["reject"] + counts["modify"]) / decided
    printed = float(re.search(r"Override rate +([\d.]+)%", out).group(1))
    assert printed == round(expected, 1)
    assert 5 < printed < 60  # a realistic scenario, not all-approve or all-override

    for r in reviews:
        assert r["reason_code"] and r["policy_ref"], r
        assert 20_000 <= r["time_spent_ms"] <= 600_000
        if r["decision"] == "modify":
            assert r["diff"].startswith("--- model output"), r
            assert '"category"' in r["modified_output"]
    assert len({r["reviewer_id"] for r in reviews}) == 8


def test_escalations_go_to_a_senior_who_reviews_and_every_ticket_is_resolved(ledger, reviews):
    reviews_by_task = collections.defaultdict(list)
    for r in reviews:
        reviews_by_task[r["task_id"]].append(r)
    escalations = _of_type(ledger, "escalation")
    assert escalations
    for e in escalations:
        second = reviews_by_task[e["task_id"]]
        assert [r["reviewer_id"] for r in second] == [e["escalation_from"], e["escalation_to"]]
        assert e["escalation_to"] in SENIORS
    resolutions = _of_type(ledger, "resolution")
    assert len({r["task_id"] for r in resolutions}) == TASKS
    finals = collections.Counter(r["resolution_outcome"] for r in resolutions)
    assert set(finals) == {"reply_sent", "reply_sent_after_edit", "handled_manually"}


def test_model_calls_carry_trace_ids_versions_and_failures(ledger):
    calls = _of_type(ledger, "model_call")
    assert all(re.fullmatch(r"[0-9a-f]{32}", c["trace_id"]) for c in calls)
    assert all(re.fullmatch(r"[0-9a-f]{16}", c["parent_span_id"]) for c in calls)
    # One trace per ticket, shared by all of that ticket's records.
    trace_of = {}
    for rec in ledger:
        assert trace_of.setdefault(rec["task_id"], rec["trace_id"]) == rec["trace_id"]
    assert len(set(trace_of.values())) == TASKS

    assert {(c["model_version"], c["prompt_version"]) for c in calls} == {
        ("2024-07-18", "v3"), ("2025-04-14", "v4")}
    failed = [c for c in calls if c["error_type"]]
    assert failed and all(c["error_type"] == "TimeoutError" for c in failed)
    for f in failed:  # retried once, successfully
        retry = [c for c in calls if c["task_id"] == f["task_id"] and not c["error_type"]]
        assert len(retry) == 1 and retry[0]["seq"] > f["seq"] and retry[0]["output"]
    assert any(c["streamed"] for c in calls)
    answered = [c for c in calls if not c["error_type"] and not c["streamed"]]
    assert all(0 < c["confidence"] <= 1 and c["logprobs"] and c["output_tokens"] > 0
               for c in answered)


def test_pii_never_reaches_the_ledger(demo, ledger):
    data_dir = demo[0]
    tickets = make_tickets(TASKS, random.Random(SEED))
    dump = json.dumps(ledger, ensure_ascii=False)
    raw = {t.fields[k] for t in tickets for k in ("email", "phone", "card", "ssn")
           if t.fields[k] in t.text}
    assert len(raw) > 5
    leaked = [value for value in raw if value in dump]
    assert not leaked
    for token in ("[EMAIL:", "[PHONE:", "[CARD:", "[SSN:"):
        assert token in dump

    ticket = next(t for t in tickets if t.fields["email"] in t.text)
    proc = _cli("timeline", ticket.ticket_id, "--data-dir", data_dir)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"Task {ticket.ticket_id}: ")
    assert "[EMAIL:" in proc.stdout and ticket.fields["email"] not in proc.stdout
    kinds = re.findall(r"^\S+  #\d+ +([A-Z ]+?)(?:  |$)", proc.stdout, re.M)
    assert kinds[:2] == ["TASK CREATED", "MODEL CALL"] and kinds[-1] == "RESOLUTION"


def test_the_serving_demo_stops_on_sigterm_with_a_closing_checkpoint(tmp_path):
    """Quickstart's command 1 keeps serving until stopped; a SIGTERM (a process manager,
    `timeout`) or Ctrl-C stops it cleanly: the console goes away, a closing checkpoint
    covers everything, and the store verifies."""
    data_dir = str(tmp_path / "store")
    proc = subprocess.Popen([PY, "-m", "aitrail.cli", "demo", "--data-dir", data_dir,
                             "--grpc-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0",
                             "--tasks", "20"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    try:
        lines = []
        for line in proc.stdout:
            lines.append(line)
            if "Collector running" in line:
                break
        assert "Collector running" in "".join(lines), "".join(lines)
        proc.send_signal(signal.SIGTERM)
        rest = proc.communicate(timeout=90)[0]
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, "".join(lines) + rest
    closing = re.search(r"closing checkpoint #(\d+) covers (\d+) records", rest)
    assert closing, rest
    out = _cli("verify", "--data-dir", data_dir, "--format", "json")
    report = json.loads(out.stdout)
    assert out.returncode == 0 and report["ok"], out.stdout
    chain = report["chains"][0]
    assert chain["checkpoints"]["last"]["number"] == int(closing.group(1))
    assert chain["checkpoints"]["last"]["size"] == chain["head_seq"] == int(closing.group(2))
