"""Acknowledged ingest throughput of a collector on the embedded store.

1. A real ``aitrail collector`` subprocess (gRPC on loopback, chDB store) is sent
   pre-built ExportRequest batches of ~1 KB model_call records from K client
   threads; only ``accepted`` records are counted.
2. BASELINE, same run: inserting the same rows straight into a chDB table with
   ``Store.insert`` (no gRPC, no validation, no sealing), timed alone.
3. A per-stage breakdown of the collector's work, measured in this process on
   the same batches: decode, validate, dedup lookup, split+seal, insert.
"""

from __future__ import annotations

import argparse
import os
import random
import tempfile
import threading
import time

import grpc
from _common import CollectorProcess, machine_line, print_table, run_verify

from aitrail.record.ids import uuid7
from aitrail.v1 import audit_pb2 as pb
from aitrail.v1 import audit_pb2_grpc as pb_grpc
from aitrail.verify.chain import Sealer
from aitrail.verify.hashes import commitment
from aitrail_collector.ingest.validate import Limits, validate
from aitrail_collector.ledger.group_commit import split_record, stored_row
from aitrail_collector.store.client import Store

WORDS = ("the customer invoice charge refund account billing order shipping delivery "
         "late damaged wrong item support ticket urgent please help thanks regarding "
         "payment card failed twice subscription cancel renew plan upgrade").split()


def text(rng: random.Random, size: int) -> str:
    out: list[str] = []
    length = 0
    while length < size:
        word = rng.choice(WORDS)
        out.append(word)
        length += len(word) + 1
    return " ".join(out)[:size]


def make_batches(total: int, batch_size: int) -> list[bytes]:
    """Serialized ExportRequests of valid ~1 KB model_call records."""
    rng = random.Random(7)
    now = time.time_ns()
    batches = []
    for start in range(0, total, batch_size):
        req = pb.ExportRequest()
        for i in range(start, min(total, start + batch_size)):
            rec = req.records.add(
                record_id=uuid7(), event_type="model_call", task_id=f"T-{i // 4:07d}",
                request_id=f"req-{i:08d}", trace_id=f"{rng.getrandbits(128):032x}",
                span_id=f"{rng.getrandbits(64) | 1:016x}", start_time_unix_nano=now,
                end_time_unix_nano=now + 850_000_000, service="bench-ingest",
                service_version="1.4.2", environment="bench", host="bench-host",
                sdk_version="0.1.0")
            m = rec.model_call
            m.provider, m.model, m.model_version, m.prompt_version = (
                "openai", "gpt-4o", "2024-08-06", "v3")
            m.parameters["temperature"] = "0.2"
            m.input, m.output = text(rng, 400), text(rng, 400)
            m.usage.input_tokens, m.usage.output_tokens = 100, 100
        batches.append(req.SerializeToString())
    return batches


def send_all(endpoint: str, warm: bytes, batches: list[bytes], clients: int
             ) -> tuple[float, dict[str, int]]:
    """Send `warm` untimed, then every batch from `clients` threads; (seconds, counts)."""
    with grpc.insecure_channel(endpoint) as channel:
        pb_grpc.AuditServiceStub(channel).Export(pb.ExportRequest.FromString(warm), timeout=300)
    requests = [pb.ExportRequest.FromString(raw) for raw in batches]
    totals = {"accepted": 0, "duplicates": 0, "rejected": 0}
    lock = threading.Lock()
    start = threading.Barrier(clients + 1)

    def client(share: list[pb.ExportRequest]) -> None:
        with grpc.insecure_channel(endpoint, options=[
                ("grpc.max_send_message_length", 64 << 20)]) as channel:
            stub = pb_grpc.AuditServiceStub(channel)
            grpc.channel_ready_future(channel).result(timeout=30)
            start.wait()
            for req in share:
                resp = stub.Export(req, timeout=300)
                with lock:
                    totals["accepted"] += resp.accepted
                    totals["duplicates"] += resp.duplicates
                    totals["rejected"] += len(resp.rejected)

    threads = [threading.Thread(target=client, args=(requests[k::clients],))
               for k in range(clients)]
    for t in threads:
        t.start()
    start.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    return time.perf_counter() - t0, totals


def breakdown(warm: bytes, batches: list[bytes], data_dir: str) -> dict[str, float]:
    """Seconds per stage of Ledger.append, done here in one thread on a fresh store
    (`warm` goes through first, untimed: the first insert imports pandas)."""
    store = Store(f"chdb://{data_dir}")
    store.ensure_schema()
    sealer, limits, chain_id = Sealer("main"), Limits(), "main"
    spent = dict.fromkeys(("decode", "validate", "dedup lookup", "split+seal", "insert"), 0.0)
    clock = time.perf_counter
    for n, raw in enumerate([warm] + batches):
        t0 = clock()
        records = pb.ExportRequest.FromString(raw).records
        t1 = clock()
        now = time.time_ns()
        bad = [r for r in records if validate(r, now, limits) is not None]
        t2 = clock()
        existing = store.existing_ids([r.record_id for r in records])
        t3 = clock()
        assert not bad and not existing
        envelopes, payload_rows = [], []
        for rec in records:  # as Ledger._seal_and_store
            env, payloads = split_record(rec, chain_id, now)
            for name, content in payloads:
                salt = os.urandom(16)
                digest = commitment(salt, content)
                env["commitments"][name] = digest
                payload_rows.append((chain_id, rec.record_id, name, env["start_time"],
                                     salt.hex(), content, digest))
            link = sealer.seal(env)
            envelopes.append(stored_row(link.seq, env, link.prev_hash, link.leaf_hash,
                                        link.chain_hash))
        t4 = clock()
        store.insert(envelopes, payload_rows)
        t5 = clock()
        for stage, dt in zip(spent, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4)):
            spent[stage] += dt if n else 0.0
    store.close()
    return spent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="10k records instead of 50k")
    ap.add_argument("--records", type=int, default=None)
    ap.add_argument("--batch-size", type=int, default=500)
    ap.add_argument("--clients", type=int, default=2)
    args = ap.parse_args()
    total = args.records or (10_000 if args.quick else 50_000)

    warm, *batches = make_batches(total + args.batch_size, args.batch_size)
    rec_bytes = sum(map(len, batches)) / total
    print(f"bench_ingest: {total} model_call records of ~{rec_bytes:.0f} B, batches of "
          f"{args.batch_size} (+1 warm-up batch, untimed), {args.clients} client threads; "
          f"{machine_line()}")

    tmp = tempfile.TemporaryDirectory(prefix="aitrail-bench-ingest-")
    collector = CollectorProcess(f"{tmp.name}/data")
    try:
        seconds, counts = send_all(collector.endpoint, warm, batches, args.clients)
    finally:
        rc = collector.stop()
    print(f"collector: {counts} in {seconds:.2f} s; stopped with exit code {rc}")
    if counts["accepted"] != total:
        print(f"WARNING: {total} records sent, {counts['accepted']} accepted")
    print(f"aitrail verify: {run_verify(f'{tmp.name}/data')}")

    spent = breakdown(warm, batches, f"{tmp.name}/baseline")
    tmp.cleanup()

    ingest_rate = counts["accepted"] / seconds
    insert_rate = total / spent["insert"]
    print_table("Acknowledged ingest vs raw insert",
                ("figure", "records/s", "ratio to raw insert"), [
                    ("collector over gRPC, acknowledged", f"{ingest_rate:,.0f}",
                     f"{ingest_rate / insert_rate:.2f}x"),
                    ("BASELINE Store.insert only (chDB)", f"{insert_rate:,.0f}", "1.00x")])
    whole = sum(spent.values())
    rows = [(stage, f"{dt / total * 1e6:.1f}", f"{dt / whole:.0%}") for stage, dt in spent.items()]
    rows.append(("sum (one thread, no gRPC)", f"{whole / total * 1e6:.1f}",
                 f"= {total / whole:,.0f} rec/s"))
    rows.append(("collector wall time / record", f"{seconds / counts['accepted'] * 1e6:.1f}"
                 if counts["accepted"] else "-", ""))
    print_table("Per-record cost by stage (this process, same batches)",
                ("stage", "us/record", "share"), rows)


if __name__ == "__main__":
    main()
