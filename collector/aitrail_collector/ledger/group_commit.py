"""The ledger: turns validated records into sealed envelopes and payloads, in order.

One collector owns one chain. Two locks order the work, so seq numbers are assigned
in the order records are stored and the durable head never runs ahead of the store:

* the seal lock: one group is sealed at a time, after the group sealed before it;
* the store lock: one group is stored at a time, in the order they were sealed. The
  durable head (``head_seq``, ``snapshot``) and the Merkle tree change only under it.

A committer takes the store lock before it lets go of the seal lock, so while group
k is stored, group k+1 is sealed, after k's sealed head and with k's record ids as
duplicates (the engine lane's work is then spread over both cores). Group k+1 is
stored only if it was sealed on exactly the durable head; when k failed, k+1 is
sealed again on the head the store holds, under both locks.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Optional, Sequence

from aitrail.record.event_types import ERROR_PLAN, RECORD_PLAN, SPLIT_PLANS
from aitrail.v1 import audit_pb2 as pb
from aitrail.verify.chain import Sealer
from aitrail.verify.envelope import (
    CURRENT_VERSION,
    STORED_FIELD_NAMES,
    STORED_FIELDS,
    V1_ENVELOPE_TEXT,
    V3_COLUMNS,
    empty_envelope,
    zero_value,
)
from aitrail.verify.hashes import commitment
from aitrail.verify.merkle import CompactRange
from aitrail_collector import native
from aitrail_collector.errors import StoreError
from aitrail_collector.ingest.validate import Limits, validate
from aitrail_collector.ledger.engine_lane import EngineCannotRead, EngineLane
from aitrail_collector.store.client import Store

log = logging.getLogger("aitrail.collector")


@dataclass
class AppendResult:
    accepted: int = 0
    duplicates: int = 0
    rejected: list[tuple[int, str, str]] = field(default_factory=list)  # (index, id, reason)
    head_seq: int = 0


@dataclass(frozen=True)
class Sender:
    """Who delivered a batch; sealed with each of its records (envelope v2's
    principal_kind / principal_id), and what that credential may write."""
    kind: str = "unauthenticated"       # apikey, mtls, apikey+mtls, unauthenticated, collector
    id: str = ""                        # the API key id and/or the certificate subject
    service: Optional[str] = None       # an API key's service: the only one it may write as
    task_prefixes: tuple[str, ...] = ()  # an API key's scope: task ids it may write; () any

    def refuses(self, rec: pb.AuditRecord) -> Optional[str]:
        """Why this credential may not write ``rec``, or None."""
        if self.service is not None and rec.service != self.service:
            return (f"service {rec.service[:64]!r} does not match the API key's service "
                    f"{self.service!r}")
        if self.task_prefixes and not rec.task_id.startswith(self.task_prefixes):
            allowed = ", ".join(repr(p) for p in self.task_prefixes)
            return (f"task_id {rec.task_id[:64]!r} is outside the API key's scope (task ids "
                    f"starting with {allowed})")
        return None


UNAUTHENTICATED = Sender()

# A group this small is sealed record by record: the engine's fixed cost per group (its
# long statements are analysed anew each time, about 0.2-0.3 s on this machine's 2
# cores) is more than the reference lane spends on it (60-150 us a record). Under load,
# group commit makes the groups large, and the engine lane takes them.
ENGINE_MIN_RECORDS = 2048
COLLECTOR = Sender("collector")


def split_record(rec: pb.AuditRecord, chain_id: str, received_ns: int,
                 sender: Sender = UNAUTHENTICATED
                 ) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """The envelope fields of a record (current envelope version), and its payloads
    as (name, content).

    What goes where is read from the table of event types (record/event_types.py):
    the record's own fields, its error part, and the part its event type carries
    (none for task_created and custom types). Empty payloads are not kept.
    """
    env = empty_envelope()
    env.update(zip(RECORD_PLAN.plain_columns, RECORD_PLAN.read_plain(rec)))
    env["end_time"] = rec.end_time_unix_nano or rec.start_time_unix_nano
    env["chain_id"] = chain_id
    env["received_time"] = received_ns
    env["attributes"] = dict(rec.attributes)
    env["principal_kind"], env["principal_id"] = sender.kind, sender.id
    env.update(zip(ERROR_PLAN.plain_columns, ERROR_PLAN.read_plain(rec.error)))
    payloads = []
    for name, read in ERROR_PLAN.payloads:
        content = read(rec.error)
        if content:
            payloads.append((name, content))
    plan = SPLIT_PLANS.get(rec.event_type)
    if plan is None:
        return env, payloads
    part = getattr(rec, plan.part)
    env.update(zip(plan.plain_columns, plan.read_plain(part)))
    for column, read in plan.columns:
        env[column] = read(part)
    for name, read in plan.payloads:
        content = read(part)
        if content:
            payloads.append((name, content))
    return env, payloads


_V3_ONLY = tuple(f.name for f, _ in V3_COLUMNS)


def v3_content(rec: pb.AuditRecord) -> Optional[str]:
    """Why ``rec`` cannot be sealed under envelope v1 or v2, or None: an evaluation, or a
    model call's response id, has no column there (and is never silently dropped)."""
    if rec.event_type == "evaluation":
        return "evaluation records need envelope v3 (this collector seals an older version)"
    if rec.model_call.response_id and rec.event_type == "model_call":
        return ("model_call.response_id needs envelope v3 (this collector seals an older "
                "version)")
    return None


def as_v2(env: Mapping[str, Any], payloads: Sequence[tuple[str, str]]
          ) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """The same record as envelope v2 seals it: without v3's columns (``v3_content``
    refused every record that has a value in them). For ``--envelope-version 2``."""
    out = {k: v for k, v in env.items() if k not in _V3_ONLY}
    out["envelope_version"] = 2
    return out, list(payloads)


def as_v1(env: Mapping[str, Any], payloads: Sequence[tuple[str, str]]
          ) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """The same record as envelope v1 seals it: its free text in the envelope (a
    redaction's reason in purpose), no principal. For ``--envelope-version 1``."""
    out = empty_envelope(1)
    out.update((k, v) for k, v in env.items() if k in out)
    kept = []
    for name, content in payloads:
        if name in V1_ENVELOPE_TEXT:
            out[name] = content
        elif name == "erase_reason":
            out["purpose"] = content
        else:
            kept.append((name, content))
    out["envelope_version"] = 1
    return out, kept


def stored_row(seq: int, env: Mapping[str, Any], prev: bytes, leaf: bytes,
               chain: bytes) -> tuple[Any, ...]:
    """A row of ``aitrail.envelopes`` (schema.ENVELOPE_COLUMNS order): the version's
    fields, the other version's columns at their zero value."""
    return (seq, env["envelope_version"],
            *[env[name] if name in env else _ZEROS[name] for name in STORED_FIELD_NAMES],
            prev, leaf, chain)


_ZEROS = {f.name: zero_value(f) for f in STORED_FIELDS}


@dataclass
class _Pending:
    """One caller's batch, waiting for a group commit."""
    result: AppendResult
    sender: Sender = UNAUTHENTICATED
    records: list = field(default_factory=list)
    raw: bytes = b""                 # the engine lane: the request as sent ...
    request: Any = None              # ... and parsed (for the few records it judges)
    taken: bool = False              # a committer has it in its group (seal lock)
    finished: threading.Event = field(default_factory=threading.Event)
    error: Optional[BaseException] = None


class Ledger:
    def __init__(self, store: Store, chain_id: str, limits: Limits = Limits(),
                 envelope_version: int = CURRENT_VERSION, engine: bool = True,
                 engine_min_records: int = ENGINE_MIN_RECORDS, pipelined: bool = True):
        self.store = store
        self.chain_id = chain_id
        self.limits = limits
        self.envelope_version = envelope_version
        self.clock: Callable[[], int] = time.time_ns  # the collector's clock (ns); tests set it
        self._seal_lock = threading.Lock()   # held while a group is sealed
        self._lock = threading.Lock()        # the store lock: held while a group is stored
        self._queue_lock = threading.Lock()  # guards _waiting
        self._waiting: list[_Pending] = []
        self._head: tuple[int, bytes] = store.head(chain_id)  # durable (store lock)
        self._tree = self._load_tree()
        # Where the next group is sealed after, and the record ids file of the group
        # sealed last (seal lock); _stale: a store failed since (store lock).
        self._seal_head = self._head
        self._in_flight: Optional[str] = None
        self._stale = False
        # Requests are sealed by the embedded engine (engine_lane.py) unless the store is
        # a ClickHouse server (it must not compute what the collector signs) or records
        # are sealed as an older envelope version (a compatibility mode): then record by
        # record here.
        self.uses_engine = engine and store.embedded and envelope_version == CURRENT_VERSION
        self._lanes = threading.local()
        self._all_lanes: list[EngineLane] = []
        self.engine_min_records = engine_min_records
        self.pipelined = pipelined  # False: the seal lock is held until the group is stored

    @property
    def engine(self) -> Optional[EngineLane]:
        """This thread's engine lane, made on first use (a ledger opened to erase never
        needs one): its work tables live in this thread's engine session."""
        if not self.uses_engine:
            return None
        lane = getattr(self._lanes, "lane", None)
        if lane is None:
            lane = self._lanes.lane = EngineLane(self.store, self.chain_id, self.limits,
                                                 lambda: self.clock())
            with self._queue_lock:
                self._all_lanes.append(lane)
        return lane

    def close(self) -> None:
        with self._queue_lock:
            lanes, self._all_lanes = self._all_lanes, []
        for lane in lanes:
            lane.close()
        self._lanes = threading.local()

    def _load_tree(self) -> CompactRange:
        """The Merkle tree over the chain's leaf hashes, as a compact range.

        Continued from the last checkpoint's frontier, so records dropped by
        retention are not needed. A chain head behind the last checkpoint means
        signed records were deleted: refuse to seal on top of that.
        """
        head = self._head[0]
        stored = self.store.checkpoints(self.chain_id)
        tree = CompactRange()
        if stored:
            number, size, _, frontier = stored[-1]
            if size > head:
                raise StoreError(
                    f"chain {self.chain_id!r} was truncated: checkpoint {number} covers "
                    f"{size} records but the stored chain ends at seq {head}. Run `aitrail "
                    "verify` and investigate before ingesting again.")
            tree = CompactRange.from_hashes(size, frontier)
        leaves = self.store.leaf_hashes(self.chain_id, tree.size + 1, head)
        if len(leaves) != head - tree.size:
            raise StoreError(f"chain {self.chain_id!r}: {head - tree.size - len(leaves)} records "
                             f"between seq {tree.size + 1} and {head} are missing; cannot "
                             "continue the Merkle tree. Run `aitrail verify`.")
        native.extend_range(tree, native.join(leaves))
        return tree

    def snapshot(self) -> tuple[int, bytes, bytes, list[bytes]]:
        """(size, Merkle root, chain head hash, frontier) of what is durably stored."""
        with self._lock:
            tree = self._tree
            return tree.size, tree.root(), self._head[1], list(tree.hashes)

    @property
    def commit_lock(self) -> threading.Lock:
        """Held while a group is sealed and stored; a checkpoint taken under it is exact."""
        return self._lock

    @property
    def head_seq(self) -> int:
        """The last seq durably stored."""
        return self._head[0]

    def append(self, records: Sequence[pb.AuditRecord],
               sender: Sender = UNAUTHENTICATED) -> AppendResult:
        """Validate, deduplicate, seal and store; returns once the insert returned.

        ``sender`` is who delivered the batch: it is sealed with each record, and an
        API key's service and task scope bound what it may write (a record outside
        them is refused with the reason). Concurrent calls are committed together
        (group commit): whichever caller gets the commit lock seals and stores
        every batch waiting at that moment in one insert, so the fixed cost of
        an insert is shared instead of paid per request.
        """
        pending = self._checked(records, sender)
        if pending.records:
            self._commit(pending)
        pending.result.head_seq = self._head[0]
        return pending.result

    def _checked(self, records: Sequence[pb.AuditRecord], sender: Sender) -> "_Pending":
        """The reference lane's first step: each record validated, duplicates in the
        batch counted, the rest waiting to be committed."""
        pending = _Pending(AppendResult(), sender)
        now = self.clock()
        seen: set[str] = set()
        for index, rec in enumerate(records):
            reason = validate(rec, now, self.limits) or sender.refuses(rec)
            if reason is None and self.envelope_version < 3:
                reason = v3_content(rec)
            if reason is not None:
                pending.result.rejected.append((index, rec.record_id[:64], reason))
            elif rec.record_id in seen:
                pending.result.duplicates += 1
            else:
                seen.add(rec.record_id)
                pending.records.append(rec)
        return pending

    def append_group(self, calls: Sequence[tuple[bytes, pb.ExportRequest, Sender]]
                     ) -> list[AppendResult]:
        """Several requests committed as one group, as concurrent calls are: what the
        tests and the benchmarks use to hold both lanes to the same group."""
        if self.uses_engine:
            group = [_Pending(AppendResult(), s, raw=raw, request=req) for raw, req, s in calls]
        else:
            group = [self._checked(req.records, s) for _, req, s in calls]
        self._seal_lock.acquire()
        self._commit_group(group)
        for p in group:
            p.result.head_seq = self._head[0]
        return [p.result for p in group]

    def append_request(self, raw: bytes, request: pb.ExportRequest,
                       sender: Sender = UNAUTHENTICATED) -> AppendResult:
        """``append`` for a request as received (``raw``, and ``request`` parsed from it):
        the engine lane seals it with the other requests of its group, without a
        Python loop over its records."""
        if not self.uses_engine:
            return self.append(request.records, sender)
        pending = _Pending(AppendResult(), sender, raw=raw, request=request)
        if request.records:
            self._commit(pending)
        pending.result.head_seq = self._head[0]
        return pending.result

    def append_own(self, rec: pb.AuditRecord) -> AppendResult:
        """Seal a record the collector made itself (a ``redaction``).

        Client validation is skipped (it refuses the reserved types); everything
        else is the path of every record: the commit lock, the duplicate check,
        sealing, the insert and the Merkle tree.
        """
        pending = _Pending(AppendResult(), COLLECTOR, [rec])
        self._commit(pending)
        pending.result.head_seq = self._head[0]
        return pending.result

    def _commit(self, pending: "_Pending") -> None:
        with self._queue_lock:
            self._waiting.append(pending)
        self._seal_lock.acquire()
        if pending.taken:  # an earlier committer took it along: wait for its answer
            self._seal_lock.release()
            pending.finished.wait()
        else:
            with self._queue_lock:
                group, self._waiting = self._waiting, []
            for p in group:
                p.taken = True
            try:
                self._commit_group(group)
            except Exception as exc:  # noqa: BLE001 - every waiter learns it failed
                for p in group:
                    p.error = exc
            finally:
                for p in group:
                    p.finished.set()
        if pending.error is not None:
            raise pending.error

    def _commit_group(self, group: Sequence["_Pending"]) -> None:
        """Seal and store ``group``. Entered holding the seal lock, which it releases:
        as soon as the group's seal is final when the engine lane takes it all, else
        once it is stored."""
        sealing = _Held(self._seal_lock)
        try:
            lane = [p for p in group if p.request is not None]
            rest = [p for p in group if p.request is None]
            if lane and sum(len(p.request.records) for p in lane) >= self.engine_min_records:
                early = sealing if self.pipelined and not rest else None
                lane = self._commit_engine(lane, early)
            if lane or rest:
                with self._lock:
                    if lane:
                        self._commit_reference_for(lane)
                    if rest:
                        self._commit_reference(rest)
                    # Both locks held, the store's head is where the next group starts,
                    # and nothing is in flight.
                    self._seal_head, self._in_flight, self._stale = self._head, None, False
        finally:
            sealing.release()

    def _commit_engine(self, group: Sequence["_Pending"], sealing: Optional["_Held"]
                       ) -> Sequence["_Pending"]:
        """Seal ``group`` in the engine (seal lock held), then store it (store lock),
        releasing ``sealing`` (when given) once its seal is final. Returns the requests
        the engine could not read, for the reference lane; else none."""
        lane = self.engine
        assert lane is not None
        in_flight = self._in_flight
        if in_flight is not None and not os.path.exists(in_flight):
            in_flight = ""  # swept: sealed again below, when nothing is in flight
        try:
            sealed = lane.seal(group, *self._seal_head, in_flight=in_flight or None)
        except EngineCannotRead as exc:
            lane.discard()
            log.warning("the engine could not read a group of %d requests (%s); sealing "
                        "it record by record", len(group), str(exc).splitlines()[0][:300])
            return group
        except Exception:
            lane.discard()
            raise
        with self._lock:
            try:
                if self._stale or sealed.base != self._head or in_flight == "":
                    # Sealed on a head that is not the store's (the group before failed):
                    # again, on the store's, with nothing in flight.
                    sealed = lane.seal(group, *self._head)
                    self._stale = False
                self._seal_head = sealed.end
                self._in_flight = lane.ids_path if sealed.leaves else None
                if sealing is not None:
                    sealing.release()  # the next group is sealed while this one is stored
                lane.store(sealed)
            except Exception:
                lane.discard()
                self._stale = True  # nothing was acknowledged; part of it may have landed
                self._reload_head()
                raise
            self._head = sealed.end
            native.extend_range(self._tree, sealed.leaves)
        return ()

    def _commit_reference_for(self, group: Sequence["_Pending"]) -> None:
        """The reference lane for engine-lane requests, their answers in their results."""
        checked = [self._checked(p.request.records, p.sender) for p in group]
        self._commit_reference(checked)
        for p, c in zip(group, checked):
            p.result.accepted, p.result.duplicates = c.result.accepted, c.result.duplicates
            p.result.rejected = c.result.rejected

    def _commit_reference(self, group: Sequence["_Pending"]) -> None:
        existing = self.store.existing_ids([r.record_id for p in group for r in p.records])
        fresh: list[tuple[pb.AuditRecord, Sender]] = []
        for p in group:
            accepted = [r for r in p.records if r.record_id not in existing]
            # The same id in two batches of one group: the first one is sealed.
            existing.update(r.record_id for r in accepted)
            p.result.duplicates += len(p.records) - len(accepted)
            p.result.accepted = len(accepted)
            fresh += [(r, p.sender) for r in accepted]
        if fresh:
            self._seal_and_store(fresh, self.clock())

    def _seal_and_store(self, records: Sequence[tuple[pb.AuditRecord, Sender]],
                        received_ns: int) -> None:
        """The reference lane, under the store lock: sealed after the durable head."""
        sealer = Sealer(self.chain_id, *self._head)
        envelopes, payload_rows = [], []
        for rec, sender in records:
            env, payloads = split_record(rec, self.chain_id, received_ns, sender)
            if self.envelope_version == 1:
                env, payloads = as_v1(env, payloads)
            elif self.envelope_version == 2:
                env, payloads = as_v2(env, payloads)
            for name, content in payloads:
                salt = os.urandom(16)
                digest = commitment(salt, content)
                env["commitments"][name] = digest
                payload_rows.append((self.chain_id, rec.record_id, name, env["start_time"],
                                     salt.hex(), content, digest))
            link = sealer.seal(env)
            envelopes.append(stored_row(link.seq, env, link.prev_hash, link.leaf_hash,
                                        link.chain_hash))
        try:
            self.store.insert(envelopes, payload_rows)
        except Exception:
            # Nothing was acknowledged; reread the head in case part of it landed.
            self._stale = True
            self._reload_head()
            raise
        self._head = (sealer.head_seq, sealer.head_hash)
        native.extend_range(self._tree, native.join([row[-2] for row in envelopes]))

    def _reload_head(self) -> None:
        try:
            self._head = self.store.head(self.chain_id)
            self._tree = self._load_tree()
        except Exception:  # noqa: BLE001 - the store is down; the next append retries
            log.exception("could not reread the chain head")


class _Held:
    """A lock this thread holds, released once however many paths let go of it."""

    def __init__(self, lock: threading.Lock):
        self._lock: Optional[threading.Lock] = lock

    def release(self) -> None:
        if self._lock is not None:
            lock, self._lock = self._lock, None
            lock.release()
