"""What the current code is working on: task and request (contextvars), and the
active OpenTelemetry span. Contextvars follow asyncio tasks; threads start
empty, as they do for OpenTelemetry (use contextvars.copy_context to carry over)."""

from __future__ import annotations

import contextvars
from typing import Optional

from opentelemetry import trace

_task_id: contextvars.ContextVar[Optional[str]] = contextvars.ContextVar("aitrail_task_id", default=None)
_request_id: contextvars.ContextVar[Optional[str]] = contextvars.ContextVar("aitrail_request_id",
                                                                          default=None)


class task:
    """``with aitrail.task("T-123", request_id="req-9"):`` -- tags every record inside."""

    def __init__(self, task_id: str, request_id: Optional[str] = None):
        if not isinstance(task_id, str) or not task_id:
            raise ValueError("task_id must be a non-empty string")
        self.task_id = task_id
        self.request_id = request_id
        self._tokens: list = []

    def __enter__(self) -> "task":
        tokens = [(_task_id, _task_id.set(self.task_id))]
        if self.request_id is not None:
            tokens.append((_request_id, _request_id.set(self.request_id)))
        self._tokens.append(tokens)
        return self

    def __exit__(self, *exc) -> None:
        for var, token in reversed(self._tokens.pop()):
            var.reset(token)

    async def __aenter__(self) -> "task":
        return self.__enter__()

    async def __aexit__(self, *exc) -> None:
        self.__exit__(*exc)


def current_task_id() -> Optional[str]:
    return _task_id.get()


def current_request_id() -> Optional[str]:
    return _request_id.get()


def span_ids() -> tuple[str, str, str]:
    """(trace_id, span_id, parent_span_id) of the active span, hex, or empty strings."""
    span = trace.get_current_span()
    ctx = span.get_span_context()
    if not ctx.is_valid:
        return "", "", ""
    parent = getattr(span, "parent", None)
    parent_id = format(parent.span_id, "016x") if parent is not None else ""
    return format(ctx.trace_id, "032x"), format(ctx.span_id, "016x"), parent_id
