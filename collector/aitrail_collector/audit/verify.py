"""Verify a stored chain: recompute every leaf and chain hash and the sequence.

Two paths give the same findings. The engine path (the default) has the store's
engine re-encode and hash every row and check the links in one query
(``store.verify_sql``); only the rows that fail are read into Python and judged
by the reference code. The reference path (``fast=False``, or the environment
variable AITRAIL_VERIFY_REFERENCE=1) streams every row through Python and
re-encodes each envelope there. Either way, only when the chain does not link up
is it read again, hash columns only, to say what happened
(``aitrail.verify.chain.classify_links``).

The payload rows are checked against the sealed commitments by
``ledger.erasure.check_payloads``: on an embedded store the engine hashes them and
names the few records that fail, which the Python reference then judges; on a
ClickHouse server every payload row is read and hashed in Python.
"""

from __future__ import annotations

import os
import time
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import date, datetime, timezone
from typing import Any, Callable, Mapping, Optional, Protocol, Sequence, TypeVar, Union

from aitrail.verify.audit import AuditError, CheckpointAudit, Trust
from aitrail.verify.chain import (
    INSERTED,
    ChainSummary,
    Report,
    check_rows,
    classify_links,
    failing_rows,
    follow_links,
)
from aitrail.verify.checkpoint import CheckpointError, SignedCheckpoint, verify_signature
from aitrail.verify.hashes import ZERO_HASH
from aitrail.verify.merkle import TreeError, consistency_proof
from aitrail.verify.pinned import Extension, check_pinned, describe, newest_extension
from aitrail_collector import native
from aitrail_collector.ledger.erasure import check_payloads
from aitrail_collector.store import periods, verify_sql
from aitrail_collector.store.client import Store

T = TypeVar("T")
REFERENCE_ENV = "AITRAIL_VERIFY_REFERENCE"
ENGINE, REFERENCE = "engine", "reference"


def reference_asked(fast: Optional[bool]) -> bool:
    """Whether the caller asked for the reference path: ``fast=False``, or (``fast``
    None) the environment (AITRAIL_VERIFY_REFERENCE=1). That path then uses neither
    the engine's hashing nor compiled code."""
    if fast is None:
        return os.environ.get(REFERENCE_ENV, "").strip().lower() in ("1", "true", "yes")
    return not fast


def use_engine(store: Store, fast: Optional[bool]) -> bool:
    """Whether to take the engine path: unless the reference was asked for, and only on
    an engine that can run it (a server's rows are checked on the reference path)."""
    return not reference_asked(fast) and verify_sql.engine_can_verify(store)


class Writer(Protocol):
    """A running collector, as the verification it runs sees it (web.services.Services):
    what it has stored and signed on each chain it writes."""

    def durable_head(self, chain_id: str) -> Optional[int]:
        """The last seq stored in full (None: not a chain it writes)."""

    def issued_checkpoint(self, chain_id: str) -> int:
        """The number of the newest checkpoint it signed (0: none, or not its chain)."""


def verify_chain(store: Store, chain_id: str, audit: Optional[CheckpointAudit] = None,
                 fast: Optional[bool] = None, end_seq: Optional[int] = None) -> Report:
    """Check one chain; with ``audit``, also rebuild every checkpoint's root as rows pass
    and start where the audit says (``--from-checkpoint``). ``fast``: the engine path
    (None: unless AITRAIL_VERIFY_REFERENCE=1); ``report.path`` says which ran.

    ``end_seq``: the last seq to check (a running collector's durable head); else the
    head stored now. Every query of the check reads that same stretch: rows stored
    while it runs are neither counted nor checked, and cannot show as a gap."""
    end = store.head(chain_id)[0] if end_seq is None else end_seq
    if use_engine(store, fast):
        return _verify_chain_engine(store, chain_id, audit, end)
    return _verify_chain_reference(store, chain_id, audit, end)


def reference_summary(store: Store, chain_id: str, start_seq: int, start_hash: bytes,
                      on_block: Optional[Callable[[Sequence[bytes], Sequence[bytes]], None]]
                      = None, end_seq: Optional[int] = None) -> ChainSummary:
    """``verify_sql.summarize`` done by the reference, in Python (the engine only reads):
    the links followed on the hash columns by seq (``on_block``: the audit's tree), then
    every row read as stored and checked (``failing_rows``), up to the head the links
    found, so that a record appended in between is neither counted nor checked."""
    records, head_seq, intact = follow_links(store.link_blocks(chain_id, start_seq, end_seq),
                                             start_seq, start_hash, on_block)
    failing = failing_rows(store.chain_blocks(chain_id, start_seq, head_seq)) if records else []
    return ChainSummary(records, head_seq, failing, intact)


def _verify_chain_reference(store: Store, chain_id: str,
                            audit: Optional[CheckpointAudit], end_seq: int) -> Report:
    """The reference's summary of the chain; the rows that fail are read again whole and
    judged by ``check_rows``, as on the engine path, so both paths word every finding
    alike."""
    start_seq = audit.start_seq if audit else 1
    start_hash = audit.start_hash if audit else ZERO_HASH
    summary = reference_summary(store, chain_id, start_seq, start_hash,
                                audit.add_block if audit is not None else None, end_seq)
    report = Report(chain_id, summary.records, summary.head_seq, path=REFERENCE)
    # Maps are read as their stored entries (store.schema.STORED_ROW_SELECT), so a key
    # written in twice fails the row's own checks here too, and check_rows names it.
    modified = list(check_rows(chain_id, verify_sql.rows_at(store, chain_id,
                                                            summary.failing_seqs)))
    return _conclude(store, report, modified, summary.intact, (start_seq, end_seq),
                     start_hash, audit)


def _in_thread(pool: ThreadPoolExecutor, store: Store, fn: Callable[..., T], *args: Any
               ) -> Future[T]:
    """``fn(store, *args)`` on a worker thread, which closes its own store clients after
    (the embedded engine releases its directory only when every client is closed)."""
    def run() -> T:
        try:
            return fn(store, *args)
        finally:
            store.close()
    return pool.submit(run)


def _verify_chain_engine(store: Store, chain_id: str,
                         audit: Optional[CheckpointAudit], end_seq: int) -> Report:
    """The engine checks every row and the links; the reference judges the rows that fail.
    With an audit, the engine's pass runs on a worker thread while this one feeds the
    leaf and chain hashes to the audit (the engine releases the GIL while it works)."""
    start_seq = audit.start_seq if audit else 1
    start_hash = audit.start_hash if audit else ZERO_HASH
    if audit is None:
        summary = verify_sql.summarize(store, chain_id, start_seq, start_hash, end_seq)
    else:
        with ThreadPoolExecutor(1) as pool:
            pending = _in_thread(pool, store, verify_sql.summarize, chain_id, start_seq,
                                 start_hash, end_seq)
            for leaves, chains in verify_sql.hash_blobs(store, chain_id, start_seq, end_seq):
                audit.add_blob(leaves, chains)
            summary = pending.result()
    report = Report(chain_id, summary.records, summary.head_seq, path=ENGINE)
    modified = list(check_rows(chain_id, verify_sql.rows_at(store, chain_id,
                                                            summary.failing_seqs)))
    return _conclude(store, report, modified, summary.intact, (start_seq, end_seq),
                     start_hash, audit)


def _conclude(store: Store, report: Report, modified: list, intact: bool,
              stretch: tuple[int, int], start_hash: bytes,
              audit: Optional[CheckpointAudit]) -> Report:
    """The findings of one chain from the rows that failed and, when the links broke,
    where (``stretch``: the first and last seq checked)."""
    chain_id, (start_seq, end_seq) = report.chain_id, stretch
    placed = []
    if not intact:
        suspects = frozenset((f.seq, f.record_id) for f in modified)
        placed = classify_links(chain_id, store.links(chain_id, start_seq, end_seq), start_seq,
                                start_hash, suspects=suspects)
    # A forged row is reported once, as inserted, not also as modified.
    inserted = {(f.seq, f.record_id) for f in placed if f.kind == INSERTED}
    report.findings = [f for f in modified if (f.seq, f.record_id) not in inserted] + placed
    if audit is not None:
        audit.finish(report.head_seq)
        report.findings += audit.findings
    report.findings.sort(key=lambda f: (f.seq, f.kind))
    return report


def _audit(store: Store, chain_id: str, trust: Optional[Trust],
           from_checkpoint: Optional[int],
           pinned: Optional[SignedCheckpoint] = None,
           compiled: bool = True, writer: Optional[Writer] = None
           ) -> Optional[CheckpointAudit]:
    if trust is None:
        return None
    anchor_entries = None
    if trust.anchor is not None:
        anchor_entries = trust.anchor.entries(chain_id)
    rows = store.checkpoints(chain_id)
    # Asked after both reads: every checkpoint read that is not in the anchor yet was
    # issued by then.
    issued = writer.issued_checkpoint(chain_id) if writer is not None else 0
    capture = pinned.checkpoint.size if pinned and pinned.checkpoint.origin == chain_id else None
    return CheckpointAudit(chain_id, rows, anchor_entries, trust,
                           from_checkpoint, capture_size=capture,
                           # the tree rebuilt in C when built, unless the reference was asked for
                           extender=native.extend if compiled else None,
                           unanchored_through=issued)


def _pinned_findings(pinned: SignedCheckpoint, names: Sequence[str], reports: Sequence[Report],
                     audits: Mapping[str, Optional[CheckpointAudit]], trust: Trust) -> list:
    """The pinned checkpoint against the chain as stored (aitrail.verify.pinned)."""
    chain = pinned.checkpoint.origin
    report = next((r for r in reports if r.chain_id == chain), None)
    audit = audits.get(chain)
    stored = audit.valid_checkpoints() if audit else []
    newest = newest_extension(pinned, stored)
    extension = None
    if newest is not None:
        proof = None
        leaves = audit.leaves if audit else None
        size1, size2 = pinned.checkpoint.size, newest.checkpoint.size
        if leaves is not None and 0 < size1 < size2 <= len(leaves):
            try:
                proof = consistency_proof(leaves, size1, size2, native.subtree_roots(leaves))
            except TreeError:
                proof = None
        extension = Extension(newest, proof)
    return check_pinned(pinned, chains=names, public_key=trust.public_key,
                        head_seq=report.head_seq if report else 0, stored=stored,
                        root_at_size=audit.root_at_capture if audit else None,
                        extension=extension)


def verify_store(store: Store, chains: Optional[Sequence[str]] = None,
                 trust: Optional[Trust] = None,
                 from_checkpoint: Union[int, Mapping[str, int], None] = None,
                 pinned: Optional[SignedCheckpoint] = None,
                 fast: Optional[bool] = None,
                 writer: Optional[Writer] = None) -> dict:
    """Every chain (records, and with ``trust`` its checkpoints and anchor copies).

    ``from_checkpoint`` is a checkpoint number for every chain, or one per chain (a
    chain it does not name is verified from its first record). Raises AuditError
    when it names no usable checkpoint. ``pinned`` (``--since-checkpoint``): a
    checkpoint an auditor kept; later history not consistent with it is a finding.
    ``fast``: see ``verify_chain``; the report's ``path`` says which ran.
    ``writer``: the running collector this verification runs in (None: a store at
    rest). Each chain it writes is checked up to its durable head, asked after the
    chain's checkpoints are read, so that it is at least every checkpoint's size: a
    group being stored lands one part per day partition, each visible on its own, and
    its rows past the head are not a gap yet (Ledger.head_seq moves only once all of it
    is stored). And a checkpoint it signed that is not in the anchor yet (written there
    with its next batch) is a warning, not a finding.
    """
    started = time.perf_counter()
    names = list(chains or sorted(set(store.chains()) | set(store.checkpoint_chains())))
    if pinned is not None and trust is None:
        trust = Trust()
    reports, audits = [], {}
    engine = use_engine(store, fast)
    with ThreadPoolExecutor(1) as pool:
        # Payloads against the sealed commitments: their findings count against the
        # chain; erased payloads (named by a redaction record) are listed, not failed.
        # The embedded engine hashes the payload rows (on either path: the reference
        # path is about re-encoding the envelopes), on a worker thread while the
        # chains are checked, so both cores work. A server is never asked to: there
        # every payload row is read and hashed here.
        payload_checks = {c: _in_thread(pool, store, check_payloads, c, True)
                          for c in names} if verify_sql.engine_can_verify(store) else {}
        for chain_id in names:
            start = (from_checkpoint.get(chain_id) if isinstance(from_checkpoint, Mapping)
                     else from_checkpoint)
            audit = _audit(store, chain_id, trust, start, pinned,
                           compiled=not reference_asked(fast), writer=writer)
            audits[chain_id] = audit
            end = writer.durable_head(chain_id) if writer is not None else None
            reports.append(verify_chain(store, chain_id, audit, fast=fast, end_seq=end))
        pinned_findings = []
        if pinned is not None and trust is not None:
            pinned_findings = _pinned_findings(pinned, names, reports, audits, trust)
        erased = []
        for report in reports:
            check = payload_checks.get(report.chain_id)
            found, gone = (check.result() if check is not None
                           else check_payloads(store, report.chain_id, engine=False))
            report.findings += found
            erased += gone
    elapsed = time.perf_counter() - started
    records = sum(r.records for r in reports)
    root = dict(trust.root) if trust is not None and trust.root else None
    if root is not None and pinned is not None:
        root["pinned"] = describe(pinned)
    return {
        "ok": all(r.ok for r in reports) and not pinned_findings,
        "records": records,
        "seconds": round(elapsed, 3),
        "path": ENGINE if engine else REFERENCE,
        "chains": [{"chain_id": r.chain_id, "records": r.records, "head_seq": r.head_seq,
                    "ok": r.ok, **({"checkpoints": audits[r.chain_id].summary()}
                                   if audits[r.chain_id] else {})} for r in reports],
        "findings": [f.as_dict() for r in reports for f in r.findings]
        + [f.as_dict() for f in pinned_findings],
        "warnings": [w for a in audits.values() if a for w in a.warnings]
        + (root["warnings"] if root else []),
        "erased": erased,
        **({"trust_root": root} if root is not None else {}),
    }


def _day_ns(day: date) -> int:
    return int(datetime(day.year, day.month, day.day, tzinfo=timezone.utc).timestamp()) * 10**9


NO_END_NS = 2**63 - 1


def verify_period(store: Store, trust: Optional[Trust], since: Optional[date],
                  until: Optional[date], writer: Optional[Writer] = None) -> dict:
    """Verify the stretch of each chain that holds [since, until) (UTC days; ``until``
    exclusive): from that chain's last checkpoint signed before ``since`` on
    (everything when there is none). The rest of the chain after ``until`` is checked
    too: it is what proves nothing in the period was changed later, and it costs
    little next to reading the period.

    The period is one of *sealed* time (each record's received_time,
    ``store.periods``). ``report["period"]`` says, per chain and in total, how many
    records were sealed in it, how many after it were checked, which records no
    signed checkpoint covers yet, and which checkpoints were signed in the period
    (those of a quiet period show the chain was running then). Raises AuditError
    when ``since`` is not before ``until``. ``writer``: as for ``verify_store``."""
    if since is not None and until is not None and since >= until:
        raise AuditError(f"the period's start ({since.isoformat()}) must be before its end "
                         f"({until.isoformat()}, exclusive)")
    starts: dict[str, int] = {}
    since_ns = _day_ns(since) if since is not None else 0
    until_ns = _day_ns(until) if until is not None else NO_END_NS
    if since is not None and trust is not None:
        for chain in store.checkpoint_chains():
            number = _last_signed_before(chain, store.checkpoints(chain), since_ns, trust)
            if number is not None:
                starts[chain] = number
    try:
        report = verify_store(store, trust=trust, from_checkpoint=starts, writer=writer)
    except AuditError:  # a start the audit will not take: verify each chain whole
        starts = {}
        report = verify_store(store, trust=trust, writer=writer)
    report["period"] = {"since": since.isoformat() if since else None,
                        "until": until.isoformat() if until else None,
                        "from_checkpoint": starts,
                        **_period_counts(store, report, since_ns, until_ns)}
    return report


def _period_counts(store: Store, report: dict, since_ns: int, until_ns: int) -> dict:
    """What the period holds, chain by chain (store.periods), beside what was verified."""
    held = periods.records(store, since_ns, until_ns)
    verified = {c["chain_id"]: c["records"] for c in report["chains"]}
    chains = []
    for chain_id in sorted(set(held) | set(store.checkpoint_chains())):
        p = held.get(chain_id) or periods.ChainPeriod(chain_id)
        signed = periods.checkpoints_in(store, chain_id, since_ns, until_ns)
        newest = periods.newest_checkpoint(store, chain_id)
        covered = newest.size if newest else 0
        uncovered = max(0, p.head_seq - covered)
        chains.append({
            "chain_id": chain_id, "in_period": p.in_period,
            "first_seq": p.first_seq, "last_seq": p.last_seq, "after": p.after,
            # read from the starting checkpoint up to the period, to link it to a signed root
            "before": max(0, verified.get(chain_id, 0) - p.in_period - p.after),
            "first_sealed_ns": p.first_time_ns,
            "checkpoints_in_period": {
                "count": signed.count,
                "first": vars(signed.first) if signed.first else None,
                "last": vars(signed.last) if signed.last else None},
            "newest_checkpoint": vars(newest) if newest else None,
            "uncovered": {"count": uncovered,
                          "first_seq": covered + 1 if uncovered else 0,
                          "last_seq": p.head_seq if uncovered else 0}})
    return {"since_ns": since_ns, "until_ns": until_ns, "chains": chains,
            "in_period": sum(c["in_period"] for c in chains),
            "after": sum(c["after"] for c in chains),
            "before": sum(c["before"] for c in chains),
            "uncovered": sum(c["uncovered"]["count"] for c in chains),
            "checkpoints_in_period": sum(c["checkpoints_in_period"]["count"] for c in chains)}


def _last_signed_before(chain_id: str, rows: Sequence[tuple], start_ns: int,
                        trust: Trust) -> Optional[int]:
    """The newest checkpoint of ``chain_id`` whose *signed* time is before ``start_ns``
    and that is valid. The database's time column is not trusted, and a checkpoint
    that does not parse or verify is skipped: verification reports it, and starting
    from it would be refused."""
    for number, _, text, _ in reversed(rows):
        try:
            signed = SignedCheckpoint.parse(text)
            cp = signed.checkpoint
            if cp.origin != chain_id or cp.number != number or cp.time_ns > start_ns:
                continue
            if trust.public_key is not None:  # only for candidates: a year is ~100k
                verify_signature(signed, trust.public_key)
        except CheckpointError:
            continue
        return number
    return None
