"""Verification throughput of verify_store, against plain SHA-256 in the same run.

verify_store reads and checks every row (leaf hash of the canonical envelope,
chain links) and then every payload row against its sealed commitment; the
breakdown times the three parts on their own.

The store is filled in-process with Ledger.append (the collector's own code
path, without gRPC). The baseline hashes as many inputs as there are records,
each the size of an average canonical envelope, with hashlib.sha256.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import tempfile
import time

from _common import machine_line, print_table
from bench_ingest import make_batches

from aitrail.v1 import audit_pb2 as pb
from aitrail.verify.chain import check_rows
from aitrail.verify.envelope import canonical_bytes
from aitrail_collector.audit.verify import verify_store
from aitrail_collector.ledger.erasure import check_payloads
from aitrail_collector.ledger.group_commit import Ledger
from aitrail_collector.store.client import Store


def fill(store: Store, total: int, batch: int) -> float:
    """Append `total` model_call records via Ledger.append; returns seconds taken."""
    ledger = Ledger(store, "main")
    t0 = time.perf_counter()
    for raw in make_batches(total, batch):
        records = pb.ExportRequest.FromString(raw).records
        result = ledger.append(records)
        assert result.accepted == len(records), result
    return time.perf_counter() - t0


def sha_rate(n: int, size: int) -> float:
    """hashlib.sha256 digests per second over n distinct inputs of `size` bytes."""
    inputs = [os.urandom(size) for _ in range(n)]
    sha = hashlib.sha256
    t0 = time.perf_counter()
    for data in inputs:
        sha(data).digest()
    return n / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="20k records instead of 100k")
    ap.add_argument("--records", type=int, default=None)
    args = ap.parse_args()
    total = args.records or (20_000 if args.quick else 100_000)

    tmp = tempfile.TemporaryDirectory(prefix="aitrail-bench-verify-")
    store = Store(f"chdb://{tmp.name}/data")
    store.ensure_schema()
    fill_s = fill(store, total, 5_000)
    print(f"bench_verify: {total} records appended with Ledger.append in {fill_s:.1f} s "
          f"({total / fill_s:,.0f} rec/s); {machine_line()}")

    t0 = time.perf_counter()
    report = verify_store(store)
    verify_s = time.perf_counter() - t0
    assert report["ok"] and report["records"] == total, report

    # Breakdown: reading rows alone, then the per-row checks on rows already in memory.
    t0 = time.perf_counter()
    rows = list(store.iter_chain("main"))
    read_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    findings = list(check_rows("main", rows))
    check_s = time.perf_counter() - t0
    assert not findings
    t0 = time.perf_counter()
    found, _ = check_payloads(store, "main")
    payload_s = time.perf_counter() - t0
    assert not found, found
    size = round(sum(len(canonical_bytes(env)) for _, env in rows[:1000]) / min(1000, total))
    store.close()
    tmp.cleanup()

    base, base_300 = sha_rate(total, size), sha_rate(total, 300)
    rate = total / verify_s
    rows = [("verify_store (read + leaf/chain hash + links + payloads)", rate),
            ("  of which: read rows (Store.iter_chain)", total / read_s),
            ("  of which: check_rows on rows in memory", total / check_s),
            ("  of which: check_payloads (payload rows vs commitments)", total / payload_s),
            (f"BASELINE hashlib.sha256, {size}-byte inputs (envelope size)", base),
            ("hashlib.sha256, 300-byte inputs", base_300)]
    print_table("Verification throughput", ("figure", "records/s", "ratio to baseline"),
                [(name, f"{r:,.0f}", f"{r / base:.4f}x") for name, r in rows])


if __name__ == "__main__":
    main()
