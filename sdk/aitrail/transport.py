"""Delivery: a bounded in-memory queue drained by one background thread.

The caller's thread appends a draft to a deque (no lock, no I/O) and, when a
batch is full, sets an event. The worker turns drafts into redacted records
and sends them in batches over gRPC. What happens when the collector cannot
take a batch depends on the delivery mode:

``durable`` (default)
    the batch goes to the local spool (fsync per batch) and is replayed, in
    order and before anything newer, once the collector answers again --
    also by the next process that starts with the same spool directory.
``best_effort``
    retried in memory for ``retry_for`` seconds, then dropped and counted.
``strict``
    like best_effort, and each emitting call waits for its own record's
    acknowledgement (see ``aitrail.instrument.api``).

Shutdown flushes with a deadline; after ``fork`` the child starts with an
empty queue, its own channel and its own spool, so it never resends the
parent's records.
"""

from __future__ import annotations

import atexit
import collections
import logging
import os
import random
import threading
import time
import weakref
from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence

import grpc

from aitrail.spool import Spool, SpoolFull
from aitrail.v1 import audit_pb2 as pb
from aitrail.errors import AitrailError

log = logging.getLogger("aitrail")

DURABLE, BEST_EFFORT, STRICT = "durable", "best_effort", "strict"
DELIVERY_MODES = (DURABLE, BEST_EFFORT, STRICT)
_METHOD = "/aitrail.v1.AuditService/Export"
# Worth trying again later; anything else means the batch itself is unacceptable.
_RETRYABLE = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED,
              grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.ABORTED,
              grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN,
              # A key that is missing or revoked is a deployment problem: keep the
              # records (durable mode) until someone fixes it.
              grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED}


class AuditUnavailable(AitrailError, RuntimeError):
    """Strict delivery: the record was not durably acknowledged in time (or was refused)."""


class GrpcExporter:
    """Sends one serialized ExportRequest to ``aitrail.v1.AuditService/Export``."""

    def __init__(self, endpoint: str, timeout: float, *, api_key: str = "",
                 tls: bool = False, ca_cert: Optional[bytes] = None,
                 client_cert: Optional[bytes] = None, client_key: Optional[bytes] = None):
        self.endpoint = endpoint
        self.timeout = timeout
        self._metadata = (("authorization", f"Bearer {api_key}"),) if api_key else None
        self._tls = tls or bool(ca_cert or client_cert)
        self._creds = (ca_cert, client_key, client_cert)
        self._channel: Optional[grpc.Channel] = None
        self._call: Optional[Callable] = None

    def _connect(self) -> Callable:
        options = [("grpc.max_send_message_length", 64 * 1024 * 1024),
                   # Reconnect within about a second of a collector coming back,
                   # instead of gRPC's default back-off of up to two minutes.
                   ("grpc.initial_reconnect_backoff_ms", 200),
                   ("grpc.min_reconnect_backoff_ms", 200),
                   ("grpc.max_reconnect_backoff_ms", 1000)]
        if self._tls:
            ca, key, cert = self._creds
            creds = grpc.ssl_channel_credentials(root_certificates=ca, private_key=key,
                                                 certificate_chain=cert)
            self._channel = grpc.secure_channel(self.endpoint, creds, options=options)
        else:
            self._channel = grpc.insecure_channel(self.endpoint, options=options)
        return self._channel.unary_unary(_METHOD, response_deserializer=pb.ExportResponse.FromString)

    def export(self, request: bytes, timeout: Optional[float] = None,
               wait_for_ready: bool = False) -> pb.ExportResponse:
        """``wait_for_ready``: wait (up to the timeout) for a collector that is not
        reachable yet, instead of failing at once."""
        if self._call is None:
            self._call = self._connect()
        return self._call(request, timeout=timeout or self.timeout, metadata=self._metadata,
                          wait_for_ready=wait_for_ready)

    def close(self) -> None:
        if self._channel is not None:
            self._channel.close()
        self._channel = self._call = None


@dataclass
class Counters:
    queued: int = 0      # accepted into the queue
    sent: int = 0        # acknowledged by the collector (new or duplicate)
    spooled: int = 0     # written to the local spool
    replayed: int = 0    # sent from the spool and acknowledged
    rejected: int = 0    # refused by the collector's validator
    dropped: int = 0     # lost: queue full (best effort), spool full, or retries exhausted

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


class Ack:
    """A strict-mode caller's wait for its record's acknowledgement."""

    __slots__ = ("_event", "error")

    def __init__(self) -> None:
        self._event = threading.Event()
        self.error: Optional[str] = None

    def done(self, error: Optional[str] = None) -> None:
        self.error = error
        self._event.set()

    def wait(self, timeout: float) -> None:
        if not self._event.wait(timeout):
            raise AuditUnavailable(f"the collector did not acknowledge the audit record "
                                   f"within {timeout:g} s")
        if self.error:
            raise AuditUnavailable(f"the collector refused the audit record: {self.error}")


def _retry_hint(err: grpc.RpcError) -> Optional[float]:
    """The collector's back-off request (grpc-retry-pushback-ms), in seconds."""
    for key, value in (err.trailing_metadata() or ()) if hasattr(err, "trailing_metadata") else ():
        if key == "grpc-retry-pushback-ms":
            try:
                return int(value) / 1000
            except ValueError:
                return None
    return None


class BatchWorker:
    def __init__(self, build: Callable[[dict], pb.AuditRecord], exporter: GrpcExporter, *,
                 batch_size: int, flush_interval: float, max_queue: int, retry_for: float,
                 delivery: str = DURABLE, spool_dir: Optional[str] = None,
                 spool_max_bytes: int = 256 * 1024 * 1024):
        if delivery not in DELIVERY_MODES:
            raise ValueError(f"delivery {delivery!r}: expected one of {', '.join(DELIVERY_MODES)}")
        if delivery == DURABLE and not spool_dir:
            raise ValueError("durable delivery needs a spool_dir")
        self._build = build
        self._exporter = exporter
        self._batch_size = batch_size
        self._flush_interval = flush_interval
        self._max_queue = max_queue
        self._retry_for = retry_for
        self.delivery = delivery
        self._spool_dir = spool_dir
        self._spool_max = spool_max_bytes
        self._shutdown_deadline = float("inf")
        self._reset_state()
        ref = weakref.ref(self)  # registrations must not keep a replaced worker alive
        os.register_at_fork(after_in_child=lambda: ref() and ref()._after_fork())
        atexit.register(lambda: ref() and ref().shutdown())

    def _reset_state(self) -> None:
        self._queue: collections.deque = collections.deque()
        self._wake = threading.Event()
        self._done = threading.Condition()
        self._processed = 0  # drafts taken off the queue and finished with
        self._stopping = False
        self._thread: Optional[threading.Thread] = None
        self._start_lock = threading.Lock()
        self._warned: set[str] = set()
        self._retry_at = 0.0
        self._spool: Optional[Spool] = None
        self.counters = Counters()

    def _after_fork(self) -> None:
        # The parent's queue, channel and spool belong to the parent.
        self._exporter.close()
        self._reset_state()

    def _warn_once(self, key: str, message: str, *args: Any) -> None:
        if key not in self._warned:
            self._warned.add(key)
            log.warning(message, *args)

    # ------------------------------------------------------------ caller side
    def submit(self, draft: dict, ack: Optional[Ack] = None) -> None:
        queue = self._queue
        if len(queue) >= self._max_queue:
            self._overflow(draft, ack)
            return
        queue.append((draft, ack))
        self.counters.queued += 1
        if self._thread is None:
            self._start()
        # Setting an Event that is already set still costs a lock round trip;
        # under load the queue stays past the batch size, so check first.
        if (ack is not None or len(queue) >= self._batch_size) and not self._wake.is_set():
            self._wake.set()

    def _overflow(self, draft: dict, ack: Optional[Ack]) -> None:
        # The worker is behind. Durable mode keeps the record by writing it to
        # the spool here, on the caller's thread: the only disk I/O a caller
        # can ever do, and only when the queue is full.
        if self.delivery == DURABLE:
            built = self._build_all([(draft, None)])
            if built and self._to_spool(built):
                return
        self.counters.dropped += 1
        if ack is not None:
            ack.done("the SDK's queue is full")
        self._warn_once("full", "aitrail: queue full (%d records); dropping records -- "
                        "see aitrail.stats()['dropped']", self._max_queue)

    def _start(self) -> None:
        with self._start_lock:
            if self._thread is None and not self._stopping:
                self._thread = threading.Thread(target=self._run, name="aitrail-export", daemon=True)
                self._thread.start()

    # ------------------------------------------------------------ worker side
    def _run(self) -> None:
        while True:
            self._wake.wait(self._flush_interval)
            self._wake.clear()
            try:
                self._cycle()
            except Exception:  # the worker must survive anything
                log.exception("aitrail: delivery worker error")
            if self._stopping and not self._queue:
                return

    def _cycle(self) -> None:
        self._replay_spool()
        queue = self._queue
        while queue:
            items = [queue.popleft() for _ in range(min(self._batch_size, len(queue)))]
            try:
                self._deliver(items)
            finally:
                with self._done:
                    self._processed += len(items)
                    self._done.notify_all()

    def _spool_or_none(self) -> Optional[Spool]:
        if self._spool is None and self.delivery == DURABLE:
            self._spool = Spool(self._spool_dir, self._spool_max)
        return self._spool

    def _replay_spool(self) -> None:
        spool = self._spool_or_none()
        while spool and time.monotonic() >= self._retry_at and not self._stopping_hard():
            batch = spool.oldest()
            if batch is None:
                return
            handle, data = batch
            n = len(pb.ExportRequest.FromString(data).records)
            try:
                response = self._try_export(data)
            except grpc.RpcError as err:
                # The collector will never take this batch: set it aside, loudly,
                # rather than let it block everything behind it.
                spool.quarantine(handle)
                self._refused(n, err)
                continue
            if response is None:
                return
            self.counters.replayed += n
            self._account(response, [None] * n)
            spool.remove(handle)
            with self._done:
                self._done.notify_all()

    def _deliver(self, items: list[tuple[dict, Optional[Ack]]]) -> None:
        built = self._build_all(items)
        if not built:
            return
        if self.delivery == DURABLE and (self._spool_or_none() or time.monotonic() < self._retry_at):
            # Older records wait in the spool (or the collector asked us to back
            # off): keep the order by queueing behind them.
            self._to_spool(built)
            return
        data = pb.ExportRequest(records=[record for record, _ in built]).SerializeToString()
        acks = [ack for _, ack in built]
        try:
            if self.delivery == DURABLE:
                response = self._try_export(data)
                if response is None:
                    self._to_spool(built)
                    return
            else:
                response = self._export_with_retries(data)
        except grpc.RpcError as err:
            self._refused(len(built), err, acks)
            return
        if response is None:
            self.counters.dropped += len(built)
            log.error("aitrail: DROPPED %d records: the collector was unreachable for %g s",
                      len(built), self._retry_for)
            _fail(acks, "the collector could not be reached")
            return
        self._account(response, acks)

    def _refused(self, n: int, err: grpc.RpcError, acks: Sequence[Optional[Ack]] = ()) -> None:
        detail = err.details() if hasattr(err, "details") else str(err)
        self.counters.dropped += n
        log.error("aitrail: DROPPED %d records: the collector refused the batch: %s", n, detail)
        _fail(acks, detail)

    def _build_all(self, items: Sequence[tuple[dict, Optional[Ack]]]
                   ) -> list[tuple[pb.AuditRecord, Optional[Ack]]]:
        built = []
        for draft, ack in items:
            try:
                built.append((self._build(draft), ack))
            except Exception as exc:  # a bad draft must not sink its batch
                self.counters.dropped += 1
                _fail([ack], f"could not build the record: {exc}")
                log.exception("aitrail: could not build record %s", draft.get("record_id"))
        return built

    def _to_spool(self, built: Sequence[tuple[pb.AuditRecord, Optional[Ack]]]) -> bool:
        records = [record for record, _ in built]
        try:
            self._spool_or_none().append(pb.ExportRequest(records=records).SerializeToString())
        except (SpoolFull, OSError) as exc:
            self.counters.dropped += len(records)
            log.error("aitrail: DROPPED %d audit records: cannot spool them (%s)", len(records), exc)
            _fail([ack for _, ack in built], str(exc))
            return False
        self.counters.spooled += len(records)
        self._warn_once("spooling", "aitrail: collector unavailable; spooling records to %s",
                        self._spool_dir)
        return True

    def _try_export(self, data: bytes, timeout: Optional[float] = None,
                    wait_for_ready: bool = False) -> Optional[pb.ExportResponse]:
        """One attempt; on a retryable failure sets the back-off and returns None."""
        try:
            response = self._exporter.export(data, timeout, wait_for_ready)
        except grpc.RpcError as err:
            code = err.code() if hasattr(err, "code") else None
            if code not in _RETRYABLE:
                raise
            self._back_off(err)
            return None
        self._delay = 0.05
        self._retry_at = 0.0
        return response

    _delay = 0.05

    def _back_off(self, err: grpc.RpcError) -> None:
        hint = _retry_hint(err)
        self._delay = hint if hint is not None else min(self._delay * 2, 5.0)
        self._retry_at = time.monotonic() + self._delay * (0.5 + random.random())
        self._warn_once(f"unavailable-{err.code()}", "aitrail: export failed (%s: %s); retrying",
                        err.code(), err.details() if hasattr(err, "details") else err)

    def _export_with_retries(self, data: bytes) -> Optional[pb.ExportResponse]:
        """Best effort: retry in memory for ``retry_for`` seconds, then give up (None)."""
        deadline = time.monotonic() + self._retry_for
        while True:
            # Waiting for the channel to become ready means sending the moment
            # the collector is back, rather than after our own back-off.
            remaining = deadline - time.monotonic()
            response = self._try_export(data, min(self._exporter.timeout, max(remaining, 0.01)),
                                        wait_for_ready=True)
            if response is not None:
                return response
            if time.monotonic() >= deadline or self._stopping_hard():
                return None
            time.sleep(max(0.0, min(self._retry_at, deadline) - time.monotonic()))

    def _stopping_hard(self) -> bool:
        return self._stopping and time.monotonic() > self._shutdown_deadline

    def _account(self, response: pb.ExportResponse, acks: Sequence[Optional[Ack]]) -> None:
        rejected = {rej.index: rej.reason for rej in response.rejected}
        self.counters.sent += response.accepted + response.duplicates
        self.counters.rejected += len(rejected)
        for index, reason in rejected.items():
            log.error("aitrail: collector rejected a record: %s", reason)
        for index, ack in enumerate(acks):
            if ack is not None:
                ack.done(rejected.get(index))

    # ------------------------------------------------------------ flush / stop
    def flush(self, timeout: Optional[float] = None, spool: bool = True) -> bool:
        """Wait until every record submitted so far was handled: sent, refused or
        dropped, and (``spool=True``) until the spool is empty too. False when
        that did not happen within ``timeout``."""
        target = self.counters.queued
        if self._thread is None:
            return not self._queue
        deadline = None if timeout is None else time.monotonic() + timeout

        def done() -> bool:
            return self._processed >= target and not (spool and self._spool)

        with self._done:
            while not done():
                self._wake.set()
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._done.wait(0.1 if remaining is None else min(remaining, 0.1))
        return True

    def shutdown(self, timeout: float = 5.0) -> bool:
        self._shutdown_deadline = time.monotonic() + timeout
        # Spooled records are safe on disk; waiting for them would only delay exit.
        ok = self.flush(timeout, spool=False)
        self._stopping = True
        self._wake.set()
        thread = self._thread
        if thread is not None:
            thread.join(max(0.0, self._shutdown_deadline - time.monotonic()))
        self._exporter.close()
        if self._spool is not None:
            if self._spool:
                log.warning("aitrail: %d bytes of records remain in the spool at %s; they will "
                            "be sent by the next process that uses it", self._spool.bytes,
                            self._spool_dir)
            self._spool.close()
        if not ok:
            log.warning("aitrail: %d records not delivered at shutdown", len(self._queue))
        return ok

    def stats(self) -> dict[str, Any]:
        out = self.counters.as_dict()
        out["pending"] = len(self._queue)
        out["spool_bytes"] = self._spool.bytes if self._spool is not None else 0
        return out


def _fail(acks: Sequence[Optional[Ack]], reason: str) -> None:
    for ack in acks:
        if ack is not None:
            ack.done(reason)
