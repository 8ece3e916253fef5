"""``AuditSpanProcessor``: the GenAI spans of an application's own tracer provider
become audit records, in process, with no network hop to an OTel collector::

    from opentelemetry.sdk.trace import TracerProvider
    import aitrail
    from aitrail.otel import AuditSpanProcessor

    aitrail.configure(endpoint="collector:4327", delivery="durable")
    provider = TracerProvider()
    provider.add_span_processor(AuditSpanProcessor())

The records take the SDK's normal path (redaction, delivery mode, spool), so they
are delivered, retried and spooled like those of ``@aitrail.model_call``. On the
span's thread the processor only decides whether the span is GenAI and queues it;
the mapping (:mod:`aitrail.otel.mapping`) runs on the SDK's background worker.

The task id: a span's ``aitrail.task_id`` attribute, else the ``aitrail.task_id``
baggage entry or the enclosing ``aitrail.task(...)`` when the span started (copied
onto the span then), else the conversation or session id (``MappingOptions``).
"""

from __future__ import annotations

from typing import Any, Optional

from opentelemetry import baggage
from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor

from aitrail.instrument import setup
from aitrail.instrument.context import scope
from aitrail.otel.mapping import (
    EVALUATION_EVENT,
    MappingOptions,
    drafts_for,
    is_genai_model_call,
)
from aitrail.otel.spans import EventView, SpanView

TASK_KEY, REQUEST_KEY = "aitrail.task_id", "aitrail.request_id"


class AuditSpanProcessor(SpanProcessor):
    """Makes audit records of the GenAI spans a ``TracerProvider`` ends."""

    def __init__(self, options: MappingOptions = MappingOptions()) -> None:
        self.options = options

    def on_start(self, span: Span, parent_context: Optional[Context] = None) -> None:
        attrs = span.attributes or {}
        task_id, request_id = scope()
        task_id = task_id or _baggage(TASK_KEY, parent_context)
        request_id = request_id or _baggage(REQUEST_KEY, parent_context)
        if task_id and TASK_KEY not in attrs:
            span.set_attribute(TASK_KEY, task_id)
        if request_id and REQUEST_KEY not in attrs:
            span.set_attribute(REQUEST_KEY, request_id)

    def on_end(self, span: ReadableSpan) -> None:
        attrs = span.attributes or {}
        count = int(is_genai_model_call(attrs)) + sum(
            1 for e in span.events if e.name == EVALUATION_EVENT)
        if count == 0 or not span.context or not span.context.is_valid:
            return
        mapped = _Mapped(span, self.options)
        for index in range(count):
            setup._emit(_SpanDraft(mapped, index))

    def shutdown(self) -> None:
        """The SDK's worker outlives the tracer provider: ``aitrail.shutdown()`` stops it."""

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return setup.flush(timeout_millis / 1000)


def _baggage(key: str, context: Optional[Context]) -> Optional[str]:
    value = baggage.get_baggage(key, context)
    return str(value) if value else None


class _Mapped:
    """A span's drafts, made once on the worker for all of its records."""

    __slots__ = ("span", "options", "_drafts")

    def __init__(self, span: ReadableSpan, options: MappingOptions) -> None:
        self.span, self.options = span, options
        self._drafts: Optional[list[dict[str, Any]]] = None

    def drafts(self) -> list[dict[str, Any]]:
        if self._drafts is None:
            self._drafts = drafts_for(view_of(self.span), self.options)
        return self._drafts


class _SpanDraft:
    """One record of a span, mapped on the worker (``to_dict``) as SDK drafts are."""

    __slots__ = ("mapped", "index")

    def __init__(self, mapped: _Mapped, index: int) -> None:
        self.mapped, self.index = mapped, index

    def to_dict(self) -> dict[str, Any]:
        d = dict(self.mapped.drafts()[self.index])
        d.update(_origin(self.mapped.span))
        return d

    def get(self, key: str, default: Any = None) -> Any:
        # BatchWorker logs draft.get("record_id") when a draft cannot be built.
        drafts = self.mapped._drafts
        return drafts[self.index].get(key, default) if drafts else default


def view_of(span: ReadableSpan) -> SpanView:
    """A finished SDK span as the mapping reads it."""
    ctx = span.context
    assert ctx is not None  # on_end checked it
    parent = span.parent
    return SpanView(
        trace_id=format(ctx.trace_id, "032x"), span_id=format(ctx.span_id, "016x"),
        parent_span_id=format(parent.span_id, "016x") if parent is not None else "",
        name=span.name, start_ns=span.start_time or 0, end_ns=span.end_time or 0,
        attributes=dict(span.attributes or {}),
        events=tuple(EventView(e.name, e.timestamp, dict(e.attributes or {}))
                     for e in span.events),
        status_code=span.status.status_code.value, status_message=span.status.description or "",
        resource=dict(span.resource.attributes),
        scope=span.instrumentation_scope.name if span.instrumentation_scope else "")


def _origin(span: ReadableSpan) -> dict[str, str]:
    """Service, version, environment and host from the span's resource, where it
    names them (else the SDK's configuration does)."""
    r = span.resource.attributes
    out = {"service": r.get("service.name"), "service_version": r.get("service.version"),
           "environment": r.get("deployment.environment.name") or r.get("deployment.environment"),
           "host": r.get("host.name")}
    if out["service"] == "unknown_service" or str(out["service"]).startswith("unknown_service:"):
        out["service"] = None  # the OTel SDK's placeholder: let aitrail's config decide
    return {k: str(v) for k, v in out.items() if v}
