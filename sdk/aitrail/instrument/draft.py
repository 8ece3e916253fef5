"""What the caller's thread captures of an event: a draft the worker turns into a
record, and the text of inputs and outputs as they were at call time."""

from __future__ import annotations

import collections
import json
import time
from typing import Any, Mapping, Optional

from aitrail.instrument import context
from aitrail.record.ids import uuid7

_time_ns = time.time_ns
_scope = context.scope          # -> (task_id, request_id)
_otel = context.otel_context    # -> the OpenTelemetry Context, formatted on the worker


class _Draft:
    """A record in the making, as the caller's thread captured it: event type, task
    and request, OpenTelemetry context, start and end time, and the event's own
    ``fields`` (a dict in :func:`aitrail.record.build.build_record`'s keys). The worker
    turns it into that function's dict with :meth:`to_dict`."""

    __slots__ = ("event_type", "record_id", "task_id", "scope", "otel", "start", "end",
                 "attributes", "fields")

    def __init__(self, event_type: str, task_id: Optional[str],
                 attributes: Optional[Mapping[str, Any]], fields: dict[str, Any]) -> None:
        self.event_type = event_type
        self.record_id: Optional[str] = None  # made on the worker unless the caller needs it
        self.scope = scope = _scope()
        self.task_id = task_id if task_id is not None else scope[0]
        self.otel = _otel()
        self.start = _time_ns()
        self.end: Optional[int] = None
        self.attributes = attributes
        self.fields = fields

    def to_dict(self) -> dict[str, Any]:
        record_id = self.record_id
        if record_id is None:
            self.record_id = record_id = uuid7(self.start)
        trace_id, span_id, parent_id = context.span_ids_of(self.otel)
        d = {"record_id": record_id, "event_type": self.event_type, "task_id": self.task_id,
             "request_id": self.scope[1], "trace_id": trace_id, "span_id": span_id,
             "parent_span_id": parent_id, "start": self.start, "end": self.end,
             "attributes": self.attributes}
        d.update(self.fields)
        return d

    def get(self, key: str, default: Any = None) -> Any:
        # BatchWorker logs draft.get("record_id") when a draft cannot be built.
        return self.record_id if key == "record_id" else default


# The last model output per task, so a later review in this process can show a
# diff without the caller passing the original. Bounded; best effort.
_last_output: "collections.OrderedDict[str, str]" = collections.OrderedDict()
_LAST_OUTPUT_MAX = 4096


def _as_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, default=repr, ensure_ascii=False)
    except (TypeError, ValueError):
        return repr(value)


def _describe_args(args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
    # Serialised now, on the caller's thread: a chat history list appended to
    # after the call must not change what was recorded as sent. (A str is
    # immutable, so the common single-str call keeps it as it is.)
    if len(args) == 1 and not kwargs:
        return _as_text(args[0])
    if not args and len(kwargs) == 1:
        return _as_text(next(iter(kwargs.values())))
    return _as_text({"args": list(args), "kwargs": kwargs})
