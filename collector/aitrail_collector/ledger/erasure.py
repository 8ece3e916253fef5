"""Erasure that keeps the proof (GDPR Art. 17; DESIGN.md, "Sealing").

A record's payloads (input, output, logprobs, reviewer changes, free-text
rationale) are stored apart from its sealed envelope, which keeps a salted
commitment to each. Erasure deletes the payload rows, content and salt, and
seals a ``redaction`` record into the chain of the erased records saying what
was erased, by whose request and why. No envelope changes, so the chain still
verifies, and ``check_payloads`` tells an erased payload from a missing or a
changed one.

The redaction record (event type ``redaction``; clients may not send one):

* ``actor``     who asked for the erasure;
* ``resource``  ``task:<task id>`` or ``record:<record id>``: what was asked for;
* ``purpose``   the reason given: required, at most ``Limits.max_name_chars``;
* ``task_id``   the erased task (erasing one record: that record's task), so the
  task's timeline shows the erasure;
* ``attributes``, one entry per erased record:
  ``erased:<record id>`` -> the erased payload names, comma-separated, sorted;
  and, only when it happened, ``modified:<record id>`` -> the names whose stored
  row no longer matched its sealed commitment when it was erased, so that an
  erasure cannot hide earlier tampering.

Erasing nothing (no such task or record, no payloads, all already erased) is
refused and writes nothing.
"""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Optional, Sequence

from aitrail.errors import AitrailError
from aitrail.record.event_types import COLLECTOR_SERVICE
from aitrail.record.ids import uuid7
from aitrail.record.redact import find_pii
from aitrail.v1 import audit_pb2 as pb
from aitrail.verify.chain import Finding
from aitrail.verify.hashes import commitment, salt_bytes
from aitrail.version import SDK_VERSION
from aitrail_collector.config import Limits
from aitrail_collector.ledger.group_commit import Ledger
from aitrail_collector.store import payloads
from aitrail_collector.store.client import Store

REDACTION = "redaction"
REASON_PAYLOAD = "erase_reason"   # envelope v2: the reason is free text, so a payload
ERASED_TEXT = "[erased]"
ERASED_PREFIX = "erased:"
MODIFIED_PREFIX = "modified:"
SERVICE = COLLECTOR_SERVICE
MAX_RECORDS = 10_000  # per erasure: one redaction record carries one attribute per record

# Finding kinds of check_payloads (aitrail.verify.chain.Finding.kind).
PAYLOAD_MISSING = "payload_missing"        # gone, and no redaction record names it
PAYLOAD_MODIFIED = "payload_modified"      # stored, but not what was sealed
ERASURE_INCOMPLETE = "erasure_incomplete"  # named as erased, yet still stored

# check_payloads joins envelopes and payloads in windows of whole days (both tables
# are partitioned by day of start_time, and a payload row has its envelope's
# start_time), so the engine's memory stays bounded however large the chain.
WINDOW_RECORDS = 500_000

_lock = threading.Lock()  # one erasure at a time: a process owns its store


class ErasureError(AitrailError, ValueError):
    """The request cannot be carried out as given; nothing was written."""


class NothingToErase(AitrailError, LookupError):
    """No such task or record, no payloads, or already erased; nothing was written."""

    def __init__(self, message: str, found: bool = True):
        super().__init__(message)
        self.found = found  # False: the task or record does not exist


@dataclass(frozen=True)
class Redaction:
    """A sealed redaction record, as read back from the envelopes."""
    chain_id: str
    seq: int
    record_id: str
    actor: str
    reason: str
    erased: dict[str, tuple[str, ...]]    # record id -> payload names
    modified: dict[str, tuple[str, ...]]  # record id -> names changed before erasure


def redactions(store: Store, chain_id: str) -> list[Redaction]:
    """Every redaction record of a chain, by seq (event_type leads the sort key)."""
    rows = payloads.records_of_type(store, chain_id, REDACTION)
    reasons = _sealed_reasons(store, chain_id, rows)
    return [Redaction(chain_id, int(seq), rid, actor,
                      purpose if version == 1 else reasons.get(rid, ERASED_TEXT),
                      _names(attrs, ERASED_PREFIX), _names(attrs, MODIFIED_PREFIX))
            for seq, rid, actor, purpose, attrs, version, _ in rows]


def _sealed_reasons(store: Store, chain_id: str, rows: Sequence[tuple]) -> dict[str, str]:
    """The erase reasons of envelope-v2 redactions: payloads, each checked against its
    sealed commitment (an erased or altered one is left out)."""
    sealed = {rid: dict(commitments).get(REASON_PAYLOAD)
              for _, rid, _, _, _, version, commitments in rows if version != 1}
    wanted = [rid for rid, digest in sealed.items() if digest]
    if not wanted:
        return {}
    out = {}
    for rid, name, salt, content in store.payload_rows(chain_id, wanted):
        if name == REASON_PAYLOAD and commitment(salt_bytes(salt), content) == sealed[rid]:
            out[rid] = content
    return out


def _names(attributes: dict[str, str], prefix: str) -> dict[str, tuple[str, ...]]:
    return {k[len(prefix):]: tuple(n for n in v.split(",") if n)
            for k, v in attributes.items() if k.startswith(prefix)}


def _erased_by(reds: Sequence[Redaction]) -> dict[tuple[str, str], Redaction]:
    """(record id, payload name) -> the first redaction that erased it."""
    index: dict[tuple[str, str], Redaction] = {}
    for red in reds:
        for rid, names in red.erased.items():
            for name in names:
                index.setdefault((rid, name), red)
    return index


# ------------------------------------------------------------------ erasing

@dataclass
class _Target:
    chain_id: str
    seq: int
    record_id: str
    task_id: str
    start_ns: int
    sealed: dict[str, str]  # payload name -> commitment


@dataclass
class _Plan:
    """What one chain's part of an erasure will do."""
    chain_id: str
    targets: list[_Target]
    present: dict[str, list[str]] = field(default_factory=dict)   # to name as erased
    modified: dict[str, list[str]] = field(default_factory=dict)  # of those: not as sealed
    completing: list[str] = field(default_factory=list)  # named before, still stored
    has_rows: set[str] = field(default_factory=set)      # record ids with any payload row


def _clean(name: str, value: Optional[str], limit: int) -> str:
    text = (value or "").strip()
    if not text:
        raise ErasureError(f"{name} is required")
    if len(text) > limit:
        raise ErasureError(f"{name} is {len(text)} characters; the limit is {limit}")
    return text


def _request(task: Optional[str], record_id: Optional[str], reason: Optional[str],
             actor: Optional[str], limits: Limits) -> tuple[str, str, str, str]:
    """(column, value, reason, actor) of a well-formed request."""
    if (task is None) == (record_id is None):
        raise ErasureError("give exactly one of task and record_id")
    column = "task_id" if task is not None else "record_id"
    value = _clean(column, task if task is not None else record_id, limits.max_id_chars)
    why = _clean("reason", reason, limits.max_name_chars)
    found = find_pii(why)
    if found:
        raise ErasureError(f"the reason contains what looks like personal data "
                           f"({', '.join(found)}); it is kept with the erasure record, so "
                           "give the reason without it (a ticket or request number, say)")
    return column, value, why, _clean("actor", actor, limits.max_name_chars)


def _targets(store: Store, column: str, value: str) -> list[_Target]:
    # task_id and record_id have skip indexes: this does not scan the table.
    # Erasing a task leaves its earlier redaction records whole: each says what was
    # erased and why (a reason with personal data is refused), for the auditor.
    rows = payloads.commitments_of(store, column, value,
                                   except_type=REDACTION if column == "task_id" else "")
    seen: set[tuple[str, str]] = set()
    out = []
    for chain_id, seq, rid, task_id, start_ns, sealed in rows:
        if (chain_id, rid) not in seen:  # a forged duplicate row is verify's business
            seen.add((chain_id, rid))
            out.append(_Target(chain_id, int(seq), rid, task_id, int(start_ns), dict(sealed)))
    return out


def _plan(store: Store, chain_id: str, targets: list[_Target]) -> _Plan:
    plan = _Plan(chain_id, targets)
    sealed = {t.record_id: t.sealed for t in targets}
    bounds = (min(t.start_ns for t in targets), max(t.start_ns for t in targets))
    rows = store.payload_rows(chain_id, list(sealed), bounds)
    named = _erased_by(redactions(store, chain_id))
    present: dict[str, set[str]] = {}
    changed: dict[str, set[str]] = {}
    for rid, name, salt, content in rows:
        plan.has_rows.add(rid)
        expected = sealed[rid].get(name)
        if expected is None:
            continue  # not a sealed payload (stray row): deleted, not named
        present.setdefault(rid, set()).add(name)
        if commitment(salt_bytes(salt), content) != expected:
            changed.setdefault(rid, set()).add(name)
    for rid, names in present.items():
        fresh = sorted(n for n in names if (rid, n) not in named)
        if fresh:
            plan.present[rid] = fresh
            bad = sorted(changed.get(rid, set()) & set(fresh))
            if bad:
                plan.modified[rid] = bad
        else:
            plan.completing.append(rid)
    return plan


def _nothing_message(what: str, plans: Sequence[_Plan], store: Store) -> str:
    """Why there is nothing to erase: already erased (by which redaction), or gone."""
    for plan in plans:
        named = _erased_by(redactions(store, plan.chain_id))
        for t in plan.targets:
            for name in sorted(t.sealed):
                red = named.get((t.record_id, name))
                if red is not None:
                    return (f"{what}: already erased by redaction record {red.record_id} "
                            f"(chain {red.chain_id}, seq {red.seq}, reason: {red.reason!r})")
    return (f"{what}: its payloads are not stored, and no redaction record names them "
            "(run `aitrail verify`)")


def _redaction_record(task_id: str, resource: str, reason: str, actor: str,
                      plan: _Plan) -> pb.AuditRecord:
    now = time.time_ns()
    rec = pb.AuditRecord(record_id=uuid7(now), event_type=REDACTION, task_id=task_id,
                         start_time_unix_nano=now, end_time_unix_nano=now, service=SERVICE,
                         host=socket.gethostname(), sdk_version=SDK_VERSION)
    rec.data_access.actor, rec.data_access.resource, rec.data_access.purpose = (
        actor, resource, reason)
    for rid, names in plan.present.items():
        rec.attributes[ERASED_PREFIX + rid] = ",".join(names)
    for rid, names in plan.modified.items():
        rec.attributes[MODIFIED_PREFIX + rid] = ",".join(names)
    return rec


def erase(store: Store, ledger_for: Callable[[str], Ledger], *, task: Optional[str] = None,
          record_id: Optional[str] = None, reason: Optional[str] = None,
          actor: Optional[str] = None, limits: Limits = Limits()) -> dict[str, Any]:
    """Erase the payloads of a task's records or of one record, and seal why.

    ``ledger_for(chain_id)`` gives the ledger that seals into that chain, or raises
    ErasureError when this process may not (a collector seals only its own chain).
    Raises ErasureError for a malformed request and NothingToErase when there is
    nothing to erase; either way nothing was written. The redaction record is
    sealed before the rows are deleted: if the deletion fails, the erasure is on
    record and ``verify`` reports it incomplete until it is run again.
    """
    column, value, reason, actor = _request(task, record_id, reason, actor, limits)
    what = f"task {value!r}" if column == "task_id" else f"record {value!r}"
    with _lock:
        targets = _targets(store, column, value)
        if not targets:
            raise NothingToErase(f"no records for {what}", found=False)
        with_payloads = [t for t in targets if t.sealed]
        if not with_payloads:
            raise NothingToErase(f"{what} has no payloads to erase "
                                 f"({len(targets)} record(s), none with content)")
        if len(with_payloads) > MAX_RECORDS:
            raise ErasureError(f"{what} has {len(with_payloads)} records with payloads; "
                               f"at most {MAX_RECORDS} per erasure")
        chains = sorted({t.chain_id for t in with_payloads})
        ledgers = {c: ledger_for(c) for c in chains}  # refuses before anything is written
        plans = [_plan(store, c, [t for t in with_payloads if t.chain_id == c]) for c in chains]
        if not any(p.present or p.completing for p in plans):
            raise NothingToErase(_nothing_message(what, plans, store))
        resource = ("task:" if column == "task_id" else "record:") + value
        task_id = value if column == "task_id" else with_payloads[0].task_id
        return _apply(store, ledgers, plans, resource, task_id, reason, actor)


def _apply(store: Store, ledgers: dict[str, Ledger], plans: Sequence[_Plan], resource: str,
           task_id: str, reason: str, actor: str) -> dict[str, Any]:
    result: dict[str, Any] = {"target": resource, "reason": reason, "actor": actor,
                              "erased": [], "redactions": [], "completed": [],
                              "payloads": 0, "records": 0, "inactive_parts_left": 0}
    for plan in plans:
        if plan.present:
            rec = _redaction_record(task_id, resource, reason, actor, plan)
            ledgers[plan.chain_id].append_own(rec)
            pos = store.position(rec.record_id)
            result["redactions"].append({"chain_id": plan.chain_id, "record_id": rec.record_id,
                                         "seq": pos[1] if pos else None})
        if plan.has_rows:
            result["inactive_parts_left"] += store.erase_payloads(plan.chain_id,
                                                                  sorted(plan.has_rows))
        seqs = {t.record_id: t.seq for t in plan.targets}
        for rid, names in plan.present.items():
            result["erased"].append({"chain_id": plan.chain_id, "record_id": rid,
                                     "seq": seqs[rid], "payloads": names,
                                     **({"modified": plan.modified[rid]}
                                        if rid in plan.modified else {})})
        result["completed"] += plan.completing
    result["records"] = len(result["erased"])
    result["payloads"] = sum(len(e["payloads"]) for e in result["erased"])
    return result


# ------------------------------------------------------------------ verifying

def unmatched_commitments(commitment_rows: Iterable[tuple], payload_rows: Iterable[tuple]
                          ) -> list[tuple[int, str, str, int, int]]:
    """The reference payload check of one window, in plain Python.

    ``commitment_rows``: (seq, record_id, commitments) of the sealed envelopes;
    ``payload_rows``: (record_id, name, salt, content) of the stored payloads.
    ``payload_rows`` is consumed first, whole (each row kept as its digest only).
    Returns (seq, record_id, name, stored, bad) of each sealed commitment, by seq and
    name, whose payload is absent (stored 0) or stored but hashing to none of the
    commitments sealed under that (seq, record, name) (bad 1). An extra row beside a
    matching one is an orphan of a retried write, which every reader ignores.
    """
    digests: dict[tuple[str, str], list[str]] = {}
    for rid, name, salt, content in payload_rows:
        digests.setdefault((rid, name), []).append(commitment(salt_bytes(salt), content))
    sealed: dict[tuple[int, str, str], set[str]] = {}
    for seq, rid, commitments in commitment_rows:
        for name, digest in commitments.items():
            sealed.setdefault((int(seq), rid, name), set()).add(digest)
    out = []
    for (seq, rid, name), wanted in sorted(sealed.items()):
        actual = digests.get((rid, name), [])
        if not actual:
            out.append((seq, rid, name, 0, 0))
        elif wanted.isdisjoint(actual):
            out.append((seq, rid, name, len(actual), 1))
    return out


def _unmatched(store: Store, chain_id: str, lo: int, hi: int, engine: bool
               ) -> list[tuple[int, str, str, int, int]]:
    """unmatched_commitments of the window [lo, hi). With ``engine`` the engine hashes
    every payload row and names the few records with a commitment nothing matches;
    the reference then judges only those records' rows (the same function over fewer
    rows: a record's result depends on its own rows only). Without it every row is
    read and hashed here."""
    ids: Optional[list[str]] = None
    if engine:
        ids = payloads.unmatched_records(store, chain_id, lo, hi)
        if not ids:
            return []
    # Both are lazy streams on the store's one stream client: the payload rows are
    # consumed (into their digests) before the commitments are read.
    return unmatched_commitments(payloads.commitment_rows(store, chain_id, lo, hi, ids),
                                 payloads.window_payload_rows(store, chain_id, lo, hi, ids))


def check_payloads(store: Store, chain_id: str, engine: bool = True
                   ) -> tuple[list[Finding], list[dict[str, Any]]]:
    """Every sealed commitment of a chain against the payload table.

    Returns (findings, erased). A payload stored and matching its commitment is
    fine; absent and named by a redaction record of the chain, it is listed as
    erased; absent otherwise, ``payload_missing``; stored but not hashing to its
    commitment (content or salt changed), ``payload_modified``; stored though a
    redaction names it, ``erasure_incomplete``. ``engine``: let the embedded engine
    hash the payload rows so that only the exceptions reach Python (the caller
    decides, as for the chains: audit.verify.use_engine); else every row is hashed
    in Python. Both give the same findings.
    """
    reds = redactions(store, chain_id)
    named = _erased_by(reds)
    findings: list[Finding] = []
    gone: dict[tuple[str, str], tuple[int, list[str]]] = {}  # (record, redaction) -> seq, names
    reported: set[tuple[str, str]] = set()  # every (record, name) found unmatched
    for lo, hi in payloads.day_windows(store, chain_id, WINDOW_RECORDS):
        for seq, rid, name, stored, bad in _unmatched(store, chain_id, lo, hi, engine):
            reported.add((rid, name))
            red = named.get((rid, name))
            if stored and bad:
                findings.append(Finding(PAYLOAD_MODIFIED, chain_id, seq, rid,
                                        f"payload {name!r} does not match its sealed commitment"
                                        " (content or salt changed)"))
            elif not stored and red is None:
                findings.append(Finding(PAYLOAD_MISSING, chain_id, seq, rid,
                                        f"payload {name!r} is gone and no redaction record "
                                        "names it (deleted outside erasure)"))
            elif not stored:
                gone.setdefault((rid, red.record_id), (seq, []))[1].append(name)
    findings += _named_but_stored(store, chain_id, reds, named, reported)
    by_id = {r.record_id: r for r in reds}
    erased = [{"chain_id": chain_id, "record_id": rid, "seq": seq, "payloads": sorted(names),
               "redaction_id": red_id, "redaction_seq": by_id[red_id].seq,
               "reason": by_id[red_id].reason, "actor": by_id[red_id].actor}
              for (rid, red_id), (seq, names) in sorted(gone.items(), key=lambda kv: kv[1][0])]
    return findings, erased


def _named_but_stored(store: Store, chain_id: str, reds: Sequence[Redaction],
                      named: dict[tuple[str, str], Redaction],
                      reported: set[tuple[str, str]]) -> list[Finding]:
    """Findings the join cannot give: payloads a redaction names that are still stored
    (an erasure cut short), and payloads changed before they were erased."""
    findings = []
    pending = {key: red for key, red in named.items() if key not in reported}
    if pending:
        ids = sorted({rid for rid, _ in pending})
        for rid, name, _, _ in store.payload_rows(chain_id, ids):
            red = pending.pop((rid, name), None)
            if red is not None:
                seq = _seq(store, chain_id, rid)
                findings.append(Finding(
                    ERASURE_INCOMPLETE, chain_id, seq, rid,
                    f"payload {name!r} is still stored though redaction record {red.record_id} "
                    f"(seq {red.seq}) erased it: run `aitrail erase --record {rid}` again"))
    for red in reds:
        for rid, names in red.modified.items():
            findings.append(Finding(
                PAYLOAD_MODIFIED, chain_id, _seq(store, chain_id, rid), rid,
                f"payload(s) {', '.join(names)} did not match the sealed commitment when "
                f"redaction record {red.record_id} (seq {red.seq}) erased them"))
    return findings


def _seq(store: Store, chain_id: str, record_id: str) -> int:
    return payloads.first_seq(store, chain_id, record_id)
