"""The gRPC endpoint: ``aitrail.v1.AuditService/Export``.

Requests are taken as raw bytes and parsed here, so a request that is not a
valid ExportRequest (bad wire format, invalid UTF-8 in a string) gets a clear
INVALID_ARGUMENT rather than gRPC's generic deserialization error.

Hostile and overload input, in the order it is met:

* with API keys configured, the caller is authenticated from the call's metadata
  before its request is read (apikeys.KeyInterceptor), so a compressed body of a
  call with a bad key is never decompressed;
* ``grpc.max_receive_message_length`` (``max_message_bytes``) bounds the request
  as decompressed: the engine stops inflating at the limit and answers
  RESOURCE_EXHAUSTED, so a gzip bomb costs at most that much memory per call, and
  at most ``workers`` calls are read at a time;
* admission (back-pressure): past ``max_pending_records`` records or
  ``max_pending_bytes`` request bytes held by calls waiting to be sealed, the
  answer is RESOURCE_EXHAUSTED with a retry hint, not an ever-growing queue.
  One ``Admission`` budget is shared by every ingest endpoint (this one and the
  OTLP receivers, ingest/otlp.py): they all wait for the same ledger.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from concurrent import futures
from typing import Callable, Mapping, Optional, Sequence

import grpc
from cryptography import x509
from google.protobuf.message import DecodeError

from aitrail.errors import AitrailError
from aitrail.v1 import audit_pb2 as pb
from aitrail_collector.config import TlsFiles
from aitrail_collector.ingest.apikeys import ApiKey, KeyInterceptor, KeyRing
from aitrail_collector.ingest.google_rpc import retry_info
from aitrail_collector.ledger.group_commit import UNAUTHENTICATED, Ledger, Sender

log = logging.getLogger("aitrail.collector")

SERVICE = "aitrail.v1.AuditService"


def sender_of_key(key: Optional[ApiKey]) -> Sender:
    """The sender of a call made with ``key`` (None: no API keys are configured)."""
    if key is None:
        return UNAUTHENTICATED
    return Sender("apikey", key.key_id, key.service, key.task_prefixes)


def sender_of(key: Optional[ApiKey], context: grpc.ServicerContext) -> Sender:
    """Who delivered a call: its API key (the KeyInterceptor checked it) and/or the
    mutual-TLS client certificate's subject. The collector seals it with each record."""
    sender = sender_of_key(key)
    pem = (context.auth_context() or {}).get("x509_pem_cert")
    if not pem:
        return sender
    try:
        subject = x509.load_pem_x509_certificate(pem[0]).subject.rfc4514_string()
    except ValueError:  # grpc verified it; a subject we cannot read is still a client
        subject = "unreadable certificate subject"
    if sender.kind == "apikey":
        return dataclasses.replace(sender, kind="apikey+mtls", id=f"{sender.id} {subject}")
    return dataclasses.replace(sender, kind="mtls", id=subject)


class Overloaded(AitrailError):
    """Admission refused a call: too much is waiting to be sealed. Retry later."""

    def __init__(self, held: str, retry_ms: int):
        super().__init__(f"collector overloaded ({held} waiting to be sealed); "
                         f"retry in {retry_ms} ms")
        self.retry_ms = retry_ms


class Admission:
    """Back-pressure shared by every ingest endpoint (native gRPC, OTLP/gRPC, OTLP/HTTP):
    records and request bytes held by calls waiting to be sealed, against one budget,
    since they all wait for the same ledger."""

    def __init__(self, max_pending: int, max_pending_bytes: int, retry_pushback_ms: int):
        self.max_pending = max_pending
        self.max_pending_bytes = max_pending_bytes
        self.retry_pushback_ms = retry_pushback_ms
        self._pending = 0
        self._pending_bytes = 0
        self._lock = threading.Lock()

    def admit(self, n: int, nbytes: int) -> None:
        """Hold ``n`` records and ``nbytes`` request bytes (release them with ``release``);
        raises Overloaded, holding nothing, past either limit."""
        with self._lock:
            # One call is always admitted, however large, so progress is possible.
            if self._pending and self._pending + n > self.max_pending:
                held = f"{self._pending} records"
            elif self._pending_bytes and self._pending_bytes + nbytes > self.max_pending_bytes:
                held = f"{self._pending_bytes} request bytes"
            else:
                self._pending += n
                self._pending_bytes += nbytes
                return
        raise Overloaded(held, self.retry_pushback_ms)

    def release(self, n: int, nbytes: int) -> None:
        with self._lock:
            self._pending -= n
            self._pending_bytes -= nbytes


def abort_overloaded(context: grpc.ServicerContext, exc: Overloaded) -> None:
    """RESOURCE_EXHAUSTED with the retry hint in the two forms clients read: gRPC's
    ``grpc-retry-pushback-ms`` and the ``google.rpc.retryinfo-bin`` RetryInfo that the
    OpenTelemetry exporters honour."""
    context.set_trailing_metadata((
        ("grpc-retry-pushback-ms", str(exc.retry_ms)),
        ("google.rpc.retryinfo-bin", retry_info(exc.retry_ms))))
    context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, str(exc))


class ExportHandler:
    def __init__(self, ledger: Ledger, *, keys: Optional[KeyRing] = None,
                 max_records: int, max_pending: int = 0, max_pending_bytes: int = 0,
                 retry_pushback_ms: int = 0, admission: Optional[Admission] = None):
        self.ledger = ledger
        self.keys = keys  # checked by the KeyInterceptor start_grpc puts in front
        self.max_records = max_records
        self.admission = admission or Admission(max_pending, max_pending_bytes,
                                                retry_pushback_ms)

    def export(self, raw: bytes, context: grpc.ServicerContext,
               key: Optional[ApiKey] = None) -> bytes:
        """One request; ``key`` is its API key (checked by the KeyInterceptor), None when
        no keys are configured."""
        try:
            self.admission.admit(0, len(raw))
        except Overloaded as exc:
            abort_overloaded(context, exc)
        try:
            return self._export(raw, context, sender_of(key, context))
        finally:
            self.admission.release(0, len(raw))

    def _export(self, raw: bytes, context: grpc.ServicerContext, sender: Sender) -> bytes:
        try:
            request = pb.ExportRequest.FromString(raw)
        except DecodeError as exc:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                          f"request is not a valid aitrail.v1.ExportRequest "
                          f"(bad wire format or invalid UTF-8 in a string field): {exc}")
        n = len(request.records)
        if n > self.max_records:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                          f"{n} records in one request; the limit is {self.max_records}")
        try:
            self.admission.admit(n, 0)
        except Overloaded as exc:
            abort_overloaded(context, exc)
        try:
            result = self.ledger.append_request(raw, request, sender)
        except Exception as exc:  # noqa: BLE001 - the store failed: nothing was acknowledged
            log.exception("store write failed")
            context.abort(grpc.StatusCode.UNAVAILABLE, f"the store did not accept the batch: {exc}")
        finally:
            self.admission.release(n, 0)
        response = pb.ExportResponse(accepted=result.accepted, duplicates=result.duplicates,
                                     chain_id=self.ledger.chain_id, head_seq=result.head_seq)
        for index, record_id, reason in result.rejected:
            response.rejected.add(index=index, record_id=record_id, reason=reason)
        return response.SerializeToString()


Behavior = Callable[..., bytes]  # (raw request, context[, key]) -> raw response


def start_grpc(handler: ExportHandler, listen: str, *,
               max_message_bytes: int, tls: Optional[TlsFiles] = None,
               workers: int, extra: Sequence[tuple[str, Mapping[str, Behavior]]] = ()
               ) -> tuple[grpc.Server, int]:
    """Start serving on ``listen`` (HOST:PORT, port 0 picks one); returns (server, port).

    ``extra``: more services, as (full service name, {method: behavior}), served beside
    AuditService behind the same key check, message limit and TLS (the OTLP
    TraceService); each behavior takes raw bytes and answers raw bytes like ``export``."""
    rpc = grpc.unary_unary_rpc_method_handler(handler.export)  # bytes in, bytes out
    interceptors = [KeyInterceptor(handler.keys)] if handler.keys is not None else []
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="grpc"),
                         interceptors=interceptors,
                         options=[("grpc.max_receive_message_length", max_message_bytes),
                                  ("grpc.max_send_message_length", max_message_bytes)])
    handlers = [grpc.method_handlers_generic_handler(SERVICE, {"Export": rpc})]
    for service, methods in extra:
        handlers.append(grpc.method_handlers_generic_handler(
            service, {name: grpc.unary_unary_rpc_method_handler(behavior)
                      for name, behavior in methods.items()}))
    server.add_generic_rpc_handlers(handlers)
    if tls is not None:
        port = server.add_secure_port(listen, tls.credentials())
    else:
        port = server.add_insecure_port(listen)
    if port == 0:
        raise OSError(f"cannot listen for gRPC on {listen}")
    server.start()
    return server, port
