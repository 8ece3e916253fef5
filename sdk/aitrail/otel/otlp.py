"""OTLP trace requests to audit records: what the collector's receiver seals.

Needs ``opentelemetry-proto`` (a collector dependency). A request whose ids are
not valid OTLP ids, or whose JSON is not OTLP/JSON, is refused whole
(:class:`OtlpError`): nothing of it is sealed. Spans that are not GenAI make no
record and are counted (``OtlpBatch.not_genai``), so the exporter's
partial-success answer can say how many were left out.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, Iterator, Mapping, Optional

from google.protobuf import json_format  # type: ignore[import-untyped]
from google.protobuf.message import DecodeError  # type: ignore[import-untyped]
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from aitrail.errors import AitrailError
from aitrail.otel.mapping import MappingOptions, drafts_for
from aitrail.otel.spans import EventView, SpanView
from aitrail.record.build import build_record
from aitrail.record.redact import Redactor
from aitrail.v1 import audit_pb2 as pb


class OtlpError(AitrailError, ValueError):
    """The request is not valid OTLP; the message says where and why."""


@dataclass
class OtlpBatch:
    records: list[pb.AuditRecord] = field(default_factory=list)
    spans: int = 0          # spans in the request
    not_genai: int = 0      # spans that made no record: not GenAI
    refused: list[str] = field(default_factory=list)  # spans whose records could not be built


def records_of(request: ExportTraceServiceRequest, redactor: Redactor,
               options: MappingOptions = MappingOptions()) -> OtlpBatch:
    """The redacted records of a request's GenAI spans, in request order."""
    batch = OtlpBatch()
    resource: Optional[Mapping[str, Any]] = None
    origin = SimpleNamespace()
    for where, span in views_of(request):
        batch.spans += 1
        drafts = drafts_for(span, options)
        if not drafts:
            batch.not_genai += 1
            continue
        if span.resource is not resource:  # one origin per resource, not per span
            resource, origin = span.resource, _origin(span.resource)
        for d in drafts:
            try:
                batch.records.append(build_record(d, origin, redactor))
            except (ValueError, TypeError, OverflowError) as exc:
                batch.refused.append(f"{where}: {exc}")
    return batch


def views_of(request: ExportTraceServiceRequest) -> Iterator[tuple[str, SpanView]]:
    """(where, span) for every span of the request; OtlpError on the first bad id."""
    for r, rs in enumerate(request.resource_spans):
        resource = _attributes(rs.resource.attributes)
        for s, ss in enumerate(rs.scope_spans):
            for i, span in enumerate(ss.spans):
                where = f"resource_spans[{r}].scope_spans[{s}].spans[{i}]"
                yield where, _view(span, where, resource, ss.scope.name)


def _view(span: Span, where: str, resource: Mapping[str, Any], scope: str) -> SpanView:
    return SpanView(
        trace_id=_id(span.trace_id, 16, f"{where}.trace_id"),
        span_id=_id(span.span_id, 8, f"{where}.span_id"),
        parent_span_id=(_id(span.parent_span_id, 8, f"{where}.parent_span_id")
                        if span.parent_span_id else ""),
        name=span.name, start_ns=span.start_time_unix_nano, end_ns=span.end_time_unix_nano,
        attributes=_attributes(span.attributes),
        events=tuple(EventView(e.name, e.time_unix_nano, _attributes(e.attributes))
                     for e in span.events),
        status_code=span.status.code, status_message=span.status.message,
        resource=resource, scope=scope)


def _id(raw: bytes, size: int, where: str) -> str:
    if len(raw) != size:
        raise OtlpError(f"{where} must be {size} bytes; it is {len(raw)}")
    if not any(raw):
        raise OtlpError(f"{where} is all zero bytes (an invalid id)")
    return raw.hex()


def _attributes(kvs: Any) -> dict[str, Any]:
    return {kv.key: _value(kv.value) for kv in kvs}


def _value(v: AnyValue) -> Any:
    kind = v.WhichOneof("value")
    if kind == "string_value":  # most attributes: first
        return v.string_value
    if kind is None:
        return None
    if kind == "array_value":
        return tuple(_value(x) for x in v.array_value.values)
    if kind == "kvlist_value":
        return _attributes(v.kvlist_value.values)
    if kind == "bytes_value":
        return base64.b64encode(v.bytes_value).decode("ascii")
    return getattr(v, kind)


_UNKNOWN_SERVICE = "unknown_service"


def _origin(resource: Mapping[str, Any]) -> SimpleNamespace:
    """Who sent a span, from its resource: what build_record reads off a config."""
    def text(*keys: str) -> str:
        for k in keys:
            v = resource.get(k)
            if v is not None and v != "":
                return str(v)
        return ""
    sdk = " ".join(filter(None, (text("telemetry.sdk.name"), text("telemetry.sdk.language"),
                                 text("telemetry.sdk.version"))))
    return SimpleNamespace(
        service=text("service.name") or _UNKNOWN_SERVICE,
        service_version=text("service.version"),
        environment=text("deployment.environment.name", "deployment.environment"),
        host=text("host.name"),
        sdk_version=f"otlp {sdk}".strip())


def parse_protobuf(body: bytes) -> ExportTraceServiceRequest:
    """An OTLP protobuf body (either transport) as a request."""
    try:
        request: ExportTraceServiceRequest = ExportTraceServiceRequest.FromString(body)
    except DecodeError as exc:
        raise OtlpError(f"the body is not a valid OTLP ExportTraceServiceRequest (bad wire "
                        f"format or invalid UTF-8 in a string field): {exc}") from None
    return request


# -------------------------------------------------------------------------- OTLP/JSON

_ID_FIELDS = ("traceId", "spanId", "parentSpanId", "trace_id", "span_id", "parent_span_id")


def parse_json(body: bytes) -> ExportTraceServiceRequest:
    """An OTLP/JSON body (https://opentelemetry.io/docs/specs/otlp/#json-protobuf-encoding)
    as a request. OTLP/JSON differs from protobuf's JSON mapping in one way that
    matters here: trace and span ids are hex, not base64."""
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise OtlpError(f"the body is not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise OtlpError("the body is not an OTLP/JSON ExportTraceServiceRequest object")
    for rs in _list(doc, "resourceSpans", "resource_spans"):
        for ss in _list(rs, "scopeSpans", "scope_spans"):
            for span in _list(ss, "spans"):
                _hex_ids_to_base64(span)
                for link in _list(span, "links"):
                    _hex_ids_to_base64(link)
    request = ExportTraceServiceRequest()
    try:
        json_format.ParseDict(doc, request, ignore_unknown_fields=True)
    except json_format.ParseError as exc:
        raise OtlpError(f"the body is not an OTLP/JSON ExportTraceServiceRequest: {exc}") \
            from None
    return request


def _list(obj: Any, *keys: str) -> list[Any]:
    if not isinstance(obj, dict):
        return []
    for k in keys:
        v = obj.get(k)
        if isinstance(v, list):
            return v
    return []


def _hex_ids_to_base64(obj: Any) -> None:
    if not isinstance(obj, dict):
        return
    for k in _ID_FIELDS:
        v: Optional[Any] = obj.get(k)
        if v is None or v == "":
            continue
        if not isinstance(v, str):
            raise OtlpError(f"{k} must be a hex string, not {type(v).__name__}")
        try:
            raw = binascii.unhexlify(v)
        except (binascii.Error, ValueError):
            raise OtlpError(f"{k} {v[:40]!r} is not hex (OTLP/JSON ids are hex)") from None
        obj[k] = base64.b64encode(raw).decode("ascii")


__all__ = ["OtlpBatch", "OtlpError", "parse_json", "parse_protobuf", "records_of", "views_of"]
