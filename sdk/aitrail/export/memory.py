"""An exporter that keeps what it receives in memory, for testing instrumentation.

::

    from aitrail.export import InMemoryExporter

    exporter = InMemoryExporter()
    aitrail.configure(service="triage-bot", exporter=exporter, delivery="best_effort")
    ...
    aitrail.flush()
    (record,) = exporter.get_finished_records()

It answers like the collector: records it already holds (same ``record_id``)
count as duplicates and are not kept twice. It can be told to fail, so the
durable and strict paths can be tested too: :meth:`InMemoryExporter.fail_next`
fails the next few exports; setting ``unavailable`` fails every export until it
is cleared (an export that asks to ``wait_for_ready`` waits, up to its timeout,
for it to be cleared, as the gRPC exporter waits for a collector to come back).
"""

from __future__ import annotations

import threading

from aitrail.export.exporter import ExportFailed, ExportResponse
from aitrail.v1 import audit_pb2 as pb


class InMemoryExporter:
    """Thread-safe; ``close`` keeps the records, so they can be read after shutdown."""

    def __init__(self, timeout: float = 10.0) -> None:
        self.timeout = timeout
        self._cond = threading.Condition()
        self._records: list[pb.AuditRecord] = []
        self._ids: set[str] = set()
        self._unavailable = False
        self._failures: list[ExportFailed] = []
        self._exports = 0

    # ------------------------------------------------------------ Exporter
    def export(self, request: bytes, timeout: float | None = None,
               wait_for_ready: bool = False) -> ExportResponse:
        records = pb.ExportRequest.FromString(request).records
        with self._cond:
            self._exports += 1
            if self._failures:
                raise self._failures.pop(0)
            if self._unavailable and wait_for_ready:
                self._cond.wait_for(lambda: not self._unavailable,
                                    timeout if timeout is not None else self.timeout)
            if self._unavailable:
                raise ExportFailed("the in-memory exporter is set unavailable", retryable=True,
                                   code="UNAVAILABLE")
            accepted = duplicates = 0
            for record in records:
                if record.record_id in self._ids:
                    duplicates += 1
                    continue
                self._ids.add(record.record_id)
                self._records.append(record)
                accepted += 1
        return pb.ExportResponse(accepted=accepted, duplicates=duplicates)

    def close(self) -> None:
        """Nothing to release; the records stay readable."""

    # ------------------------------------------------------------ test controls
    @property
    def unavailable(self) -> bool:
        """While True, every export fails with a retryable error."""
        return self._unavailable

    @unavailable.setter
    def unavailable(self, value: bool) -> None:
        with self._cond:
            self._unavailable = bool(value)
            self._cond.notify_all()

    def fail_next(self, n: int = 1, *, retryable: bool = True,
                  retry_after: float | None = None,
                  detail: str = "the in-memory exporter was told to fail") -> None:
        """Fail the next ``n`` exports: retryable (the collector is down) or not
        (the collector refuses the batch), with an optional back-off request."""
        code = "UNAVAILABLE" if retryable else "INVALID_ARGUMENT"
        with self._cond:
            self._failures.extend(ExportFailed(detail, retryable=retryable,
                                               retry_after=retry_after, code=code)
                                  for _ in range(n))

    # ------------------------------------------------------------ inspection
    @property
    def records(self) -> list[pb.AuditRecord]:
        """The distinct records received so far, in the order they arrived."""
        with self._cond:
            return list(self._records)

    def get_finished_records(self) -> list[pb.AuditRecord]:
        """Same as :attr:`records` (named like OpenTelemetry's ``get_finished_spans``)."""
        return self.records

    @property
    def exports(self) -> int:
        """How many export calls were made, failed ones included."""
        with self._cond:
            return self._exports

    def clear(self) -> None:
        """Forget the records received so far (and their ids) and pending failures."""
        with self._cond:
            self._records.clear()
            self._ids.clear()
            self._failures.clear()


__all__ = ["InMemoryExporter"]
