"""Verify a stored chain: recompute every leaf and chain hash and the sequence.

One streaming pass checks each row and whether it follows its predecessor.
Only when the chain does not link up is it read again, hash columns only, to
say what happened (``aitrail.chain.classify_links``).
"""

from __future__ import annotations

import time
from typing import Optional, Sequence

from aitrail.chain import GENESIS, INSERTED, Report, check_rows, classify_links
from aitrail_collector.store import Store


def verify_chain(store: Store, chain_id: str) -> Report:
    report = Report(chain_id)
    expected_seq, prev = 1, GENESIS
    linked = True

    def rows():
        nonlocal expected_seq, prev, linked
        for link, envelope in store.iter_chain(chain_id):
            report.records += 1
            report.head_seq = link.seq
            if link.seq != expected_seq or link.prev_hash != prev:
                linked = False
            expected_seq, prev = link.seq + 1, link.chain_hash
            yield link, envelope

    modified = list(check_rows(chain_id, rows()))
    placed = []
    if not linked:
        suspects = frozenset((f.seq, f.record_id) for f in modified)
        placed = classify_links(chain_id, store.links(chain_id), suspects=suspects)
    # A forged row is reported once, as inserted, not also as modified.
    inserted = {(f.seq, f.record_id) for f in placed if f.kind == INSERTED}
    report.findings = [f for f in modified if (f.seq, f.record_id) not in inserted] + placed
    report.findings.sort(key=lambda f: (f.seq, f.kind))
    return report


def verify_store(store: Store, chains: Optional[Sequence[str]] = None) -> dict:
    started = time.perf_counter()
    reports = [verify_chain(store, c) for c in (chains or store.chains())]
    elapsed = time.perf_counter() - started
    records = sum(r.records for r in reports)
    return {
        "ok": all(r.ok for r in reports),
        "records": records,
        "seconds": round(elapsed, 3),
        "chains": [{"chain_id": r.chain_id, "records": r.records, "head_seq": r.head_seq,
                    "ok": r.ok} for r in reports],
        "findings": [f.as_dict() for r in reports for f in r.findings],
    }
