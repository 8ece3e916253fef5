"""What delivery needs from a transport: the ``Exporter`` protocol and its failures.

An exporter sends one serialized ``aitrail.v1.ExportRequest`` and returns the
collector's ``ExportResponse``. When it cannot, it raises :class:`ExportFailed`,
saying whether trying again later makes sense and how long the other side asked
us to wait. The delivery code (``aitrail.export.delivery``) and the worker
(``aitrail.export.worker``) only ever see these types, never a transport's own
errors: gRPC lives in ``aitrail.export.grpc`` alone.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from aitrail.v1 import audit_pb2 as pb

ExportResponse = pb.ExportResponse


class ExportFailed(Exception):
    """An export attempt failed.

    ``retryable``: the batch may be accepted later (collector down, overloaded,
    key revoked...); otherwise the batch itself is unacceptable and is dropped
    (or set aside, when it came from the spool). ``retry_after``: the back-off
    the other side asked for, in seconds, if it asked. ``code``: the transport's
    name for the failure, for log messages (``StatusCode.UNAVAILABLE``).
    ``detail``: what went wrong, in words.
    """

    def __init__(self, detail: str, *, retryable: bool, retry_after: float | None = None,
                 code: str = "") -> None:
        super().__init__(detail)
        self.detail = detail
        self.retryable = retryable
        self.retry_after = retry_after
        self.code = code

    def __repr__(self) -> str:
        return (f"{type(self).__name__}({self.detail!r}, retryable={self.retryable}, "
                f"retry_after={self.retry_after!r}, code={self.code!r})")


class ExportUnavailable(ExportFailed):
    """Worth trying again later."""

    def __init__(self, detail: str, *, retry_after: float | None = None,
                 code: str = "UNAVAILABLE") -> None:
        super().__init__(detail, retryable=True, retry_after=retry_after, code=code)


class ExportRefused(ExportFailed):
    """The other side will never take this batch."""

    def __init__(self, detail: str, *, code: str = "REFUSED") -> None:
        super().__init__(detail, retryable=False, code=code)


@runtime_checkable
class Exporter(Protocol):
    """Sends serialized ``ExportRequest`` batches somewhere (compare OpenTelemetry's
    ``SpanExporter``). Called from the SDK's one delivery thread only.

    ``export`` returns the ``ExportResponse`` or raises :class:`ExportFailed`;
    ``timeout`` (seconds) of None means the exporter's own default, and
    ``wait_for_ready`` asks it to wait, up to the timeout, for a destination
    that is not reachable yet instead of failing at once. ``close`` releases
    connections; it is called at shutdown and in a forked child.
    """

    def export(self, request: bytes, timeout: float | None = None,
               wait_for_ready: bool = False) -> ExportResponse: ...

    def close(self) -> None: ...


__all__ = ["ExportFailed", "ExportRefused", "ExportResponse", "ExportUnavailable", "Exporter"]
