"""The gRPC exporter: ``aitrail.v1.AuditService/Export`` on the collector.

The one module of the SDK's delivery path that knows gRPC: it turns a
``grpc.RpcError`` into :class:`~aitrail.export.exporter.ExportFailed`, retryable
or not, with the collector's ``grpc-retry-pushback-ms`` back-off request.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc

from aitrail.export.exporter import ExportFailed, ExportResponse
from aitrail.v1 import audit_pb2 as pb

_METHOD = "/aitrail.v1.AuditService/Export"
# Worth trying again later; anything else means the batch itself is unacceptable.
_RETRYABLE = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED,
              grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.ABORTED,
              grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN,
              # A key that is missing or revoked is a deployment problem: keep the
              # records (durable mode) until someone fixes it.
              grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED}


class GrpcExporter:
    """Sends one serialized ExportRequest to ``aitrail.v1.AuditService/Export``."""

    def __init__(self, endpoint: str, timeout: float, *, api_key: str = "",
                 tls: bool = False, ca_cert: bytes | None = None,
                 client_cert: bytes | None = None, client_key: bytes | None = None) -> None:
        self.endpoint = endpoint
        self.timeout = timeout
        self._metadata = (("authorization", f"Bearer {api_key}"),) if api_key else None
        self._tls = tls or bool(ca_cert or client_cert)
        self._creds = (ca_cert, client_key, client_cert)
        self._channel: grpc.Channel | None = None
        self._call: Callable[..., ExportResponse] | None = None

    def _connect(self) -> Callable[..., ExportResponse]:
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
        call: Callable[..., ExportResponse] = self._channel.unary_unary(
            _METHOD, response_deserializer=pb.ExportResponse.FromString)
        return call

    def export(self, request: bytes, timeout: float | None = None,
               wait_for_ready: bool = False) -> ExportResponse:
        """``wait_for_ready``: wait (up to the timeout) for a collector that is not
        reachable yet, instead of failing at once. Raises ExportFailed."""
        if self._call is None:
            self._call = self._connect()
        try:
            return self._call(request, timeout=timeout or self.timeout,
                              metadata=self._metadata, wait_for_ready=wait_for_ready)
        except grpc.RpcError as err:
            raise export_failed(err) from err

    def close(self) -> None:
        if self._channel is not None:
            self._channel.close()
        self._channel = self._call = None


def export_failed(err: grpc.RpcError) -> ExportFailed:
    """A gRPC failure as the delivery code understands it."""
    code: Any = err.code() if hasattr(err, "code") else None
    detail: Any = err.details() if hasattr(err, "details") else str(err)
    return ExportFailed(detail or "", retryable=code in _RETRYABLE, retry_after=_retry_hint(err),
                        code=str(code))


def _retry_hint(err: grpc.RpcError) -> float | None:
    """The collector's back-off request (grpc-retry-pushback-ms), in seconds."""
    metadata: Any = err.trailing_metadata() if hasattr(err, "trailing_metadata") else ()
    for key, value in metadata or ():
        if key == "grpc-retry-pushback-ms":
            try:
                return int(value) / 1000
            except ValueError:
                return None
    return None


__all__ = ["GrpcExporter", "export_failed"]
