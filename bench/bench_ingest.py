"""Acknowledged ingest throughput of a collector on the embedded store (issue 12, target 1).

1. A real ``aitrail collector`` subprocess (gRPC on loopback, chDB store) is sent
   pre-serialized ExportRequests of ~1 KB records (model calls and reviews, 3:1) from
   K client threads as raw bytes; only ``accepted`` records are counted. Then the same
   at a paced 50k records/s (or the most it sustains), for the acknowledgement latency.
2. BASELINES, same run, same rows: ``hashlib.sha256`` over each serialized record
   (single thread; the target is >= 0.10x of it), and a raw insert of the same rows:
   the engine's own ``INSERT ... SELECT`` of the requests into a plain MergeTree table
   (no checks, no split, no hashes), and the driver's ``Store.insert``.
3. The stages of the collector's engine lane, measured in this process on the same
   groups: decode (upb, per call), stage (engine: decode, split, check), judge (the
   reference on the suspects), seal (engine: choose, number, salt, hash), chain (the
   chain hashes from the leaf hashes), store (payloads, envelopes, the count).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import tempfile
import threading
import time

import grpc
from _common import CollectorProcess, machine_line, percentile, print_table, run_verify

from aitrail.record.ids import uuid7
from aitrail.v1 import audit_pb2 as pb
from aitrail_collector.ledger import engine_lane
from aitrail_collector.ledger.group_commit import UNAUTHENTICATED, Ledger
from aitrail_collector.store import ingest_sql
from aitrail_collector.store.client import Store
from aitrail_collector.store.schema import DB

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
    """Serialized ExportRequests of valid ~1 KB records: model calls and reviews, 3:1."""
    rng = random.Random(7)
    now = time.time_ns()
    batches = []
    for start in range(0, total, batch_size):
        req = pb.ExportRequest()
        for i in range(start, min(total, start + batch_size)):
            review = i % 4 == 3
            rec = req.records.add(
                record_id=uuid7(), event_type="review" if review else "model_call",
                task_id=f"T-{i // 4:07d}", request_id=f"req-{i:08d}",
                trace_id=f"{rng.getrandbits(128) | 1:032x}",
                span_id=f"{rng.getrandbits(64) | 1:016x}", start_time_unix_nano=now,
                end_time_unix_nano=now + 850_000_000, service="bench-ingest",
                service_version="1.4.2", environment="bench", host="bench-host",
                sdk_version="0.1.0")
            if review:
                v = rec.review
                v.reviewer_id, v.decision, v.time_spent_ms = f"rev-{i % 13}", "modify", 41_000
                v.modified_output, v.diff = text(rng, 420), text(rng, 300)
                v.rationale.reason_code, v.rationale.text = "TONE", text(rng, 120)
            else:
                m = rec.model_call
                m.provider, m.model, m.model_version, m.prompt_version = (
                    "openai", "gpt-4o", "2024-08-06", "v3")
                m.parameters["temperature"] = "0.2"
                m.input, m.output = text(rng, 400), text(rng, 400)
                m.usage.input_tokens, m.usage.output_tokens = 100, 100
        batches.append(req.SerializeToString())
    return batches


def _raw_stub(channel: grpc.Channel):
    # Bytes in, bytes out: the client's cost is the network's, not re-serialization.
    return channel.unary_unary("/aitrail.v1.AuditService/Export",
                               request_serializer=None, response_deserializer=None)


def send_all(endpoint: str, warm: bytes, batches: list[bytes], clients: int,
             rate: float = 0.0) -> tuple[float, dict[str, int], list[float]]:
    """Send `warm` untimed, then every batch from `clients` threads, paced at ``rate``
    records/s in all when given; (seconds, counts, acknowledgement latencies)."""
    with grpc.insecure_channel(endpoint) as channel:
        _raw_stub(channel)(warm, timeout=300)
    per_batch = len(pb.ExportRequest.FromString(batches[0]).records)
    totals = {"accepted": 0, "duplicates": 0, "rejected": 0}
    latencies: list[float] = []
    lock = threading.Lock()
    start = threading.Barrier(clients + 1)
    t_start = [0.0]

    def client(k: int, share: list[bytes]) -> None:
        with grpc.insecure_channel(endpoint, options=[
                ("grpc.max_send_message_length", 64 << 20)]) as channel:
            stub = _raw_stub(channel)
            grpc.channel_ready_future(channel).result(timeout=30)
            start.wait()
            for j, raw in enumerate(share):
                if rate:  # batch j of client k is due at this time
                    due = t_start[0] + (j * clients + k) * per_batch / rate
                    pause = due - time.perf_counter()
                    if pause > 0:
                        time.sleep(pause)
                t0 = time.perf_counter()
                resp = pb.ExportResponse.FromString(stub(raw, timeout=300))
                dt = time.perf_counter() - t0
                with lock:
                    latencies.append(dt)
                    totals["accepted"] += resp.accepted
                    totals["duplicates"] += resp.duplicates
                    totals["rejected"] += len(resp.rejected)

    threads = [threading.Thread(target=client, args=(k, batches[k::clients]))
               for k in range(clients)]
    for t in threads:
        t.start()
    t_start[0] = time.perf_counter()
    start.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    return time.perf_counter() - t0, totals, sorted(latencies)


def sha256_rate(batches: list[bytes]) -> tuple[float, float]:
    """(records/s, average bytes) of hashlib.sha256 over each serialized record."""
    records = [r.SerializeToString() for raw in batches
               for r in pb.ExportRequest.FromString(raw).records]
    t0 = time.perf_counter()
    for r in records:
        hashlib.sha256(r).digest()
    return len(records) / (time.perf_counter() - t0), sum(map(len, records)) / len(records)


def raw_inserts(batches: list[bytes], data_dir: str, group: int) -> tuple[float, float]:
    """(records/s, records/s) of the engine inserting the requests' rows into a plain
    MergeTree table, and of the driver's Store.insert of the same records split into
    rows: the raw-insert baselines."""
    store = Store(f"chdb://{data_dir}")
    store.ensure_schema()
    lane = ingest_sql.EngineIngest(store, "main", ingest_sql.Limits(), tempfile.mkdtemp())
    structure = ingest_sql.input_structure()
    files = os.path.join(lane.records_dir, "*.bin")
    source = f"file('{files}', 'ProtobufList', '{structure}')"
    names = [name for name, _ in ingest_sql.input_columns()]
    flat = ", ".join(f"`{n}` AS {n.replace('.', '_')}" for n in names)
    store.client.command(f"CREATE TABLE {DB}.raw ENGINE = MergeTree ORDER BY tuple()"
                         f" AS SELECT {flat} FROM {source} LIMIT 0",
                         settings={"format_schema": f"{ingest_sql.PROTO_FILE}:AuditRecord"})
    spent, total = 0.0, 0
    for g in range(0, len(batches), group):
        for k, raw in enumerate(batches[g:g + group], start=1):
            with open(lane.records_file(k), "wb") as fh:
                fh.write(engine_lane._varint(len(raw)) + raw)
            total += len(pb.ExportRequest.FromString(raw).records)
        t0 = time.perf_counter()
        store.client.command(f"INSERT INTO {DB}.raw SELECT {flat} FROM {source}",
                             settings={"format_schema": f"{ingest_sql.PROTO_FILE}:AuditRecord"})
        spent += time.perf_counter() - t0
        lane.clear()
    engine_rate = total / spent
    # The driver: rows built in Python (untimed), inserted column-oriented (timed).
    from aitrail_collector.ledger.group_commit import split_record, stored_row
    rows, payloads, n = [], [], 0
    for raw in batches[:max(1, len(batches) // 5)]:
        for rec in pb.ExportRequest.FromString(raw).records:
            env, pls = split_record(rec, "raw", time.time_ns())
            n += 1
            rows.append(stored_row(n, env, b"\0" * 32, b"\0" * 32, b"\0" * 32))
            payloads += [("raw", rec.record_id, name, env["start_time"], "00", c, "")
                         for name, c in pls]
    t0 = time.perf_counter()
    store.insert(rows, payloads)
    driver_rate = n / (time.perf_counter() - t0)
    store.close()
    return engine_rate, driver_rate


STAGES = ("decode", "stage", "judge", "seal", "chain", "store")


def breakdown(warm: bytes, batches: list[bytes], data_dir: str, group: int
              ) -> tuple[dict[str, float], float]:
    """Seconds per stage of the engine lane, here in one thread on a fresh store, the
    batches committed ``group`` calls at a time; and the process CPU seconds."""
    store = Store(f"chdb://{data_dir}")
    store.ensure_schema()
    ledger = Ledger(store, "main")
    spent = dict.fromkeys(STAGES, 0.0)
    timed = {"stage": "stage", "flagged": "judge", "seal": "seal",
             "store_sealed": "store", "outcome": "seal"}
    originals = {name: getattr(ingest_sql.EngineIngest, name) for name in timed}
    for name, stage in timed.items():
        def wrapper(*a, _f=originals[name], _s=stage, **k):
            t0 = time.perf_counter()
            try:
                return _f(*a, **k)
            finally:
                spent[_s] += time.perf_counter() - t0
        setattr(ingest_sql.EngineIngest, name, wrapper)
    chain = engine_lane.chain_blob

    def timed_chain(prev: bytes, leaves: bytes) -> bytes:
        t0 = time.perf_counter()
        try:
            return chain(prev, leaves)
        finally:
            spent["chain"] += time.perf_counter() - t0
    engine_lane.chain_blob = timed_chain
    try:
        ledger.append_group([(warm, pb.ExportRequest.FromString(warm), UNAUTHENTICATED)])
        spent.update(dict.fromkeys(STAGES, 0.0))
        cpu0 = time.process_time()
        for g in range(0, len(batches), group):
            t0 = time.perf_counter()
            calls = [(raw, pb.ExportRequest.FromString(raw), UNAUTHENTICATED)
                     for raw in batches[g:g + group]]
            spent["decode"] += time.perf_counter() - t0
            ledger.append_group(calls)
        cpu = time.process_time() - cpu0
    finally:
        for name, f in originals.items():
            setattr(ingest_sql.EngineIngest, name, f)
        engine_lane.chain_blob = chain
        ledger.close()
        store.close()
    return spent, cpu


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="40k records instead of 200k")
    ap.add_argument("--records", type=int, default=None)
    ap.add_argument("--batch-size", type=int, default=5000)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--paced", type=float, default=50_000,
                    help="records/s of the latency run (0: skip it)")
    args = ap.parse_args()
    total = args.records or (40_000 if args.quick else 200_000)

    warm, *batches = make_batches(total + args.batch_size, args.batch_size)
    rec_bytes = sum(map(len, batches)) / total
    print(f"bench_ingest: {total} records (model calls and reviews 3:1) of ~{rec_bytes:.0f} B,"
          f" batches of {args.batch_size} (+1 warm-up batch, untimed), {args.clients} client"
          f" threads; {machine_line()}")
    sha_rate, sha_bytes = sha256_rate(batches)

    tmp = tempfile.TemporaryDirectory(prefix="aitrail-bench-ingest-")
    # The same batches into a collector that stores each group before it seals the
    # next (--serial-commit), right before: the pipelined commit's same-run baseline.
    serial = CollectorProcess(f"{tmp.name}/serial/data", args=["--serial-commit"])
    try:
        s_seconds, s_counts, _ = send_all(serial.endpoint, warm, batches, args.clients)
    finally:
        serial.stop()
    collector = CollectorProcess(f"{tmp.name}/data")
    try:
        seconds, counts, _ = send_all(collector.endpoint, warm, batches, args.clients)
        paced = None
        if args.paced:
            fresh = make_batches(total, args.batch_size)
            paced = send_all(collector.endpoint, warm, fresh, args.clients, args.paced)
    finally:
        rc = collector.stop()
    print(f"collector: {counts} in {seconds:.2f} s; stopped with exit code {rc}")
    print(f"collector --serial-commit: {s_counts} in {s_seconds:.2f} s")
    if counts["accepted"] != total:
        print(f"WARNING: {total} records sent, {counts['accepted']} accepted")
    print(f"aitrail verify: {run_verify(f'{tmp.name}/data')}")

    group = args.clients
    engine_insert, driver_insert = raw_inserts(batches, f"{tmp.name}/raw", group)
    spent, cpu = breakdown(warm, batches, f"{tmp.name}/stages", group)
    tmp.cleanup()

    rate = counts["accepted"] / seconds
    print_table("Acknowledged ingest vs its same-run baselines",
                ("figure", "records/s", "ratio"), [
                    ("collector over gRPC, acknowledged", f"{rate:,.0f}", ""),
                    ("BASELINE the same, --serial-commit (a group stored before the next"
                     " is sealed)", f"{s_counts['accepted'] / s_seconds:,.0f}",
                     f"{rate / (s_counts['accepted'] / s_seconds):.2f}x"),
                    (f"BASELINE sha256 of each serialized record ({sha_bytes:.0f} B)",
                     f"{sha_rate:,.0f}", f"{rate / sha_rate:.3f}x (target >= 0.10x)"),
                    ("BASELINE raw engine insert of the same rows (no checks, no hashes)",
                     f"{engine_insert:,.0f}", f"{rate / engine_insert:.2f}x"),
                    ("BASELINE raw Store.insert of the same rows (driver)",
                     f"{driver_insert:,.0f}", f"{rate / driver_insert:.2f}x")])
    if paced is not None:
        p_seconds, p_counts, lat = paced
        print_table(f"Acknowledgement latency, paced at {args.paced:,.0f} records/s "
                    f"({args.batch_size} per call)", ("figure", "value"), [
                        ("achieved records/s", f"{p_counts['accepted'] / p_seconds:,.0f}"),
                        ("p50 ack latency", f"{percentile(lat, 50) * 1e3:.0f} ms"),
                        ("p99 ack latency", f"{percentile(lat, 99) * 1e3:.0f} ms (target < 1000)")])
    whole = sum(spent.values())
    rows = [(stage, f"{dt / total * 1e6:.2f}", f"{dt / whole:.0%}") for stage, dt in spent.items()]
    rows.append(("sum (this process, no gRPC)", f"{whole / total * 1e6:.2f}",
                 f"= {total / whole:,.0f} rec/s"))
    rows.append(("process CPU (both cores) / record", f"{cpu / total * 1e6:.2f}", ""))
    print_table(f"Engine lane by stage, groups of {group} calls (this process, same batches)",
                ("stage", "us/record", "share"), rows)


if __name__ == "__main__":
    main()
