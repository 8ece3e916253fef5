"""Retries never duplicate; a collector killed with SIGKILL resumes its chain."""

import threading

import grpc

from aitrail.v1 import audit_pb2 as pb
from conftest import cli, count_records, make_record, stub


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
    stored = collector.get("/api/v1/records?limit=all&sort=seq")["records"]
    assert sorted(r["record_id"] for r in stored) == sorted(emitted)  # each exactly once
    assert [r["seq"] for r in stored] == list(range(1, len(emitted) + 1))  # no gap, no fork
    collector.stop()
    out = cli("verify", "--data-dir", str(collector.data_dir))
    assert out.returncode == 0, out.stdout + out.stderr
