"""Delivery policy: what happens to a batch the worker hands over.

The worker (``aitrail.export.worker``) owns the queue and the thread; a policy
here turns drafts into records, sends them through an
:class:`~aitrail.export.exporter.Exporter` and decides what to do when the
collector cannot take them:

``durable`` (default)
    the batch goes to the local spool (fsync per batch) and is replayed, in
    order and before anything newer, once the collector answers again --
    also by the next process that starts with the same spool directory.
``best_effort``
    retried in memory for ``retry_for`` seconds, then dropped and counted.
``strict``
    like best_effort, and each emitting call waits for its own record's
    acknowledgement (an :class:`Ack`; see ``aitrail.instrument.setup``), raising
    :class:`AuditUnavailable` when it does not come.

Failures arrive as :class:`~aitrail.export.exporter.ExportFailed`; this module
knows nothing of the transport behind the exporter.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

from aitrail.export.exporter import Exporter, ExportFailed, ExportResponse
from aitrail.export.spool import Spool, SpoolFull
from aitrail.v1 import audit_pb2 as pb

log = logging.getLogger("aitrail")

DURABLE, BEST_EFFORT, STRICT = "durable", "best_effort", "strict"
DELIVERY_MODES = (DURABLE, BEST_EFFORT, STRICT)
# The most bytes of spooled batches one replay request carries (the collector takes
# requests of up to 64 MiB by default; records per request are bounded by the batch
# size too).
REPLAY_BYTES = 4 * 1024 * 1024

#: Turns a draft (what the caller's thread captured) into a record, on the worker.
Build = Callable[[Any], pb.AuditRecord]


class AuditUnavailable(RuntimeError):
    """Strict delivery: the record was not durably acknowledged in time (or was refused)."""


@dataclass
class Counters:
    """Delivery counters. Every change goes through :meth:`add`, under a lock: they
    are updated by the worker and, when the queue is full, by callers' threads."""

    queued: int = 0      # accepted into the queue (the worker counts them as it takes them)
    sent: int = 0        # acknowledged by the collector (new or duplicate)
    spooled: int = 0     # written to the local spool
    replayed: int = 0    # sent from the spool and acknowledged
    rejected: int = 0    # refused by the collector's validator
    dropped: int = 0     # lost: queue full (best effort), spool full, or retries exhausted
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False,
                                  compare=False)

    def add(self, **deltas: int) -> None:
        with self._lock:
            for name, n in deltas.items():
                setattr(self, name, getattr(self, name) + n)

    def as_dict(self) -> dict[str, int]:
        with self._lock:
            return {f.name: getattr(self, f.name) for f in fields(self) if f.init}


class Ack:
    """A strict-mode caller's wait for its record's acknowledgement."""

    __slots__ = ("_event", "error")

    def __init__(self) -> None:
        self._event = threading.Event()
        self.error: str | None = None

    def done(self, error: str | None = None) -> None:
        self.error = error
        self._event.set()

    def wait(self, timeout: float) -> None:
        if not self._event.wait(timeout):
            raise AuditUnavailable(f"the collector did not acknowledge the audit record "
                                   f"within {timeout:g} s")
        if self.error:
            raise AuditUnavailable(f"the collector refused the audit record: {self.error}")


Item = tuple[Any, Ack | None]               # (draft, ack) as the caller submitted it
Built = tuple[pb.AuditRecord, Ack | None]   # (record, ack) once the worker built it


class Delivery:
    """The policy's common part: build, send with back-off, account, acknowledge.

    ``stopping()`` says the worker is shutting down past its deadline (give up
    waiting); ``progress()`` wakes ``flush`` waiters when the spool shrinks.
    Everything but :meth:`overflow` runs on the worker thread.
    """

    mode = ""

    def __init__(self, build: Build, exporter: Exporter, counters: Counters, *,
                 retry_for: float, export_timeout: float,
                 stopping: Callable[[], bool] = lambda: False,
                 progress: Callable[[], None] = lambda: None) -> None:
        self.exporter = exporter
        self.counters = counters
        self._build = build
        self._retry_for = retry_for
        self._export_timeout = export_timeout
        self._stopping = stopping
        self._progress = progress
        self._warned: set[str] = set()
        self._retry_at = 0.0
        self._delay = 0.05

    # ------------------------------------------------------------ the worker's calls
    def deliver(self, items: Sequence[Item]) -> None:
        """Send one batch of drafts (the worker took them off the queue)."""
        raise NotImplementedError

    def replay(self) -> None:
        """Send what was set aside earlier, before anything newer (durable only)."""

    def overflow(self, draft: Any, ack: Ack | None, max_queue: int) -> None:
        """On the caller's thread: the queue is full."""
        self._queue_full(1, ack, max_queue)

    @property
    def backlog(self) -> bool:
        """Records are waiting outside the queue (in the spool)."""
        return False

    @property
    def spool_bytes(self) -> int:
        return 0

    def close(self) -> None:
        self.exporter.close()

    def after_fork(self) -> None:
        """In a forked child: the parent's connection belongs to the parent."""
        self.exporter.close()

    # ------------------------------------------------------------ shared steps
    def _warn_once(self, key: str, message: str, *args: Any) -> None:
        if key not in self._warned:
            self._warned.add(key)
            log.warning(message, *args)

    def _queue_full(self, dropped: int, ack: Ack | None, max_queue: int) -> None:
        if dropped:
            self.counters.add(dropped=dropped)
        if ack is not None:
            ack.done("the SDK's queue is full")
        self._warn_once("full", "aitrail: queue full (%d records); dropping records -- "
                        "see aitrail.stats()['dropped']", max_queue)

    def _build_all(self, items: Sequence[Item]) -> list[Built]:
        built = []
        for draft, ack in items:
            try:
                built.append((self._build(draft), ack))
            except Exception as exc:  # a bad draft must not sink its batch
                self.counters.add(dropped=1)
                _fail([ack], f"could not build the record: {exc}")
                log.exception("aitrail: could not build record %s", draft.get("record_id"))
        return built

    def _try_export(self, data: bytes, timeout: float | None = None,
                    wait_for_ready: bool = False) -> ExportResponse | None:
        """One attempt; on a retryable failure sets the back-off and returns None.
        A failure that is not retryable is raised (ExportFailed)."""
        try:
            response = self.exporter.export(data, timeout=timeout, wait_for_ready=wait_for_ready)
        except ExportFailed as err:
            if not err.retryable:
                raise
            self._back_off(err)
            return None
        self._delay = 0.05
        self._retry_at = 0.0
        return response

    def _back_off(self, err: ExportFailed) -> None:
        hint = err.retry_after
        self._delay = hint if hint is not None else min(self._delay * 2, 5.0)
        self._retry_at = time.monotonic() + self._delay * (0.5 + random.random())
        self._warn_once(f"unavailable-{err.code}", "aitrail: export failed (%s: %s); retrying",
                        err.code, err.detail)

    def _export_with_retries(self, data: bytes) -> ExportResponse | None:
        """Retry in memory for ``retry_for`` seconds, then give up (None)."""
        deadline = time.monotonic() + self._retry_for
        while True:
            # Waiting for the channel to become ready means sending the moment
            # the collector is back, rather than after our own back-off.
            remaining = deadline - time.monotonic()
            response = self._try_export(data, min(self._export_timeout, max(remaining, 0.01)),
                                        wait_for_ready=True)
            if response is not None:
                return response
            if time.monotonic() >= deadline or self._stopping():
                return None
            time.sleep(max(0.0, min(self._retry_at, deadline) - time.monotonic()))

    def _refused(self, n: int, err: ExportFailed, acks: Sequence[Ack | None] = ()) -> None:
        self.counters.add(dropped=n)
        log.error("aitrail: DROPPED %d records: the collector refused the batch: %s", n,
                  err.detail)
        # An empty detail must still fail a strict caller's wait.
        _fail(acks, err.detail or err.code or "refused")

    def _account(self, response: ExportResponse, acks: Sequence[Ack | None],
                 replayed: int = 0) -> None:
        rejected = {rej.index: rej.reason for rej in response.rejected}
        self.counters.add(sent=response.accepted + response.duplicates, rejected=len(rejected),
                          replayed=replayed)
        for reason in rejected.values():
            log.error("aitrail: collector rejected a record: %s", reason)
        for index, ack in enumerate(acks):
            if ack is not None:
                ack.done(rejected.get(index))


class BestEffort(Delivery):
    """Retry in memory for ``retry_for`` seconds, then drop and count."""

    mode = BEST_EFFORT

    def deliver(self, items: Sequence[Item]) -> None:
        built = self._build_all(items)
        if not built:
            return
        data = pb.ExportRequest(records=[record for record, _ in built]).SerializeToString()
        acks = [ack for _, ack in built]
        try:
            response = self._export_with_retries(data)
        except ExportFailed as err:
            self._refused(len(built), err, acks)
            return
        if response is None:
            self.counters.add(dropped=len(built))
            log.error("aitrail: DROPPED %d records: the collector was unreachable for %g s",
                      len(built), self._retry_for)
            _fail(acks, "the collector could not be reached")
            return
        self._account(response, acks)


class Strict(BestEffort):
    """Best effort on the worker; the caller waits for its record's :class:`Ack`."""

    mode = STRICT


class Durable(Delivery):
    """Spool what the collector cannot take now; replay it, in order, first."""

    mode = DURABLE

    def __init__(self, build: Build, exporter: Exporter, counters: Counters, *,
                 spool_dir: str, spool_max_bytes: int, retry_for: float, export_timeout: float,
                 replay_records: int = 512,
                 stopping: Callable[[], bool] = lambda: False,
                 progress: Callable[[], None] = lambda: None) -> None:
        super().__init__(build, exporter, counters, retry_for=retry_for,
                         export_timeout=export_timeout, stopping=stopping, progress=progress)
        self._replay_records = replay_records
        self._spool_dir = spool_dir
        self._spool_max = spool_max_bytes
        self._spool: Spool | None = None

    def _open_spool(self) -> Spool:
        if self._spool is None:
            self._spool = Spool(self._spool_dir, self._spool_max)
        return self._spool

    @property
    def backlog(self) -> bool:
        return bool(self._spool)

    @property
    def spool_bytes(self) -> int:
        return self._spool.bytes if self._spool is not None else 0

    def overflow(self, draft: Any, ack: Ack | None, max_queue: int) -> None:
        # The worker is behind. Durable mode keeps the record by writing it to
        # the spool here, on the caller's thread: the only disk I/O a caller
        # can ever do, and only when the queue is full.
        built = self._build_all([(draft, None)])
        if built and self._to_spool(built):
            return
        self._queue_full(0, ack, max_queue)  # already counted as dropped

    def replay(self) -> None:
        spool = self._open_spool()
        # Only what waits now: callers past a full queue keep spooling while this
        # runs, and the worker must get back to the queue (spooled behind, in order).
        left = len(spool)
        while left > 0 and time.monotonic() >= self._retry_at and not self._stopping():
            run = self._replay_run(spool)
            if not run:
                return
            left -= len(run)
            if not self._send_run(spool, run):
                return

    def _send_run(self, spool: Spool, run: list[tuple[str, bytes, int]]) -> bool:
        """Send ``run`` as one request; False when the collector did not answer."""
        try:
            response = self._try_export(b"".join(data for _, data, _ in run))
        except ExportFailed as err:
            if len(run) > 1:  # find the batch refused: these one by one
                return all(self._send_run(spool, [batch]) for batch in run)
            # The collector will never take this batch: set it aside, loudly,
            # rather than let it block everything behind it.
            spool.quarantine(run[0][0])
            self._refused(run[0][2], err)
            return True
        if response is None:
            return False
        n = sum(count for _, _, count in run)
        self._account(response, [None] * n, replayed=n)
        for handle, _, _ in run:
            spool.remove(handle)
        self._progress()
        return True

    def _replay_run(self, spool: Spool) -> list[tuple[str, bytes, int]]:
        """The oldest spooled batches that make one request: (handle, bytes, records).
        Batches spooled one record at a time (a caller past a full queue) are sent
        together, up to the batch size, or replay could never catch up: a request
        per record. Serialized ExportRequests concatenated are one ExportRequest of
        all their records (protobuf merges repeated fields)."""
        run: list[tuple[str, bytes, int]] = []
        total = 0
        for handle, data in spool.oldest_run(REPLAY_BYTES, self._replay_records):
            n = len(pb.ExportRequest.FromString(data).records)
            if run and total + n > self._replay_records:
                break
            run.append((handle, data, n))
            total += n
        return run

    def deliver(self, items: Sequence[Item]) -> None:
        built = self._build_all(items)
        if not built:
            return
        if self._open_spool() or time.monotonic() < self._retry_at:
            # Older records wait in the spool (or the collector asked us to back
            # off): keep the order by queueing behind them.
            self._to_spool(built)
            return
        data = pb.ExportRequest(records=[record for record, _ in built]).SerializeToString()
        acks = [ack for _, ack in built]
        try:
            response = self._try_export(data)
        except ExportFailed as err:
            self._refused(len(built), err, acks)
            return
        if response is None:
            self._to_spool(built)
            return
        self._account(response, acks)

    def _to_spool(self, built: Sequence[Built]) -> bool:
        records = [record for record, _ in built]
        try:
            self._open_spool().append(pb.ExportRequest(records=records).SerializeToString())
        except (SpoolFull, OSError) as exc:
            self.counters.add(dropped=len(records))
            log.error("aitrail: DROPPED %d audit records: cannot spool them (%s)", len(records),
                      exc)
            _fail([ack for _, ack in built], str(exc))
            return False
        self.counters.add(spooled=len(records))
        self._warn_once("spooling", "aitrail: collector unavailable; spooling records to %s",
                        self._spool_dir)
        return True

    def close(self) -> None:
        super().close()
        if self._spool is not None:
            if self._spool:
                log.warning("aitrail: %d bytes of records remain in the spool at %s; they will "
                            "be sent by the next process that uses it", self._spool.bytes,
                            self._spool_dir)
            self._spool.close()


def make_delivery(mode: str, build: Build, exporter: Exporter, counters: Counters, *,
                  retry_for: float, export_timeout: float, spool_dir: str | None = None,
                  spool_max_bytes: int = 256 * 1024 * 1024, batch_size: int = 512,
                  stopping: Callable[[], bool] = lambda: False,
                  progress: Callable[[], None] = lambda: None) -> Delivery:
    """The policy for ``mode`` (one of DELIVERY_MODES). ``batch_size``: the most
    records a replay sends in one request, as the worker's own batches."""
    if mode not in DELIVERY_MODES:
        raise ValueError(f"delivery {mode!r}: expected one of {', '.join(DELIVERY_MODES)}")
    if mode == DURABLE:
        if not spool_dir:
            raise ValueError("durable delivery needs a spool_dir")
        return Durable(build, exporter, counters, spool_dir=spool_dir,
                       spool_max_bytes=spool_max_bytes, retry_for=retry_for,
                       export_timeout=export_timeout, replay_records=batch_size,
                       stopping=stopping, progress=progress)
    cls = Strict if mode == STRICT else BestEffort
    return cls(build, exporter, counters, retry_for=retry_for, export_timeout=export_timeout,
               stopping=stopping, progress=progress)


def _fail(acks: Sequence[Ack | None], reason: str) -> None:
    for ack in acks:
        if ack is not None:
            ack.done(reason)


__all__ = ["BEST_EFFORT", "DELIVERY_MODES", "DURABLE", "STRICT", "Ack", "AuditUnavailable",
           "BestEffort", "Build", "Counters", "Delivery", "Durable", "Strict", "make_delivery"]
