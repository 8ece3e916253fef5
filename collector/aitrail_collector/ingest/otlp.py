"""The OTLP trace receivers: OTLP/gRPC and OTLP/HTTP in, sealed records out.

* OTLP/gRPC: ``opentelemetry.proto.collector.trace.v1.TraceService/Export`` on the
  collector's gRPC server (service.start_grpc), behind the same KeyInterceptor, TLS
  and ``max_message_bytes`` as ``aitrail.v1.AuditService``.
* OTLP/HTTP: ``POST /v1/traces`` on the HTTP listener (web/app.py), bodies
  ``application/x-protobuf`` or ``application/json`` (OTLP/JSON: hex ids), plain or
  ``Content-Encoding: gzip``. The API keys are the native service's
  (``Authorization: Bearer ait_...``), not the console's tokens; with no keys
  configured it is open, like the gRPC side. Answers follow the OTLP/HTTP spec, in
  the request's content type: 200 with ExportTraceServiceResponse; 400 (with a
  google.rpc.Status) for a malformed request, 401 without a valid key, 413 past
  ``max_message_bytes`` (as sent, and as inflated: a gzip bomb costs at most that),
  415 for another content type or encoding, 429 when admission refuses and 503 when
  the store fails, both with Retry-After.

Both go the native batch path: ``aitrail.otel.otlp.records_of`` maps the GenAI spans
to redacted records (the collector's redaction key and policy), which are sealed as
one ``pb.ExportRequest`` by ``ledger.append_request`` under the shared admission
budget (service.Admission). A malformed request (bad protobuf or JSON, invalid ids,
an attribute longer than any record may hold, more spans than a batch may have) is
refused whole and writes nothing. Span-derived record ids are deterministic, so a
retried export is answered as duplicates. The answer's ``partial_success`` counts the
spans refused (by the mapping or by record validation) and its message also says how
many spans were not GenAI and made no record. Counters: ``OtlpStats`` (/healthz).
"""

from __future__ import annotations

import logging
import math
import threading
import zlib
from dataclasses import dataclass, field
from typing import Any, Optional

import grpc
from fastapi import FastAPI, Request, Response
from google.protobuf import json_format
from google.protobuf.message import Message
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from starlette.concurrency import run_in_threadpool

from aitrail.errors import AitrailError
from aitrail.otel.mapping import MappingOptions
from aitrail.otel.otlp import OtlpBatch, OtlpError, parse_json, parse_protobuf, records_of
from aitrail.record.redact import Redactor
from aitrail.v1 import audit_pb2 as pb
from aitrail_collector.ingest.apikeys import ApiKey, AuthError, KeyRing
from aitrail_collector.ingest.google_rpc import Status
from aitrail_collector.ingest.service import (
    Admission,
    Overloaded,
    abort_overloaded,
    sender_of,
    sender_of_key,
)
from aitrail_collector.ledger.group_commit import AppendResult, Ledger, Sender

log = logging.getLogger("aitrail.collector")

TRACE_SERVICE = "opentelemetry.proto.collector.trace.v1.TraceService"
HTTP_PATH = "/v1/traces"
PROTOBUF = "application/x-protobuf"
JSON = "application/json"
_REASONS_SHOWN = 5  # per kind of refusal in partial_success.error_message


class TooLarge(AitrailError, ValueError):
    """The request is larger than ``max_message_bytes`` (as sent or as inflated)."""


class StoreUnavailable(AitrailError):
    """The store did not take the batch: nothing was acknowledged; retry."""


@dataclass
class OtlpStats:
    """What the receivers did since the collector started (both transports).

    ``spans``: spans in the requests that were read; ``records``: records the
    mapping made of them; ``accepted`` / ``duplicates``: of those, sealed now / sealed
    before (a retry); ``not_genai``: spans that made no record; ``refused_spans``:
    spans refused by the mapping or whose records validation refused;
    ``refused_requests``: requests refused whole, by reason. Calls refused for their
    API key before they are read are not counted here."""
    requests: int = 0
    spans: int = 0
    records: int = 0
    accepted: int = 0
    duplicates: int = 0
    not_genai: int = 0
    refused_spans: int = 0
    refused_requests: dict[str, int] = field(default_factory=lambda: dict.fromkeys(
        ("malformed", "too_large", "overloaded", "unavailable"), 0))
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def exported(self, batch: OtlpBatch, result: AppendResult, refused_spans: int) -> None:
        with self._lock:
            self.requests += 1
            self.spans += batch.spans
            self.records += len(batch.records)
            self.accepted += result.accepted
            self.duplicates += result.duplicates
            self.not_genai += batch.not_genai
            self.refused_spans += refused_spans

    def refused(self, reason: str) -> None:
        with self._lock:
            self.refused_requests[reason] += 1

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {"requests": self.requests, "spans": self.spans, "records": self.records,
                    "accepted": self.accepted, "duplicates": self.duplicates,
                    "not_genai": self.not_genai, "refused_spans": self.refused_spans,
                    "refused_requests": dict(self.refused_requests)}


class OtlpReceiver:
    """The transport-independent part, and the two transports' adapters."""

    def __init__(self, ledger: Ledger, redactor: Redactor, admission: Admission, *,
                 options: MappingOptions = MappingOptions(), keys: Optional[KeyRing] = None,
                 max_records: int, max_message_bytes: int, max_attribute_chars: int):
        self.ledger = ledger
        self.redactor = redactor
        self.admission = admission
        self.options = options
        self.keys = keys
        self.max_records = max_records
        self.max_message_bytes = max_message_bytes
        # No attribute value may be longer than the longest payload a record holds.
        self.max_attribute_chars = max_attribute_chars
        self.stats = OtlpStats()

    # ------------------------------------------------------------------ the batch path

    def export(self, request: ExportTraceServiceRequest, nbytes: int,
               sender: Sender) -> ExportTraceServiceResponse:
        """Seal the GenAI spans of ``request`` (``nbytes`` as received, for admission).
        Raises OtlpError (malformed: nothing written), Overloaded, StoreUnavailable."""
        self.admission.admit(0, nbytes)
        try:
            spans = self._check(request)
            batch = records_of(request, self.redactor, self.options)
            n = len(batch.records)
            if n > self.max_records:
                raise OtlpError(f"{spans} spans make {n} records; the limit is "
                                f"{self.max_records} in one request")
            result = self._append(batch, sender) if n else AppendResult()
        finally:
            self.admission.release(0, nbytes)
        rejected = self._rejected_spans(batch, result)
        self.stats.exported(batch, result, len(batch.refused) + rejected)
        return _response(batch, result, rejected)

    def _append(self, batch: OtlpBatch, sender: Sender) -> AppendResult:
        native = pb.ExportRequest(records=batch.records)
        n = len(batch.records)
        self.admission.admit(n, 0)
        try:
            return self.ledger.append_request(native.SerializeToString(), native, sender)
        except Exception as exc:  # noqa: BLE001 - the store failed: nothing was acknowledged
            log.exception("store write failed (OTLP)")
            raise StoreUnavailable(f"the store did not accept the batch: {exc}") from None
        finally:
            self.admission.release(n, 0)

    def _check(self, request: ExportTraceServiceRequest) -> int:
        """The number of spans; OtlpError when there are more than a batch may have, or
        an attribute longer than any record may hold. A span's or resource's encoded
        size (computed in C) bounds its every value, so only a message larger than the
        limit has its attributes looked at."""
        limit = self.max_attribute_chars
        # A bytes value is kept as base64: 4 characters for 3 bytes.
        suspect = limit * 3 // 4
        spans = 0
        for r, rs in enumerate(request.resource_spans):
            if rs.resource.ByteSize() > suspect:
                _check_attributes(rs.resource.attributes, f"resource_spans[{r}].resource", limit)
            for s, ss in enumerate(rs.scope_spans):
                spans += len(ss.spans)
                if spans > self.max_records:
                    raise OtlpError(f"more than {self.max_records} spans in one request; "
                                    f"the limit is {self.max_records}")
                for i, span in enumerate(ss.spans):
                    if span.ByteSize() > suspect:
                        where = f"resource_spans[{r}].scope_spans[{s}].spans[{i}]"
                        _check_attributes(span.attributes, where, limit)
                        for e, event in enumerate(span.events):
                            _check_attributes(event.attributes, f"{where}.events[{e}]", limit)
        return spans

    @staticmethod
    def _rejected_spans(batch: OtlpBatch, result: AppendResult) -> int:
        """Spans with a record that validation refused (a span may make several)."""
        refused = {(batch.records[i].trace_id, batch.records[i].span_id)
                   for i, _, _ in result.rejected}
        return len(refused)

    # ------------------------------------------------------------------ OTLP/gRPC

    def grpc_export(self, raw: bytes, context: grpc.ServicerContext,
                    key: Optional[ApiKey] = None) -> bytes:
        """TraceService/Export, bytes in, bytes out (``key``: from the KeyInterceptor)."""
        try:
            response = self.export(parse_protobuf(raw), len(raw), sender_of(key, context))
        except OtlpError as exc:
            self.stats.refused("malformed")
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"request refused whole: {exc}")
        except Overloaded as exc:
            self.stats.refused("overloaded")
            abort_overloaded(context, exc)
        except StoreUnavailable as exc:
            self.stats.refused("unavailable")
            context.abort(grpc.StatusCode.UNAVAILABLE, str(exc))
        return bytes(response.SerializeToString())

    def grpc_methods(self) -> tuple[str, dict[str, Any]]:
        """For service.start_grpc's ``extra``."""
        return TRACE_SERVICE, {"Export": self.grpc_export}

    # ------------------------------------------------------------------ OTLP/HTTP

    async def http_export(self, request: Request) -> Response:
        """POST /v1/traces. Everything that can refuse the call without its body (key,
        type, encoding, declared length) is checked before the body is read, the key
        first (a caller without one learns nothing else); the body is read at most
        ``max_message_bytes`` far, and inflated at most that far."""
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        answer_as = ctype if ctype in (PROTOBUF, JSON) else JSON
        try:
            sender = self._http_sender(request.headers.get("authorization", ""))
        except AuthError as exc:
            return _http_error(401, str(exc), answer_as,
                               {"WWW-Authenticate": 'Bearer realm="aitrail OTLP"'})
        if ctype not in (PROTOBUF, JSON):
            return _http_error(415, f"Content-Type {ctype or '(none)'!r}: expected "
                                    f"{PROTOBUF} or {JSON}", answer_as)
        encoding = request.headers.get("content-encoding", "").strip().lower()
        if encoding not in ("", "identity", "gzip"):
            return _http_error(415, f"Content-Encoding {encoding!r}: expected gzip or none",
                               answer_as)
        try:
            body = await self._read(request)
            status, message = await run_in_threadpool(self._http_sync, body, encoding,
                                                      ctype == JSON, sender)
        except TooLarge as exc:
            self.stats.refused("too_large")
            return _http_error(413, str(exc), answer_as)
        except OtlpError as exc:
            self.stats.refused("malformed")
            return _http_error(400, f"request refused whole: {exc}", answer_as)
        except Overloaded as exc:
            self.stats.refused("overloaded")
            return _http_error(429, str(exc), answer_as, _retry_after(exc.retry_ms))
        except StoreUnavailable as exc:
            self.stats.refused("unavailable")
            return _http_error(503, str(exc), answer_as,
                               _retry_after(self.admission.retry_pushback_ms))
        return _http_answer(status, message, answer_as)

    async def _read(self, request: Request) -> bytes:
        """The body, at most ``max_message_bytes`` of it. While it is read, its declared
        length (else the limit) is held in the admission budget: uploads in flight are
        bounded like requests waiting to be sealed (gRPC bounds them by its workers)."""
        limit = self.max_message_bytes
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            raise TooLarge(f"the body is {declared} bytes; the limit is {limit} "
                           "(--max-message-bytes)")
        held = int(declared) if declared.isdigit() else limit
        self.admission.admit(0, held)
        try:
            chunks, size = [], 0
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise TooLarge(f"the body is more than {limit} bytes (--max-message-bytes)")
                chunks.append(chunk)
            return b"".join(chunks)
        finally:
            self.admission.release(0, held)

    def _http_sender(self, authorization: str) -> Sender:
        """The sender of an HTTP call: its API key when keys are configured (AuthError
        when it has none or a bad one), else unauthenticated, like the gRPC side."""
        if self.keys is None:
            return sender_of_key(None)
        scheme, _, token = authorization.strip().partition(" ")
        value = f"Bearer {token.strip()}" if scheme.lower() == "bearer" else authorization
        return sender_of_key(self.keys.key_for([("authorization", value)]))

    def _http_sync(self, body: bytes, encoding: str, is_json: bool,
                   sender: Sender) -> tuple[int, Message]:
        if encoding == "gzip":
            body = _gunzip(body, self.max_message_bytes)
        request = parse_json(body) if is_json else parse_protobuf(body)
        return 200, self.export(request, len(body), sender)


def _check_attributes(kvs: Any, where: str, limit: int) -> None:
    for kv in kvs:
        size = _value_chars(kv.value)
        if size > limit:
            raise OtlpError(f"{where}.attributes[{kv.key[:100]!r}] is {size} characters "
                            f"long; the limit is {limit} (--max-text-chars)")


def _value_chars(v: Any) -> int:
    kind = v.WhichOneof("value")
    if kind == "string_value":
        return len(v.string_value)
    if kind == "bytes_value":
        return math.ceil(len(v.bytes_value) / 3) * 4  # as the base64 text the mapping keeps
    if kind == "array_value":
        return sum(_value_chars(x) for x in v.array_value.values)
    if kind == "kvlist_value":
        return sum(len(kv.key) + _value_chars(kv.value) for kv in v.kvlist_value.values)
    return 0


def _response(batch: OtlpBatch, result: AppendResult,
              rejected: int) -> ExportTraceServiceResponse:
    """The OTLP answer: partial_success when spans were refused (rejected_spans) or
    made no record (a warning in error_message, with rejected_spans counting only the
    refusals); empty when every span became a sealed (or already sealed) record."""
    response = ExportTraceServiceResponse()
    parts = []
    if batch.refused:
        parts.append(f"{len(batch.refused)} span(s) refused: "
                     + "; ".join(batch.refused[:_REASONS_SHOWN])
                     + (" ..." if len(batch.refused) > _REASONS_SHOWN else ""))
    if result.rejected:
        reasons = [f"record of span {batch.records[i].span_id}: {reason}"
                   for i, _, reason in result.rejected[:_REASONS_SHOWN]]
        parts.append(f"{rejected} span(s) whose records were refused: " + "; ".join(reasons)
                     + (" ..." if len(result.rejected) > _REASONS_SHOWN else ""))
    if batch.not_genai:
        parts.append(f"{batch.not_genai} span(s) are not GenAI model calls or evaluations "
                     "and made no audit record")
    if parts:
        response.partial_success.rejected_spans = len(batch.refused) + rejected
        response.partial_success.error_message = ". ".join(parts)
    return response


def _gunzip(body: bytes, limit: int) -> bytes:
    """``body`` inflated, never past ``limit`` bytes: a gzip bomb costs at most that."""
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        out = inflater.decompress(body, limit + 1)
    except zlib.error as exc:
        raise OtlpError(f"the body is not valid gzip: {exc}") from None
    if len(out) > limit or inflater.unconsumed_tail:
        raise TooLarge(f"the body inflates to more than {limit} bytes (--max-message-bytes)")
    if not inflater.eof:
        raise OtlpError("the body is truncated gzip (the stream does not end)")
    if inflater.unused_data:
        raise OtlpError("the body has data after its gzip stream")
    return out


# The google.rpc.Code of each HTTP error (OTLP/HTTP's Status body carries one).
_RPC_CODE = {400: 3, 401: 16, 413: 8, 415: 3, 429: 8, 503: 14}


def _retry_after(retry_ms: int) -> dict[str, str]:
    return {"Retry-After": str(max(1, math.ceil(retry_ms / 1000)))}


def _http_answer(status: int, message: Message, as_type: str,
                 headers: Optional[dict[str, str]] = None) -> Response:
    if as_type == JSON:
        body = json_format.MessageToJson(message, indent=None).encode("utf-8")
    else:
        body = message.SerializeToString()
    return Response(body, status_code=status, media_type=as_type, headers=headers)


def _http_error(status: int, text: str, as_type: str,
                headers: Optional[dict[str, str]] = None) -> Response:
    return _http_answer(status, Status(code=_RPC_CODE[status], message=text), as_type, headers)


def mount_http(app: FastAPI, receiver: OtlpReceiver) -> None:
    """``POST /v1/traces`` on ``app``; outside /api/v1, so the console's sign-in does
    not apply: the OTLP receiver takes ingest API keys (or none, like gRPC)."""
    async def otlp_traces(request: Request) -> Response:
        return await receiver.http_export(request)

    app.add_api_route(HTTP_PATH, otlp_traces, methods=["POST"], tags=["otlp"],
                      summary="OTLP/HTTP trace export (protobuf or JSON, gzip or not)",
                      response_class=Response)


__all__ = ["HTTP_PATH", "TRACE_SERVICE", "OtlpReceiver", "OtlpStats", "StoreUnavailable",
           "TooLarge", "mount_http"]
