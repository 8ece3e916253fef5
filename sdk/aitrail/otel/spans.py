"""A span as the mapping reads it, whichever way it arrived.

The OTLP receiver makes these from protobuf (:mod:`aitrail.otel.otlp`), the span
processor from the SDK's ``ReadableSpan`` (:mod:`aitrail.otel.processor`); the
mapping (:mod:`aitrail.otel.mapping`) sees only this, so both ways in give the
same records.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

#: An attribute value: str, bool, int, float, a tuple of those, or a dict (OTLP kvlist).
Attributes = Mapping[str, Any]

STATUS_UNSET, STATUS_OK, STATUS_ERROR = 0, 1, 2


@dataclass(frozen=True)
class EventView:
    name: str
    time_ns: int
    attributes: Attributes = field(default_factory=dict)


@dataclass(frozen=True)
class SpanView:
    trace_id: str                    # 32 lowercase hex digits
    span_id: str                     # 16 lowercase hex digits
    parent_span_id: str              # 16 hex digits, or "" for a root span
    name: str
    start_ns: int
    end_ns: int
    attributes: Attributes = field(default_factory=dict)
    events: tuple[EventView, ...] = ()
    status_code: int = STATUS_UNSET
    status_message: str = ""
    resource: Attributes = field(default_factory=dict)
    scope: str = ""
