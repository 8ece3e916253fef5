"""``aitrail.model_call``: a decorator (sync, async, generator, async generator) or
a context manager that records one model call."""

from __future__ import annotations

import contextvars
import functools
import inspect
import logging
from types import TracebackType
from typing import (
    Any,
    AsyncGenerator,
    AsyncIterator,
    Callable,
    Final,
    Generator,
    Iterator,
    Mapping,
    Optional,
    TypeVar,
    cast,
)

from opentelemetry.context import Context

from aitrail.export import AuditUnavailable
from aitrail.instrument import context
from aitrail.instrument.draft import (
    _LAST_OUTPUT_MAX,
    _as_text,
    _describe_args,
    _last_output,
    _otel,
    _scope,
    _time_ns,
)
from aitrail.instrument.setup import _emit_slow, _state
from aitrail.record.ids import uuid7

F = TypeVar("F", bound=Callable[..., Any])
log = logging.getLogger("aitrail")


_current_call: contextvars.ContextVar[Optional["ModelCallRecord"]] = contextvars.ContextVar(
    "aitrail_current_call", default=None)
_set_call = _current_call.set
_reset_call = _current_call.reset


def current_call() -> Optional["ModelCallRecord"]:
    """The model call being recorded around the running code, if any."""
    return _current_call.get()


# model_call._static: (provider, model, model_version, prompt_template_id,
# prompt_version, parameters, task_id, attributes), the spec's values as of the call.
_Static = tuple[str, str, str, str, str, Optional[dict[str, Any]], Optional[str],
                Optional[dict[str, Any]]]
# Positions in it (Final, so mypy knows each position's type).
_S_TASK_ID: Final = 6
_S_ATTRIBUTES: Final = 7


class ModelCallRecord:
    """One model call being recorded; ``record_input`` / ``record_output`` fill it.

    It is also the draft handed to the worker when the call ends: the input and
    output are kept as the text captured on the caller's thread, and the rarer
    fields (confidence, logprobs, usage, error, changed attributes) in ``_extra``.
    """

    __slots__ = ("_static", "_scope", "_otel", "_start", "_end", "_input", "_output",
                 "_extra", "_chunks", "_done", "_token", "_record_id")
    # The slots' types, for mypy: annotations without values make no class attributes.
    _static: _Static
    _scope: tuple[Optional[str], Optional[str]]
    _otel: Context
    _start: int
    _end: Optional[int]
    _input: Optional[str]
    _output: Optional[str]
    _extra: Optional[dict[str, Any]]
    _chunks: Optional[list[str]]
    _done: bool
    _token: Optional[contextvars.Token[Optional[ModelCallRecord]]]
    _record_id: Optional[str]

    def __init__(self, spec: "model_call"):
        self._static = spec._static
        self._scope = _scope()
        self._otel = _otel()
        self._start = _time_ns()
        # _input, _output: text, None when not recorded; _extra: rarer fields;
        # _record_id: made by the worker, from the start time.
        self._end = self._input = self._output = self._extra = self._chunks = \
            self._token = self._record_id = None
        self._done = False

    def _extras(self) -> dict[str, Any]:
        extra = self._extra
        if extra is None:
            self._extra = extra = {}
        return extra

    def record_input(self, value: Any) -> None:
        self._input = _as_text(value)

    def record_output(self, text: Any, *, confidence: Optional[float] = None,
                      logprobs: Any = None, usage: Any = None) -> None:
        self._output = _as_text(text)
        if confidence is None and logprobs is None and usage is None:
            return
        d = self._extras()
        if confidence is not None:
            d["confidence"] = float(confidence)
        if logprobs is not None:
            d["logprobs"] = list(logprobs)
        if usage is not None:
            d["input_tokens"], d["output_tokens"] = _usage(usage)

    def set_attribute(self, key: str, value: Any) -> None:
        d = self._extras()
        attrs = d.get("attributes")
        if attrs is None:
            d["attributes"] = attrs = dict(self._static[_S_ATTRIBUTES] or {})
        attrs[key] = value

    def _add_chunk(self, chunk: Any) -> None:
        if self._chunks is None:
            self._chunks = []
        self._chunks.append(chunk if isinstance(chunk, str) else _as_text(chunk))

    def _task_id(self) -> Optional[str]:
        task_id = self._static[_S_TASK_ID]
        return task_id if task_id is not None else self._scope[0]

    def _finish(self, error: Optional[BaseException] = None) -> None:
        if self._done:
            return
        self._done = True
        self._end = _time_ns()
        output = self._output
        if self._chunks is not None and output is None:
            self._output = output = "".join(self._chunks)
            self._extras()["streamed"] = True
        if error is not None:
            d = self._extras()
            d["error_type"] = type(error).__qualname__
            d["error_message"] = str(error)
        if output is not None:  # for a later review's diff (see _last_output)
            task_id = self._static[_S_TASK_ID]
            if task_id is None:
                task_id = self._scope[0]
            if task_id:
                _last_output[task_id] = output
                if len(_last_output) > _LAST_OUTPUT_MAX:
                    _last_output.popitem(last=False)
        submit = _state.submit  # _emit, inlined
        if submit is not None:
            submit(self)
        else:
            _emit_slow(self)

    def to_dict(self) -> dict[str, Any]:
        """On the worker: the dict :func:`aitrail.record.build.build_record` reads."""
        (provider, model, model_version, prompt_template_id, prompt_version, parameters,
         _, attributes) = self._static
        record_id = self._record_id
        if record_id is None:
            self._record_id = record_id = uuid7(self._start)
        trace_id, span_id, parent_id = context.span_ids_of(self._otel)
        d = {"record_id": record_id, "event_type": "model_call", "task_id": self._task_id(),
             "request_id": self._scope[1], "trace_id": trace_id, "span_id": span_id,
             "parent_span_id": parent_id, "start": self._start, "end": self._end,
             "attributes": attributes, "provider": provider, "model": model,
             "model_version": model_version, "prompt_template_id": prompt_template_id,
             "prompt_version": prompt_version, "parameters": parameters}
        if self._input is not None:
            d["input"] = self._input
        if self._output is not None:
            d["output"] = self._output
        if self._extra:
            d.update(self._extra)
        return d

    def get(self, key: str, default: Any = None) -> Any:
        # BatchWorker logs draft.get("record_id") when a draft cannot be built.
        return self._record_id if key == "record_id" else default


def _usage(usage: Any) -> tuple[int, int]:
    get: Callable[[str], Any] = (usage.get if isinstance(usage, Mapping)
                                 else (lambda k: getattr(usage, k, None)))
    inp = get("input_tokens") or get("prompt_tokens") or 0
    out = get("output_tokens") or get("completion_tokens") or 0
    return int(inp), int(out)


def _spec_field(index: int, name: str) -> property:
    def get(self: "model_call") -> Any:
        return self._static[index]

    def set(self: "model_call", value: Any) -> None:
        values: list[Any] = list(self._static)
        values[index] = value
        self._static = cast(_Static, tuple(values))  # the same shape, one value replaced
    return property(get, set, doc=f"The {name} recorded by calls made from now on.")


class model_call:
    """Record a model call: a decorator (sync, async, generator, async generator)
    or a context manager yielding a :class:`ModelCallRecord`.

    By default the call's arguments are recorded as its input and its return
    value (or, for a stream, the concatenated chunks) as its output; pass
    ``input_from`` / ``output_from`` to extract them, or ``capture_input=False``.
    An exception is recorded and re-raised unchanged.
    """

    def __init__(self, model: str = "", *, model_version: str = "", prompt_version: str = "",
                 provider: str = "", prompt_template_id: str = "",
                 parameters: Optional[Mapping[str, Any]] = None, task_id: Optional[str] = None,
                 attributes: Optional[Mapping[str, Any]] = None, capture_input: bool = True,
                 capture_output: bool = True,
                 input_from: Optional[Callable[..., Any]] = None,
                 output_from: Optional[Callable[[Any], Any]] = None):
        # The record's fixed fields, one tuple that each call takes as it starts, so
        # a call records the spec as it was when the call was made; they read and
        # set as attributes (provider, model, ...: see _spec_field below).
        self._static: _Static = (
            provider, model, model_version, prompt_template_id, prompt_version,
            dict(parameters) if parameters else None, task_id,
            dict(attributes) if attributes else None)
        self.capture_input = capture_input
        self.capture_output = capture_output
        self.input_from = input_from
        self.output_from = output_from

    provider = _spec_field(0, "provider")
    model = _spec_field(1, "model")
    model_version = _spec_field(2, "model version")
    prompt_template_id = _spec_field(3, "prompt template id")
    prompt_version = _spec_field(4, "prompt version")
    parameters = _spec_field(5, "parameters")
    task_id = _spec_field(6, "task id (None: the current task)")
    attributes = _spec_field(7, "attributes")

    # -- context manager: the call being exited is always the current one, so
    # one spec object can be entered by many threads or tasks at once.
    def __enter__(self) -> ModelCallRecord:
        call = ModelCallRecord(self)
        call._token = _set_call(call)
        return call

    def __exit__(self, exc_type: Optional[type[BaseException]], exc: Optional[BaseException],
                 tb: Optional[TracebackType]) -> None:
        # The call being exited is the current one, with the token __enter__ set:
        # not checked at run time (an assert or cast is work on every call's path).
        call: ModelCallRecord = _current_call.get()  # type: ignore[assignment]
        _reset_call(call._token)  # type: ignore[arg-type]
        call._finish(exc)

    async def __aenter__(self) -> ModelCallRecord:
        return self.__enter__()

    async def __aexit__(self, exc_type: Optional[type[BaseException]],
                        exc: Optional[BaseException], tb: Optional[TracebackType]) -> None:
        self.__exit__(exc_type, exc, tb)

    # -- decorator
    # Each wrapper takes fn's arguments and returns (or yields) what fn does, and
    # functools.wraps gives it fn's metadata: it stands for fn, so it is cast to F
    # (once, when decorating; not on the calls).
    def __call__(self, fn: F) -> F:
        if inspect.isasyncgenfunction(fn):
            return cast(F, self._wrap_async_gen(fn))
        if inspect.isgeneratorfunction(fn):
            return cast(F, self._wrap_gen(fn))
        if inspect.iscoroutinefunction(fn):
            return cast(F, self._wrap_async(fn))
        return cast(F, self._wrap_sync(fn))

    def _start(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> ModelCallRecord:
        call = ModelCallRecord(self)
        if self.capture_input:
            call._input = (_as_text(self.input_from(*args, **kwargs)) if self.input_from
                           else _describe_args(args, kwargs))
        return call

    def _set_result(self, call: ModelCallRecord, result: Any) -> None:
        if self.capture_output and call._output is None:
            call._output = _as_text(self.output_from(result) if self.output_from else result)

    def _wrap_sync(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        spec = self

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            # _start and _set_result inlined for the common case: one str in, one out.
            call = ModelCallRecord(spec)
            if spec.capture_input:
                if spec.input_from is None and not kwargs and len(args) == 1 \
                        and type(args[0]) is str:
                    call._input = args[0]
                else:
                    call._input = (_as_text(spec.input_from(*args, **kwargs)) if spec.input_from
                                   else _describe_args(args, kwargs))
            token = _set_call(call)
            try:
                result = fn(*args, **kwargs)
            except BaseException as exc:
                _finish_failed(call, exc)
                raise
            finally:
                _reset_call(token)
            if spec.capture_output and call._output is None:
                if spec.output_from is None and type(result) is str:
                    call._output = result
                else:
                    call._output = _as_text(spec.output_from(result) if spec.output_from
                                            else result)
            call._finish()
            return result
        return wrapper

    def _wrap_async(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            call = self._start(args, kwargs)
            token = _set_call(call)
            try:
                result = await fn(*args, **kwargs)
            except BaseException as exc:
                _finish_failed(call, exc)
                raise
            finally:
                _reset_call(token)
            self._set_result(call, result)
            call._finish()
            return result
        return wrapper

    def _wrap_gen(self, fn: Callable[..., Any]) -> Callable[..., Iterator[Any]]:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Iterator[Any]:
            call = self._start(args, kwargs)
            error: Optional[BaseException] = None
            try:
                for chunk in _with_current_call(call, fn(*args, **kwargs)):
                    if self.capture_output:
                        call._add_chunk(self.output_from(chunk) if self.output_from else chunk)
                    yield chunk
            except BaseException as exc:  # includes GeneratorExit: the consumer stopped early
                error = None if isinstance(exc, GeneratorExit) else exc
                raise
            finally:
                call._extras()["streamed"] = True
                call._finish(error)
        return wrapper

    def _wrap_async_gen(self, fn: Callable[..., Any]) -> Callable[..., AsyncIterator[Any]]:
        @functools.wraps(fn)
        async def wrapper(*args: Any, **kwargs: Any) -> AsyncIterator[Any]:
            call = self._start(args, kwargs)
            error: Optional[BaseException] = None
            try:
                async for chunk in _with_current_call_async(call, fn(*args, **kwargs)):
                    if self.capture_output:
                        call._add_chunk(self.output_from(chunk) if self.output_from else chunk)
                    yield chunk
            except BaseException as exc:
                error = None if isinstance(exc, GeneratorExit) else exc
                raise
            finally:
                call._extras()["streamed"] = True
                call._finish(error)
        return wrapper


def _finish_failed(call: ModelCallRecord, exc: BaseException) -> None:
    # The call's own exception is what the caller must see, unchanged; in strict
    # mode an audit failure on top of it is logged, not raised over it.
    try:
        call._finish(exc)
    except AuditUnavailable as audit_exc:
        log.error("aitrail: could not audit a failed model call: %s", audit_exc)


def _with_current_call(call: ModelCallRecord, gen: Generator[Any, Any, Any]) -> Iterator[Any]:
    # A generator's body runs in its consumer's context, so the current call is
    # set around each step: the body can record confidence, logprobs, usage.
    try:
        while True:
            token = _set_call(call)
            try:
                chunk = next(gen)
            except StopIteration:
                return
            finally:
                _reset_call(token)
            yield chunk
    finally:
        gen.close()


async def _with_current_call_async(call: ModelCallRecord,
                                   agen: AsyncGenerator[Any, Any]) -> AsyncIterator[Any]:
    try:
        while True:
            token = _set_call(call)
            try:
                chunk = await agen.__anext__()
            except StopAsyncIteration:
                return
            finally:
                _reset_call(token)
            yield chunk
    finally:
        await agen.aclose()
