"""Delivery: a bounded in-memory queue drained by one background thread.

The caller's thread appends a draft to a deque (no lock, no I/O) and, when a
batch is full, sets an event. The worker turns drafts into redacted records,
sends them in batches over gRPC and retries transient failures with backoff.
Shutdown flushes with a deadline; after ``fork`` the child starts with an
empty queue and its own channel, so it never resends the parent's records.
"""

from __future__ import annotations

import atexit
import collections
import logging
import os
import random
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence

import grpc

from aitrail.v1 import audit_pb2 as pb
from aitrail.v1 import audit_pb2_grpc as pb_grpc

log = logging.getLogger("aitrail")

_RETRYABLE = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED,
              grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.ABORTED,
              grpc.StatusCode.INTERNAL}


class GrpcExporter:
    """Sends one batch to ``aitrail.v1.AuditService/Export``."""

    def __init__(self, endpoint: str, timeout: float):
        self.endpoint = endpoint
        self.timeout = timeout
        self._channel: Optional[grpc.Channel] = None
        self._stub: Optional[pb_grpc.AuditServiceStub] = None

    def export(self, records: Sequence[pb.AuditRecord]) -> pb.ExportResponse:
        if self._stub is None:
            self._channel = grpc.insecure_channel(self.endpoint, options=[
                ("grpc.max_send_message_length", 64 * 1024 * 1024)])
            self._stub = pb_grpc.AuditServiceStub(self._channel)
        return self._stub.Export(pb.ExportRequest(records=records), timeout=self.timeout)

    def close(self) -> None:
        if self._channel is not None:
            self._channel.close()
        self._channel = self._stub = None


@dataclass
class Counters:
    queued: int = 0      # accepted into the queue
    sent: int = 0        # acknowledged by the collector (new or duplicate)
    rejected: int = 0    # refused by the collector's validator
    dropped: int = 0     # queue full, unbuildable, or retries exhausted

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


class BatchWorker:
    def __init__(self, build: Callable[[dict], pb.AuditRecord], exporter: GrpcExporter, *,
                 batch_size: int, flush_interval: float, max_queue: int, retry_for: float):
        self._build = build
        self._exporter = exporter
        self._batch_size = batch_size
        self._flush_interval = flush_interval
        self._max_queue = max_queue
        self._retry_for = retry_for
        self._reset_state()
        os.register_at_fork(after_in_child=self._after_fork)
        atexit.register(self.shutdown)

    def _reset_state(self) -> None:
        self._queue: collections.deque = collections.deque()
        self._wake = threading.Event()
        self._done = threading.Condition()
        self._processed = 0  # drafts taken off the queue and finished with
        self._stopping = False
        self._thread: Optional[threading.Thread] = None
        self._start_lock = threading.Lock()
        self._warned_full = False
        self.counters = Counters()

    def _after_fork(self) -> None:
        # The parent's queue and channel belong to the parent.
        self._exporter.close()
        self._reset_state()

    def submit(self, draft: dict) -> None:
        queue = self._queue
        if len(queue) >= self._max_queue:
            self.counters.dropped += 1
            if not self._warned_full:
                self._warned_full = True
                log.warning("aitrail: queue full (%d records); dropping records -- see "
                            "aitrail.stats()['dropped']", self._max_queue)
            return
        queue.append(draft)
        self.counters.queued += 1
        if self._thread is None:
            self._start()
        if len(queue) >= self._batch_size:
            self._wake.set()

    def _start(self) -> None:
        with self._start_lock:
            if self._thread is None and not self._stopping:
                self._thread = threading.Thread(target=self._run, name="aitrail-export", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while True:
            self._wake.wait(self._flush_interval)
            self._wake.clear()
            self._drain()
            if self._stopping and not self._queue:
                return

    def _drain(self) -> None:
        queue = self._queue
        while queue:
            drafts = [queue.popleft() for _ in range(min(self._batch_size, len(queue)))]
            try:
                self._send(self._build_all(drafts))
            finally:
                with self._done:
                    self._processed += len(drafts)
                    self._done.notify_all()

    def _build_all(self, drafts: list[dict]) -> list[pb.AuditRecord]:
        records = []
        for draft in drafts:
            try:
                records.append(self._build(draft))
            except Exception:  # a bad draft must not sink its batch
                self.counters.dropped += 1
                log.exception("aitrail: could not build record %s", draft.get("record_id"))
        return records

    def _send(self, records: list[pb.AuditRecord]) -> None:
        if not records:
            return
        deadline = time.monotonic() + self._retry_for
        delay = 0.05
        while True:
            try:
                response = self._exporter.export(records)
            except grpc.RpcError as err:
                code = err.code() if hasattr(err, "code") else None
                if code in _RETRYABLE and time.monotonic() < deadline and not self._stopping_hard():
                    time.sleep(delay * (0.5 + random.random()))
                    delay = min(delay * 2, 2.0)
                    continue
                self.counters.dropped += len(records)
                log.error("aitrail: dropping %d records after export failure: %s", len(records),
                          err.details() if hasattr(err, "details") else err)
                return
            self._account(records, response)
            return

    def _stopping_hard(self) -> bool:
        return self._stopping and time.monotonic() > self._shutdown_deadline

    def _account(self, records: list[pb.AuditRecord], response: pb.ExportResponse) -> None:
        self.counters.sent += response.accepted + response.duplicates
        self.counters.rejected += len(response.rejected)
        for rej in response.rejected:
            log.error("aitrail: collector rejected record %s: %s", rej.record_id, rej.reason)

    def flush(self, timeout: Optional[float] = None) -> bool:
        """Wait until every record submitted so far is sent or given up on."""
        target = self.counters.queued
        if self._thread is None:
            return not self._queue
        self._wake.set()
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._done:
            while self._processed < target:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._done.wait(remaining)
        return True

    _shutdown_deadline = float("inf")

    def shutdown(self, timeout: float = 5.0) -> bool:
        self._shutdown_deadline = time.monotonic() + timeout
        ok = self.flush(timeout)
        self._stopping = True
        self._wake.set()
        thread = self._thread
        if thread is not None:
            thread.join(max(0.0, self._shutdown_deadline - time.monotonic()))
        self._exporter.close()
        if not ok:
            log.warning("aitrail: %d records not delivered at shutdown", len(self._queue))
        return ok

    def stats(self) -> dict[str, Any]:
        out = self.counters.as_dict()
        out["pending"] = len(self._queue)
        return out
