"""Delivery modes, spool replay, strict mode, fork, back-pressure, and chaos."""

import os
import subprocess
import threading
import time
from pathlib import Path

import grpc
import pytest
from support import PY, TESTS, CollectorProc, cli, count_records, make_record, stub

import aitrail
from aitrail.v1 import audit_pb2 as pb

CLIENT = str(TESTS / "chaos_client.py")


def _stored(collector) -> list[dict]:
    """The clients' records, by seq (the collector's own data_access records of the
    test's reads are left out)."""
    return [r for r in collector.get("/api/v1/records?limit=10000&sort=seq")["records"]
            if r["service"] != "aitrail-collector"]


def _stored_ids(collector) -> list[str]:
    return [r["record_id"] for r in _stored(collector)]


@pytest.fixture
def down_collector(tmp_path):
    """A collector whose ports are chosen but which is not running yet."""
    proc = CollectorProc(tmp_path / "store")
    yield proc
    proc.stop()


def _configure(proc, tmp_path, **options):
    defaults = dict(endpoint=proc.grpc, service="svc", redaction_key="k", flush_interval=0.05,
                    export_timeout=2, spool_dir=str(tmp_path / "spool"))
    defaults.update(options)
    aitrail.configure(**defaults)


def test_durable_spools_while_the_collector_is_down_and_replays_in_order(down_collector, tmp_path):
    _configure(down_collector, tmp_path)
    try:
        ids = [aitrail.resolve(f"T-{i}", resolution="closed") for i in range(30)]
        assert not aitrail.flush(2)  # nothing can be delivered yet
        stats = aitrail.stats()
        assert stats["spooled"] == 30 and stats["dropped"] == 0 and stats["spool_bytes"] > 0
        assert any(p.suffix == ".batch" for p in (tmp_path / "spool").rglob("*"))
        down_collector.start()
        assert aitrail.flush(30)
        assert aitrail.stats()["replayed"] == 30 and aitrail.stats()["spool_bytes"] == 0
        assert _stored_ids(down_collector) == ids  # in the order they were emitted
    finally:
        aitrail.shutdown()


def test_spooled_records_survive_an_application_restart(down_collector, tmp_path):
    env = dict(os.environ, AITRAIL_SPOOL_DIR=str(tmp_path / "spool"))
    first = subprocess.run([PY, CLIENT, down_collector.grpc, "40", str(tmp_path / "a.ids"),
                            "--flush-timeout", "1"], env=env, capture_output=True, text=True,
                           timeout=60)
    assert first.returncode == 1  # could not deliver: the collector is down
    assert "'spooled': 40" in first.stderr and "'dropped': 0" in first.stderr
    down_collector.start()
    second = subprocess.run([PY, CLIENT, down_collector.grpc, "10", str(tmp_path / "b.ids")],
                            env=env, capture_output=True, text=True, timeout=120)
    assert second.returncode == 0, second.stderr
    earlier = (tmp_path / "a.ids").read_text().split()
    later = (tmp_path / "b.ids").read_text().split()
    assert _stored_ids(down_collector) == earlier + later  # the old spool first, once each


def test_a_full_spool_drops_loudly_and_counts(down_collector, tmp_path, caplog):
    _configure(down_collector, tmp_path, spool_max_bytes=2000, batch_size=5)
    try:
        for i in range(100):
            aitrail.resolve(f"T-{i}", resolution="closed")
        aitrail.flush(5, spool=False)
        stats = aitrail.stats()
        assert stats["dropped"] > 0 and stats["spooled"] + stats["dropped"] == 100
        assert stats["spool_bytes"] <= 2000
        assert "DROPPED" in caplog.text
    finally:
        aitrail.shutdown(timeout=1)


def test_best_effort_never_touches_the_disk_and_counts_drops(down_collector, tmp_path):
    _configure(down_collector, tmp_path, delivery="best_effort", retry_for=0.5)
    try:
        for i in range(20):
            aitrail.resolve(f"T-{i}", resolution="closed")
        assert not aitrail.flush(5) or aitrail.stats()["dropped"] == 20
        stats = aitrail.stats()
        assert stats["dropped"] == 20 and stats["spooled"] == 0
        assert not (tmp_path / "spool").exists()
    finally:
        aitrail.shutdown()


def test_strict_mode_raises_without_a_collector_and_returns_with_one(down_collector, tmp_path):
    _configure(down_collector, tmp_path, delivery="strict", strict_timeout=3)
    ran = []

    @aitrail.model_call(model="m")
    def answer(q):
        ran.append(q)
        return "42"

    try:
        with pytest.raises(aitrail.AuditUnavailable):
            answer("first")
        assert ran == ["first"]  # the call ran; its result was withheld
        down_collector.start()
        assert answer("second") == "42"
        # Acknowledged means stored: visible at once, without a flush.
        inputs = [r["input"] for r in
                  down_collector.get("/api/v1/records?type=model_call&limit=10000")["records"]]
        assert "second" in inputs
    finally:
        aitrail.shutdown()


def test_strict_mode_surfaces_a_refused_record(collector, tmp_path):
    _configure(collector, tmp_path, delivery="strict")
    try:
        with pytest.raises(aitrail.AuditUnavailable, match="refused"):
            aitrail.event("redaction", task_id="T")  # reserved for the collector
    finally:
        aitrail.shutdown()


def test_fork_parent_and_child_records_arrive_once(collector, tmp_path):
    _configure(collector, tmp_path)
    try:
        before = [aitrail.resolve(f"T-parent-{i}", resolution="closed") for i in range(5)]
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # child
            os.close(read)
            ids = [aitrail.resolve(f"T-child-{i}", resolution="closed") for i in range(5)]
            ok = aitrail.flush(30)
            os.write(write, ("\n".join(ids) if ok else "FAILED").encode())
            os._exit(0)
        os.close(write)
        after = [aitrail.resolve(f"T-parent2-{i}", resolution="closed") for i in range(5)]
        child_ids = b""
        while chunk := os.read(read, 65536):
            child_ids += chunk
        os.waitpid(pid, 0)
        assert aitrail.flush(30)
        child = child_ids.decode().split("\n")
        assert child != ["FAILED"]
        stored = _stored_ids(collector)
        assert sorted(stored) == sorted(before + after + child)
    finally:
        aitrail.shutdown()


def test_overload_answers_resource_exhausted_with_a_retry_hint(tmp_path):
    proc = CollectorProc(tmp_path / "store", "--max-pending-records", "50").start()
    try:
        errors, lock = [], threading.Lock()

        def send(n):
            batch = pb.ExportRequest(records=[make_record(task_id=f"T-{n}-{i}") for i in range(50)])
            try:
                stub(proc.grpc).Export(batch, timeout=30)
            except grpc.RpcError as err:
                with lock:
                    errors.append(err)

        threads = [threading.Thread(target=send, args=(n,)) for n in range(12)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors, "no request was turned away"
        for err in errors:
            assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert ("grpc-retry-pushback-ms", "500") in tuple(err.trailing_metadata())
        assert count_records(proc) == 50 * (12 - len(errors))

        # The SDK backs off and gets everything in.
        _configure(proc, tmp_path, batch_size=50)
        clients = [subprocess.Popen([PY, CLIENT, proc.grpc, "600", str(tmp_path / f"{n}.ids")])
                   for n in range(3)]
        assert [c.wait(180) for c in clients] == [0, 0, 0]
        emitted = [line for n in range(3) for line in (tmp_path / f"{n}.ids").read_text().split()]
        assert set(emitted) <= set(_stored_ids(proc))
    finally:
        aitrail.shutdown()
        proc.stop()


def _table_dirs(data_dir: Path) -> list[str]:
    # store/<prefix>/<table uuid>/: where every insert creates its new part.
    return [str(p) for p in (data_dir / "store").glob("*/*") if p.is_dir()]


def test_chaos_kills_and_a_store_outage_lose_nothing_and_duplicate_nothing(collector, tmp_path):
    clients = [subprocess.Popen([PY, CLIENT, collector.grpc, "1500", str(tmp_path / f"{n}.ids"),
                                 "--rate", "150"], stderr=subprocess.PIPE, text=True)
               for n in range(3)]
    try:
        for _ in range(3):
            time.sleep(1.5)
            collector.kill()  # SIGKILL, mid-stream
            time.sleep(0.5)
            collector.start()
        # The store stops taking writes for a while (its directories become
        # immutable), then recovers; the collector itself stays up.
        time.sleep(1)
        dirs = _table_dirs(collector.data_dir)
        subprocess.run(["chattr", "+i", *dirs], check=True)
        try:
            time.sleep(3)
            assert collector.proc.poll() is None
        finally:
            subprocess.run(["chattr", "-i", *dirs], check=True)
        outcomes = [c.wait(240) for c in clients]
        assert outcomes == [0, 0, 0], [c.stderr.read() for c in clients]
    finally:
        for c in clients:
            if c.poll() is None:
                c.kill()
    emitted = [line for n in range(3) for line in (tmp_path / f"{n}.ids").read_text().split()]
    everything = collector.get("/api/v1/records?limit=10000&sort=seq")["records"]
    stored = [r["record_id"] for r in everything if r["service"] != "aitrail-collector"]
    assert len(emitted) == 4500
    missing, extra = set(emitted) - set(stored), set(stored) - set(emitted)
    assert not missing and not extra, (len(missing), len(extra), sorted(missing)[:5],
                                       [c.stderr.read()[-2000:] for c in clients])
    assert sorted(stored) == sorted(emitted)  # every record, each exactly once
    assert [r["seq"] for r in everything] == list(range(1, len(everything) + 1))
    collector.stop()
    out = cli("verify", "--data-dir", str(collector.data_dir))
    assert out.returncode == 0, out.stdout + out.stderr
