"""The batch worker: a bounded in-memory queue drained by one background thread.

The caller's thread appends a draft to a deque (no lock, no I/O, no counter)
and, when a batch is full, sets an event. The worker takes batches off the
queue and hands them to the delivery policy (``aitrail.export.delivery``),
which builds, sends, spools or drops them; this module knows neither the
policy's rules nor the transport.

Counting stays off the caller's path: the worker counts records as ``queued``
when it takes them, under the same lock as it counts them finished, and
``stats`` and ``flush`` add what is still in the queue. So the numbers add up
however many threads submit at once.

Shutdown flushes with a deadline; after ``fork`` the child starts with an
empty queue, its own channel and its own spool, so it never resends the
parent's records.
"""

from __future__ import annotations

import atexit
import collections
import logging
import os
import threading
import time
import weakref
from typing import Any

from aitrail.export.delivery import DURABLE, Ack, Build, Counters, Item, make_delivery
from aitrail.export.exporter import Exporter

log = logging.getLogger("aitrail")


class BatchWorker:
    """Queues drafts from any thread and delivers them in batches from one thread.

    ``build`` turns a draft into an ``AuditRecord`` (on the worker); ``delivery``
    is one of ``DELIVERY_MODES``; ``export_timeout`` caps one export attempt
    (default: the exporter's ``timeout`` attribute, else 10 s).
    """

    def __init__(self, build: Build, exporter: Exporter, *, batch_size: int,
                 flush_interval: float, max_queue: int, retry_for: float,
                 delivery: str = DURABLE, spool_dir: str | None = None,
                 spool_max_bytes: int = 256 * 1024 * 1024,
                 export_timeout: float | None = None) -> None:
        self._build = build
        self._exporter = exporter
        self._batch_size = batch_size
        self._flush_interval = flush_interval
        self._max_queue = max_queue
        self._retry_for = retry_for
        self._export_timeout = float(export_timeout if export_timeout is not None
                                     else getattr(exporter, "timeout", 10.0))
        self.delivery = delivery
        self._spool_dir = spool_dir
        self._spool_max = spool_max_bytes
        self._shutdown_deadline = float("inf")
        self._reset_state()  # raises ValueError for a bad mode or a missing spool_dir
        ref = weakref.ref(self)  # registrations must not keep a replaced worker alive

        def after_fork() -> None:
            worker = ref()
            if worker is not None:
                worker._after_fork()

        def at_exit() -> None:
            worker = ref()
            if worker is not None:
                worker.shutdown()

        os.register_at_fork(after_in_child=after_fork)
        atexit.register(at_exit)

    def _reset_state(self) -> None:
        self._queue: collections.deque[Item] = collections.deque()
        self._wake = threading.Event()
        self._done = threading.Condition()
        self._processed = 0  # drafts taken off the queue and finished with (under _done)
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        # counters.queued is what the worker took off the queue, changed under _done.
        self.counters = Counters()
        self._policy = make_delivery(self.delivery, self._build, self._exporter, self.counters,
                                     retry_for=self._retry_for,
                                     export_timeout=self._export_timeout,
                                     spool_dir=self._spool_dir,
                                     spool_max_bytes=self._spool_max,
                                     batch_size=self._batch_size,
                                     stopping=self._stopping_hard, progress=self._notify)

    def _after_fork(self) -> None:
        # The parent's queue, channel and spool belong to the parent.
        self._policy.after_fork()
        self._reset_state()

    # ------------------------------------------------------------ caller side
    def submit(self, draft: Any, ack: Ack | None = None) -> None:
        queue = self._queue
        if len(queue) >= self._max_queue:
            self._policy.overflow(draft, ack, self._max_queue)
            return
        queue.append((draft, ack))
        if self._thread is None:
            self._start()
        # Setting an Event that is already set still costs a lock round trip;
        # under load the queue stays past the batch size, so check first.
        if (ack is not None or len(queue) >= self._batch_size) and not self._wake.is_set():
            self._wake.set()

    def _start(self) -> None:
        with self._start_lock:
            if self._thread is None and not self._stopping:
                self._thread = threading.Thread(target=self._run, name="aitrail-export",
                                                daemon=True)
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
        self._policy.replay()
        queue = self._queue
        while queue:
            with self._done:
                n = min(self._batch_size, len(queue))
                items = [queue.popleft() for _ in range(n)]
                self.counters.add(queued=n)
            try:
                self._policy.deliver(items)
            finally:
                with self._done:
                    self._processed += n
                    self._done.notify_all()
            # Between batches too: while callers keep the queue from emptying, a
            # backlog in the spool (durable delivery) would otherwise wait for the
            # load to stop, every new batch spooled behind it.
            self._policy.replay()

    def _notify(self) -> None:
        with self._done:
            self._done.notify_all()

    def _stopping_hard(self) -> bool:
        return self._stopping and time.monotonic() > self._shutdown_deadline

    # ------------------------------------------------------------ flush / stop
    def flush(self, timeout: float | None = None, spool: bool = True) -> bool:
        """Wait until every record submitted so far was handled: sent, refused or
        dropped, and (``spool=True``) until the spool is empty too. False when
        that did not happen within ``timeout``."""
        if self._thread is None:
            return not self._queue
        with self._done:
            # Everything submitted before this call was taken (and counted) or
            # is still in the queue; nothing is in between while we hold _done.
            target = self.counters.queued + len(self._queue)
        deadline = None if timeout is None else time.monotonic() + timeout
        policy = self._policy

        def done() -> bool:
            return self._processed >= target and not (spool and policy.backlog)

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
        self._policy.close()
        if not ok:
            log.warning("aitrail: %d records not delivered at shutdown", len(self._queue))
        return ok

    def stats(self) -> dict[str, int]:
        with self._done:
            out = self.counters.as_dict()
            pending = len(self._queue)
        out["queued"] += pending
        out["pending"] = pending
        out["spool_bytes"] = self._policy.spool_bytes
        return out


__all__ = ["BatchWorker"]
