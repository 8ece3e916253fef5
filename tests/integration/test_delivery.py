"""Retries never duplicate; a collector killed with SIGKILL resumes its chain; signals
stop it cleanly however early they arrive."""

import ctypes
import os
import platform
import signal
import subprocess
import threading
import time

import grpc
import pytest
from support import PY, CollectorProc, cli, count_records, make_record, stub

from aitrail.v1 import audit_pb2 as pb


def test_a_batch_sent_twice_lands_once(collector):
    client = stub(collector.grpc)
    request = pb.ExportRequest(records=[make_record(task_id=f"T-{i}") for i in range(5)])
    first = client.Export(request, timeout=30)
    again = client.Export(request, timeout=30)
    assert (first.accepted, first.duplicates, first.head_seq) == (5, 0, 5)
    assert (again.accepted, again.duplicates, again.head_seq) == (0, 5, 5)
    assert count_records(collector) == 5


def test_duplicates_inside_one_batch_are_stored_once(collector):
    rec = make_record()
    reply = stub(collector.grpc).Export(pb.ExportRequest(records=[rec, rec]), timeout=30)
    assert (reply.accepted, reply.duplicates) == (1, 1)
    assert count_records(collector) == 1


def _send_until_acked(endpoint, batches, acked, stop):
    client = stub(endpoint)
    for batch in batches:
        while not stop.is_set():
            try:
                reply = client.Export(batch, timeout=10, wait_for_ready=True)
            except grpc.RpcError:
                continue  # the collector is down or restarting: resend the same batch
            acked.append(reply)
            break


def test_sigkill_mid_stream_and_restart_continue_the_chain(collector):
    batches = [pb.ExportRequest(records=[make_record(task_id=f"T-{b}-{i}") for i in range(40)])
               for b in range(30)]
    acked, stop = [], threading.Event()
    sender = threading.Thread(target=_send_until_acked, args=(collector.grpc, batches, acked, stop))
    sender.start()
    try:
        for kill_after in (5, 15, 22):
            while len(acked) < kill_after and sender.is_alive():
                threading.Event().wait(0.01)
            collector.kill()
            collector.start()
        sender.join(180)
    finally:
        stop.set()
    assert not sender.is_alive() and len(acked) == len(batches)
    assert sum(r.accepted + r.duplicates for r in acked) == 40 * 30

    emitted = {rec.record_id for b in batches for rec in b.records}
    stored = collector.get("/api/v1/records?limit=10000&sort=seq")["records"]
    assert sorted(r["record_id"] for r in stored) == sorted(emitted)  # each exactly once
    assert [r["seq"] for r in stored] == list(range(1, len(emitted) + 1))  # no gap, no fork
    collector.stop()
    out = cli("verify", "--data-dir", str(collector.data_dir))
    assert out.returncode == 0, out.stdout + out.stderr


def _wait_for_log(collector: CollectorProc, text: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while text not in collector.log.read_text(errors="replace"):
        assert collector.proc.poll() is None, collector.log.read_text()
        assert time.monotonic() < deadline, f"{text!r} never logged:\n{collector.log.read_text()}"
        time.sleep(0.01)


def test_sigterm_while_starting_stops_cleanly_with_a_closing_checkpoint(tmp_path):
    """A SIGTERM that lands while the collector is still starting (here: right after
    its start-up checkpoint, before it serves) must not kill it mid-way: it comes up,
    then stops as on any SIGTERM, closing checkpoint included."""
    c = CollectorProc(tmp_path / "store")
    cmd = [PY, "-m", "aitrail.cli", "collector", "--data-dir", str(c.data_dir),
           "--grpc-listen", c.grpc, "--http-listen", f"127.0.0.1:{c.http_port}"]
    c.proc = subprocess.Popen(cmd, stdout=open(c.log, "ab"), stderr=subprocess.STDOUT)
    _wait_for_log(c, "checkpoint 1 of chain main")
    c.stop()
    log = c.log.read_text()
    assert c.proc.returncode == 0, log
    assert "checkpoint 2 of chain main" in log and "collector stopped after" in log


def test_sigusr1_dumps_every_thread_and_the_collector_keeps_serving(collector):
    # /healthz answers while the main thread may still finish start() (writing the
    # local token and the lock file), so a dump taken then shows start(): ask again
    # until the main thread is seen waiting in serve_forever.
    deadline = time.monotonic() + 60
    while "in serve_forever" not in collector.log.read_text(errors="replace"):
        assert time.monotonic() < deadline, collector.log.read_text()
        collector.proc.send_signal(signal.SIGUSR1)
        time.sleep(0.5)
    assert "Thread 0x" in collector.log.read_text()
    assert collector.get("/healthz")


_SYS_TGKILL = {"x86_64": 234, "aarch64": 131}


def _signal_thread(pid: int, tid: int, sig: int) -> None:
    """tgkill(2): a signal to one thread, as the kernel may pick any thread for a kill(2)."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.syscall(_SYS_TGKILL[platform.machine()], pid, tid, sig) != 0:
        raise OSError(ctypes.get_errno(), f"tgkill {pid} {tid}")


def _threads_taking(pid: int, sig: int) -> dict[int, str]:
    """The process's threads, other than the main one, that do not block ``sig``."""
    found = {}
    for tid in map(int, os.listdir(f"/proc/{pid}/task")):
        status = dict(line.split(":", 1) for line in open(f"/proc/{pid}/task/{tid}/status"))
        if tid != pid and not int(status["SigBlk"], 16) & (1 << (sig - 1)):
            found[tid] = open(f"/proc/{pid}/task/{tid}/comm").read().strip()
    return found


@pytest.mark.parametrize("thread", ["MergeMutate", "event_engine"])  # the engine's, gRPC's
def test_sigterm_delivered_to_a_library_thread_still_stops_the_collector(collector, thread):
    """The kernel hands a process's SIGTERM to any thread not blocking it; CPython runs
    the Python handler only in the main thread. A collector whose main thread waited
    without a timeout hung for good when the signal landed elsewhere (CI, stop 8)."""
    _emit_one(collector)
    pid = collector.proc.pid
    threads = _threads_taking(pid, signal.SIGTERM)
    tid = next((t for t, name in threads.items() if name == thread), None)
    assert tid, f"no {thread} thread taking SIGTERM among {sorted(set(threads.values()))}"
    _signal_thread(pid, tid, signal.SIGTERM)
    collector.proc.wait(60)
    log = collector.log.read_text()
    assert collector.proc.returncode == 0, log
    assert "checkpoint 2 of chain main: 1 records" in log and "collector stopped after" in log


def _emit_one(collector: CollectorProc) -> None:
    resp = stub(collector.grpc).Export(pb.ExportRequest(records=[make_record()]), timeout=60)
    assert resp.accepted == 1
