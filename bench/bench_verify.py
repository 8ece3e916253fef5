"""Verification throughput of verify_store, engine path and reference path, against
plain SHA-256 in the same run.

verify_store reads and checks every row (leaf hash of the canonical envelope,
chain links) and then every payload row against its sealed commitment; the
breakdown times the three parts on their own.

The store is filled in-process with Ledger.append (the collector's own code
path, without gRPC). The baseline hashes the records' own canonical bytes
(0x00 || canonical envelope, one leaf hash each) with hashlib.sha256.
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
from aitrail.verify.audit import CheckpointAudit, Trust
from aitrail.verify.chain import failing_rows, follow_links
from aitrail.verify.envelope import canonical_bytes
from aitrail.verify.hashes import ZERO_HASH
from aitrail_collector import native
from aitrail_collector.audit.verify import verify_store
from aitrail_collector.ledger.erasure import check_payloads
from aitrail_collector.ledger.group_commit import Ledger
from aitrail_collector.store import verify_sql
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

    def timed(**kw) -> float:
        t0 = time.perf_counter()
        report = verify_store(store, **kw)
        seconds = time.perf_counter() - t0
        assert report["ok"] and report["records"] == total, report
        return seconds

    engine_s, reference_s = timed(fast=True), timed(fast=False)
    # With a trust (no checkpoints here): the checkpoint audit rebuilds the Merkle tree
    # from every leaf hash, which the engine path feeds in column blocks.
    engine_audit_s, reference_audit_s = timed(fast=True, trust=Trust()), \
        timed(fast=False, trust=Trust())

    # Breakdown of the engine path: the one query, then the hash blocks alone.
    t0 = time.perf_counter()
    summary = verify_sql.summarize(store, "main", 1, ZERO_HASH)
    summary_s = time.perf_counter() - t0
    assert summary.records == total and not summary.failing_seqs and summary.intact
    t0 = time.perf_counter()
    blocks = list(verify_sql.hash_blobs(store, "main", 1))
    blocks_s = time.perf_counter() - t0
    assert sum(len(leaves) for leaves, _ in blocks) == total * 32
    # The Merkle tree rebuilt from those blocks alone (CheckpointAudit.add_blob), with the
    # collector's compiled extender and with the SDK's Python (what --fast=False and an
    # install without a compiler use): the same-run before/after of aitrail_collector.native.
    tree_s = {}
    for name, extender in (("compiled", native.extend), ("python", None)):
        audit = CheckpointAudit("main", [], None, Trust(), extender=extender)
        t0 = time.perf_counter()
        for leaves, chains in blocks:
            audit.add_blob(leaves, chains)
        tree_s[name] = time.perf_counter() - t0
        audit.finish(total)
        assert audit.tree.size == total and not audit.findings
    # Breakdown of the reference path: reading the rows alone (as stored: text as bytes),
    # then its per-row checks on those rows in memory.
    t0 = time.perf_counter()
    links, blocks = list(store.link_blocks("main")), list(store.chain_blocks("main"))
    read_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    assert follow_links(links) == (total, total, True) and not failing_rows(blocks)
    check_s = time.perf_counter() - t0
    del links, blocks
    t0 = time.perf_counter()
    found, _ = check_payloads(store, "main")
    payload_s = time.perf_counter() - t0
    assert not found, found
    # The baseline's input: each row's canonical bytes, by the envelope encoder.
    canonical = [b"\x00" + canonical_bytes(env) for _, env in store.iter_chain("main")]
    size = round(sum(map(len, canonical)) / total)
    store.close()
    tmp.cleanup()

    # BASELINE: hashlib.sha256 over the same canonical bytes, in this run.
    sha = hashlib.sha256
    t0 = time.perf_counter()
    for data in canonical:
        sha(data).digest()
    base = total / (time.perf_counter() - t0)
    figures = [("verify_store, engine path (default)", total / engine_s),
               ("  of which: the one query (verify_sql.summarize)", total / summary_s),
               ("verify_store, reference path (AITRAIL_VERIFY_REFERENCE=1)", total / reference_s),
               ("  of which: read links and rows as stored (link_blocks, chain_blocks)",
                total / read_s),
               ("  of which: follow_links + failing_rows on them in memory", total / check_s),
               ("check_payloads (payload rows vs commitments; in both paths)", total / payload_s),
               ("verify_store + tree rebuild (trust), engine path", total / engine_audit_s),
               ("  of which: leaf/chain hash blobs read (verify_sql.hash_blobs)",
                total / blocks_s),
               (f"  of which: Merkle tree rebuild, compiled ({native.status()})",
                total / tree_s["compiled"]),
               ("  the same rebuild in pure Python (before aitrail_collector.native)",
                total / tree_s["python"]),
               ("verify_store + tree rebuild (trust), reference path", total / reference_audit_s),
               (f"BASELINE hashlib.sha256 of the canonical bytes (avg {size} B)", base),
               ("hashlib.sha256, 300-byte random inputs", sha_rate(total, 300))]
    print_table("Verification throughput", ("figure", "records/s", "ratio to baseline"),
                [(name, f"{r:,.0f}", f"{r / base:.4f}x") for name, r in figures])
    print(f"engine path / reference path: {reference_s / engine_s:.1f}x; with the tree "
          f"rebuild: {reference_audit_s / engine_audit_s:.1f}x")
    per = 200_000 / total
    print(f"Merkle tree rebuild per 200k records: compiled {tree_s['compiled'] * per:.3f} s, "
          f"pure Python {tree_s['python'] * per:.3f} s "
          f"({tree_s['python'] / tree_s['compiled']:.1f}x)")

if __name__ == "__main__":
    main()
