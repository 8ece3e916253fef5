"""aitrail.export without a collector: the InMemoryExporter through the real SDK,
the delivery modes against an exporter that fails, counters under many threads,
and the worker's independence from gRPC."""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

import aitrail
from aitrail.export import (
    BEST_EFFORT,
    DURABLE,
    STRICT,
    AuditUnavailable,
    BatchWorker,
    Exporter,
    ExportFailed,
    GrpcExporter,
    InMemoryExporter,
)
from aitrail.v1 import audit_pb2 as pb

SDK = Path(__file__).resolve().parents[2] / "sdk"


@pytest.fixture
def memory():
    """The SDK configured with an InMemoryExporter; shut down afterwards."""
    exporter = InMemoryExporter()

    def configure(**options):
        defaults = dict(service="unit", redaction_key="k", flush_interval=0.02, exporter=exporter)
        defaults.update(options)
        return aitrail.configure(**defaults)
    configure.exporter = exporter
    yield configure
    aitrail.shutdown()


def _ids(exporter: InMemoryExporter) -> list[str]:
    return [r.record_id for r in exporter.records]


# ------------------------------------------------------------ the exporter itself
def test_exporters_satisfy_the_protocol():
    assert isinstance(InMemoryExporter(), Exporter)
    assert isinstance(GrpcExporter("127.0.0.1:1", 1.0), Exporter)


def test_in_memory_exporter_deduplicates_like_the_collector_and_fails_on_request():
    exporter = InMemoryExporter()
    a, b = pb.AuditRecord(record_id="a"), pb.AuditRecord(record_id="b")
    first = exporter.export(pb.ExportRequest(records=[a, b]).SerializeToString())
    again = exporter.export(pb.ExportRequest(records=[b]).SerializeToString())
    assert (first.accepted, first.duplicates, again.accepted, again.duplicates) == (2, 0, 0, 1)
    assert _ids(exporter) == ["a", "b"] and exporter.get_finished_records() == exporter.records

    exporter.fail_next(2, retryable=False, retry_after=1.5, detail="nope")
    for _ in range(2):
        with pytest.raises(ExportFailed) as info:
            exporter.export(b"")
        assert (info.value.retryable, info.value.retry_after, info.value.detail) == (False, 1.5,
                                                                                     "nope")
    exporter.unavailable = True
    with pytest.raises(ExportFailed) as info:
        exporter.export(b"")
    assert info.value.retryable
    exporter.unavailable = False
    exporter.clear()
    assert exporter.records == [] and exporter.exports == 5
    assert exporter.export(pb.ExportRequest(records=[a]).SerializeToString()).accepted == 1


def test_wait_for_ready_waits_for_the_exporter_to_become_available():
    exporter = InMemoryExporter()
    exporter.unavailable = True
    threading.Timer(0.2, setattr, (exporter, "unavailable", False)).start()
    t0 = time.monotonic()
    request = pb.ExportRequest(records=[pb.AuditRecord(record_id="x")]).SerializeToString()
    assert exporter.export(request, timeout=5, wait_for_ready=True).accepted == 1
    assert 0.1 < time.monotonic() - t0 < 4


# ------------------------------------------------------------ through the real SDK
def test_records_emitted_through_the_sdk_arrive_field_by_field(memory):
    memory(service="triage", service_version="1.2", environment="test", host="h1",
           delivery=BEST_EFFORT)
    exporter = memory.exporter

    @aitrail.model_call(model="m1", model_version="7", prompt_version="v2", provider="p",
                        prompt_template_id="triage", parameters={"temperature": 0.1})
    def ask(prompt):
        return "billing"

    with aitrail.task("T-1", request_id="R-1"):
        assert ask("which queue?") == "billing"
        with aitrail.review(reviewer="ann") as r:
            r.modify(output="refunds", rationale=aitrail.Rationale(
                reason_code="wrong_category", policy_ref="POL-4.2", text="it is a refund"))
        esc_id = aitrail.escalate(from_reviewer="ann", to_reviewer="sam", reason="over limit")
    assert aitrail.flush(10)

    call, rev, esc = exporter.records
    for rec in (call, rev, esc):
        assert (rec.task_id, rec.request_id, rec.service, rec.service_version, rec.environment,
                rec.host) == ("T-1", "R-1", "triage", "1.2", "test", "h1")
        assert rec.sdk_version == aitrail.__version__
        assert len(rec.record_id) == 36 and rec.record_id[14] == "7"  # UUIDv7
        assert rec.end_time_unix_nano >= rec.start_time_unix_nano > 0

    m = call.model_call
    assert call.event_type == "model_call"
    assert (m.model, m.model_version, m.prompt_version, m.provider, m.prompt_template_id) == (
        "m1", "7", "v2", "p", "triage")
    assert (m.input, m.output, dict(m.parameters)) == ("which queue?", "billing",
                                                       {"temperature": "0.1"})

    v = rev.review
    assert rev.event_type == "review"
    assert (v.reviewer_id, v.decision, v.modified_output) == ("ann", "modify", "refunds")
    assert (v.rationale.reason_code, v.rationale.policy_ref, v.rationale.text) == (
        "wrong_category", "POL-4.2", "it is a refund")
    assert "-billing" in v.diff and "+refunds" in v.diff  # against the model's output

    assert (esc.event_type, esc.record_id) == ("escalation", esc_id)
    assert (esc.escalation.from_reviewer, esc.escalation.to_reviewer,
            esc.escalation.reason) == ("ann", "sam", "over limit")

    stats = aitrail.stats()
    assert (stats["queued"], stats["sent"], stats["dropped"], stats["pending"]) == (3, 3, 0, 0)


def test_pii_is_redacted_before_it_reaches_the_exporter(memory):
    memory(delivery=BEST_EFFORT)
    aitrail.escalate("T", from_reviewer="a", to_reviewer="b", reason="mail bob@corp.example")
    assert aitrail.flush(10)
    (rec,) = memory.exporter.records
    assert "bob@corp.example" not in rec.escalation.reason
    assert "[EMAIL:" in rec.escalation.reason


# ------------------------------------------------------------ delivery modes
def test_durable_spools_while_the_exporter_fails_then_replays_in_order(memory, tmp_path):
    exporter = memory.exporter
    exporter.unavailable = True
    memory(delivery=DURABLE, spool_dir=str(tmp_path / "spool"), batch_size=5)
    earlier = [aitrail.resolve(f"T-{i}", resolution="closed") for i in range(20)]
    assert not aitrail.flush(1)  # the spool cannot drain yet
    stats = aitrail.stats()
    assert stats["spooled"] == 20 and stats["dropped"] == 0 and stats["spool_bytes"] > 0
    assert exporter.records == []
    assert any(p.suffix == ".batch" for p in (tmp_path / "spool").rglob("*"))

    exporter.unavailable = False
    later = [aitrail.resolve(f"U-{i}", resolution="closed") for i in range(7)]
    assert aitrail.flush(20)
    stats = aitrail.stats()
    assert (stats["replayed"], stats["sent"], stats["spool_bytes"], stats["dropped"]) == (
        stats["spooled"], 27, 0, 0)
    assert _ids(exporter) == earlier + later  # the spool first, in order, once each


def test_durable_replays_records_spooled_one_by_one_in_requests_of_the_batch_size(
        memory, tmp_path):
    # A queue of one: every record past it is spooled by its caller, one file each.
    exporter = memory.exporter
    exporter.unavailable = True
    memory(delivery=DURABLE, spool_dir=str(tmp_path / "spool"), batch_size=50, max_queue=1)
    earlier = [aitrail.resolve(f"T-{i}", resolution="closed") for i in range(300)]
    assert not aitrail.flush(0.5)
    assert aitrail.stats()["spooled"] == 300
    before = exporter.exports
    exporter.unavailable = False
    assert aitrail.flush(20)
    # Once each (a caller past the full queue spools its record before the worker
    # spools the one it holds: the spool's order is not quite the callers').
    assert sorted(_ids(exporter)) == sorted(earlier) and len(_ids(exporter)) == 300
    assert exporter.exports - before <= 300 // 50 + 1  # not a request per record
    assert aitrail.stats()["replayed"] == 300 and aitrail.stats()["spool_bytes"] == 0


def test_durable_replays_its_backlog_while_callers_keep_the_queue_full(memory, tmp_path):
    # A soak at 12k/s: once the spool held a backlog, the worker spooled the queue's
    # batches behind it for as long as callers kept the queue from emptying, and
    # replayed nothing until the load stopped (the collector sat idle for 50 s).
    exporter = memory.exporter
    exporter.unavailable = True
    memory(delivery=DURABLE, spool_dir=str(tmp_path / "spool"), batch_size=10,
           max_queue=1_000_000)
    backlog = [aitrail.resolve(f"T-{i}", resolution="closed") for i in range(50)]
    assert not aitrail.flush(0.5)
    exporter.unavailable = False
    stop = threading.Event()

    def emit() -> None:
        while not stop.is_set():
            aitrail.resolve("U", resolution="closed")
    emitter = threading.Thread(target=emit)
    emitter.start()
    try:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and len(exporter.records) < 50:
            time.sleep(0.01)
        sent_during_load = {r.record_id for r in exporter.records}
    finally:
        stop.set()
        emitter.join()
    assert set(backlog) <= sent_during_load
    assert aitrail.flush(60)


@pytest.mark.timeout(60)
def test_a_replay_sends_what_waited_at_its_start_and_returns_to_the_queue(tmp_path):
    # Callers past a full queue spool a record each while the replay runs: a replay
    # that ran until the spool was empty never returned to the queue (a soak's
    # intake fell to the callers' fsync rate, ~200 records/s).
    from aitrail.export.delivery import Counters, Durable

    class CallersKeepSpooling(InMemoryExporter):
        def export(self, request, timeout=None, wait_for_ready=False):
            durable._open_spool().append(_request(f"late-{self.exports}"))
            return super().export(request, timeout, wait_for_ready)

    durable = Durable(lambda items: [], CallersKeepSpooling(), Counters(),
                      spool_dir=str(tmp_path / "spool"), spool_max_bytes=1 << 24,
                      retry_for=1.0, export_timeout=1.0, replay_records=2)
    for i in range(6):
        durable._open_spool().append(_request(f"early-{i}"))
    durable.replay()
    sent = [r.record_id for r in durable.exporter.records]
    assert sent[:6] == [f"early-{i}" for i in range(6)] and len(sent) <= 8
    assert len(durable._open_spool()) >= 3  # the late ones wait for the next round


def _request(record_id: str) -> bytes:
    return pb.ExportRequest(records=[pb.AuditRecord(record_id=record_id)]).SerializeToString()


class _RefusesOne(InMemoryExporter):
    """Refuses outright any request that holds the record ``bad``."""

    bad = ""

    def export(self, request, timeout=None, wait_for_ready=False):
        if any(r.record_id == self.bad for r in pb.ExportRequest.FromString(request).records):
            raise ExportFailed("bad record", retryable=False, code="INVALID_ARGUMENT")
        return super().export(request, timeout, wait_for_ready)


def test_durable_replay_sets_aside_only_the_refused_batch_of_a_run(tmp_path, caplog):
    exporter = _RefusesOne()
    exporter.unavailable = True
    aitrail.configure(service="unit", redaction_key="k", flush_interval=0.02, exporter=exporter,
                      delivery=DURABLE, spool_dir=str(tmp_path / "spool"), batch_size=50,
                      max_queue=1)
    try:
        ids = [aitrail.resolve(f"T-{i}", resolution="closed") for i in range(20)]
        assert not aitrail.flush(0.5)
        exporter.bad = ids[7]
        exporter.unavailable = False
        with caplog.at_level(logging.ERROR, logger="aitrail"):
            assert aitrail.flush(20)
        assert sorted(_ids(exporter)) == sorted(ids[:7] + ids[8:])
        assert aitrail.stats()["dropped"] == 1 and "bad record" in caplog.text
        assert len(list((tmp_path / "spool").rglob("*.refused"))) == 1
    finally:
        aitrail.shutdown()


def test_durable_sets_aside_a_batch_the_exporter_refuses(memory, tmp_path, caplog):
    exporter = memory.exporter
    memory(delivery=DURABLE, spool_dir=str(tmp_path / "spool"))
    exporter.fail_next(1, retryable=False, detail="bad batch")
    with caplog.at_level(logging.ERROR, logger="aitrail"):
        aitrail.resolve("T-1", resolution="closed")
        assert aitrail.flush(10)
    assert aitrail.stats()["dropped"] == 1 and exporter.records == []
    assert "the collector refused the batch: bad batch" in caplog.text
    ok = aitrail.resolve("T-2", resolution="closed")
    assert aitrail.flush(10) and _ids(exporter) == [ok]


def test_durable_honours_the_exporters_back_off_request(memory, tmp_path):
    exporter = memory.exporter
    memory(delivery=DURABLE, spool_dir=str(tmp_path / "spool"))
    exporter.fail_next(1, retryable=True, retry_after=0.6)
    t0 = time.monotonic()
    rid = aitrail.resolve("T", resolution="closed")
    assert aitrail.flush(10)
    # retry_at = now + 0.6 * (0.5 .. 1.5): not before 0.3 s
    assert time.monotonic() - t0 >= 0.3
    assert _ids(exporter) == [rid] and aitrail.stats()["replayed"] == 1


def test_best_effort_drops_and_counts_when_the_exporter_stays_down(memory, caplog):
    exporter = memory.exporter
    exporter.unavailable = True
    memory(delivery=BEST_EFFORT, retry_for=0.3, export_timeout=0.1)
    with caplog.at_level(logging.ERROR, logger="aitrail"):
        for i in range(4):
            aitrail.resolve(f"T-{i}", resolution="closed")
        assert aitrail.flush(10)
    stats = aitrail.stats()
    assert (stats["dropped"], stats["sent"], stats["spooled"], stats["pending"]) == (4, 0, 0, 0)
    assert "DROPPED 4 records: the collector was unreachable" in caplog.text
    exporter.unavailable = False
    rid = aitrail.resolve("T-ok", resolution="closed")
    assert aitrail.flush(10) and _ids(exporter) == [rid]


def test_best_effort_retries_a_transient_failure(memory):
    exporter = memory.exporter
    memory(delivery=BEST_EFFORT)
    exporter.fail_next(2, retryable=True)
    rid = aitrail.resolve("T", resolution="closed")
    assert aitrail.flush(10)
    assert _ids(exporter) == [rid] and aitrail.stats()["dropped"] == 0


def test_strict_raises_when_the_exporter_fails_and_returns_when_it_succeeds(memory):
    exporter = memory.exporter
    memory(delivery=STRICT, strict_timeout=0.5)
    exporter.unavailable = True
    with pytest.raises(AuditUnavailable):
        aitrail.resolve("T-down", resolution="closed")
    exporter.unavailable = False
    assert aitrail.flush(10)

    exporter.fail_next(1, retryable=False, detail="invalid")
    with pytest.raises(AuditUnavailable, match="refused.*invalid"):
        aitrail.resolve("T-refused", resolution="closed")

    rid = aitrail.resolve("T-ok", resolution="closed")  # returns once acknowledged
    assert rid in _ids(exporter)  # no flush needed: strict waited for the ack


# ------------------------------------------------------------ counters under load
def test_counters_add_up_when_many_threads_submit_at_once(memory):
    threads_n, per_thread = 8, 5_000
    total = threads_n * per_thread
    for _ in range(5):  # a few rounds, to make a race likely
        exporter = InMemoryExporter()
        memory(exporter=exporter, delivery=DURABLE, batch_size=512, max_queue=total + 1)
        start = threading.Barrier(threads_n)
        errors: list[BaseException] = []

        def hammer(n: int) -> None:
            try:
                start.wait()
                for i in range(per_thread):
                    aitrail.event("hammer", task_id=f"T-{n}-{i}")
            except BaseException as exc:  # surfaced below
                errors.append(exc)

        threads = [threading.Thread(target=hammer, args=(n,)) for n in range(threads_n)]
        for t in threads:
            t.start()
        # stats() while they run: never more sent than queued
        while any(t.is_alive() for t in threads):
            s = aitrail.stats()
            assert s["sent"] <= s["queued"] and s["pending"] <= s["queued"]
            time.sleep(0.005)
        for t in threads:
            t.join()
        assert not errors
        assert aitrail.flush(60)
        stats = aitrail.stats()
        assert (stats["queued"], stats["sent"], stats["pending"], stats["dropped"]) == (
            total, total, 0, 0)
        ids = _ids(exporter)
        assert len(ids) == len(set(ids)) == total


def test_flush_waits_for_records_submitted_while_others_submit():
    """flush() from one thread covers what that thread submitted, even while other
    threads keep submitting."""
    exporter = InMemoryExporter()
    worker = BatchWorker(lambda d: pb.AuditRecord(record_id=d), exporter, batch_size=64,
                         flush_interval=0.01, max_queue=1_000_000, retry_for=1,
                         delivery=BEST_EFFORT)
    stop = threading.Event()

    def noise(n: int) -> None:
        i = 0
        while not stop.is_set():
            for _ in range(50):  # bursts the worker can keep up with: nothing is dropped
                worker.submit(f"noise-{n}-{i}")
                i += 1
            time.sleep(0.001)

    others = [threading.Thread(target=noise, args=(n,)) for n in range(3)]
    for t in others:
        t.start()
    try:
        for round_ in range(20):
            mine = [f"mine-{round_}-{i}" for i in range(100)]
            for rid in mine:
                worker.submit(rid)
            assert worker.flush(30)
            assert set(mine) <= {r.record_id for r in exporter.records}
    finally:
        stop.set()
        for t in others:
            t.join()
    assert worker.flush(30)
    stats = worker.stats()
    assert stats["queued"] == stats["sent"] == len(exporter.records) and stats["pending"] == 0
    assert stats["dropped"] == 0
    worker.shutdown()


# ------------------------------------------------------------ no gRPC in delivery
def test_the_worker_and_the_delivery_policy_do_not_import_grpc():
    # Import the modules without running aitrail/__init__ (which loads the gRPC
    # exporter for configure): stub packages that only point at the source.
    code = textwrap.dedent(f"""
        import sys, types
        for name, path in (("aitrail", {str(SDK / "aitrail")!r}),
                           ("aitrail.export", {str(SDK / "aitrail" / "export")!r})):
            pkg = types.ModuleType(name)
            pkg.__path__ = [path]
            sys.modules[name] = pkg
        import aitrail.export.worker, aitrail.export.delivery, aitrail.export.memory
        loaded = sorted(m for m in sys.modules if m == "grpc" or m.startswith("grpc."))
        assert not loaded, loaded
        print("ok")
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr
    for name in ("worker.py", "delivery.py", "exporter.py", "memory.py", "spool.py"):
        source = (SDK / "aitrail" / "export" / name).read_text()
        assert "import grpc" not in source and "from grpc" not in source, name
