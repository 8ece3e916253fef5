"""What the current code is working on: task and request (contextvars), and the
active OpenTelemetry span. Contextvars follow asyncio tasks; threads start
empty, as they do for OpenTelemetry (use contextvars.copy_context to carry over).

The caller's thread only *captures* these (:func:`scope`, :func:`otel_context`:
one contextvar read each); turning the OpenTelemetry context into hex ids
(:func:`span_ids_of`) is left to the background worker.
"""

from __future__ import annotations

import contextvars
from typing import Callable, Optional

from opentelemetry import context as _otel_context
from opentelemetry import trace
from opentelemetry.context.contextvars_context import ContextVarsRuntimeContext

_NO_SCOPE: tuple[Optional[str], Optional[str]] = (None, None)
# (task_id, request_id) in one variable, so capturing both is one read.
_scope: contextvars.ContextVar[tuple[Optional[str], Optional[str]]] = contextvars.ContextVar(
    "aitrail_scope", default=_NO_SCOPE)

#: ``scope()`` -> (task_id, request_id) of the running code, each None when unset.
scope = _scope.get


class task:
    """``with aitrail.task("T-123", request_id="req-9"):`` -- tags every record inside."""

    def __init__(self, task_id: str, request_id: Optional[str] = None):
        if not isinstance(task_id, str) or not task_id:
            raise ValueError("task_id must be a non-empty string")
        self.task_id = task_id
        self.request_id = request_id
        self._tokens: list[contextvars.Token[tuple[Optional[str], Optional[str]]]] = []

    def __enter__(self) -> "task":
        # Without its own request_id a task keeps the enclosing one.
        request_id = self.request_id if self.request_id is not None else _scope.get()[1]
        self._tokens.append(_scope.set((self.task_id, request_id)))
        return self

    def __exit__(self, *exc: object) -> None:
        _scope.reset(self._tokens.pop())

    async def __aenter__(self) -> "task":
        return self.__enter__()

    async def __aexit__(self, *exc: object) -> None:
        self.__exit__(*exc)


def current_task_id() -> Optional[str]:
    return _scope.get()[0]


def current_request_id() -> Optional[str]:
    return _scope.get()[1]


def _otel_getter() -> Callable[[], _otel_context.Context]:
    # The default OpenTelemetry runtime context is one ContextVar holding an
    # immutable Context; read it directly (one C call). Any other runtime
    # context (OTEL_PYTHON_CONTEXT) goes through the public API.
    runtime = getattr(_otel_context, "_RUNTIME_CONTEXT", None)
    var = getattr(runtime, "_current_context", None)
    if type(runtime) is ContextVarsRuntimeContext and isinstance(var, contextvars.ContextVar):
        return var.get
    return _otel_context.get_current


#: ``otel_context()`` -> the current OpenTelemetry Context. A Context is immutable
#: (setting a value makes a new one), so it can be read later, on another thread.
otel_context: Callable[[], _otel_context.Context] = _otel_getter()


def span_ids_of(ctx: Optional[_otel_context.Context]) -> tuple[str, str, str]:
    """(trace_id, span_id, parent_span_id), hex or empty strings, of the span that was
    active in a captured OpenTelemetry Context (None: no span)."""
    if ctx is None:
        return "", "", ""
    span = trace.get_current_span(ctx)
    span_context = span.get_span_context()
    if not span_context.is_valid:
        return "", "", ""
    parent = getattr(span, "parent", None)
    parent_id = format(parent.span_id, "016x") if parent is not None else ""
    return format(span_context.trace_id, "032x"), format(span_context.span_id, "016x"), parent_id


def span_ids() -> tuple[str, str, str]:
    """(trace_id, span_id, parent_span_id) of the active span, hex, or empty strings."""
    return span_ids_of(otel_context())
