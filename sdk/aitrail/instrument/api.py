"""The instrumentation API: what application code calls.

Every function here captures what it must at call time -- the clock, the task
and request, the OpenTelemetry context, the input as text -- into a small draft
object and hands it to the background worker; nothing on the caller's path does
network or disk I/O. The worker turns each draft into the dict that
:func:`aitrail.record.build.build_record` reads (``to_dict``): it formats the span ids,
makes the UUIDv7 of a model call or review from the start time captured on the
caller's thread, and redacts, all off the caller's path. Calls that return a
record id (escalate, resolve, data_access, event) make it on the caller's thread.
"""

from __future__ import annotations

import collections
import contextvars
import dataclasses
import functools
import inspect
import json
import logging
import threading
import time
from typing import Any, Callable, Mapping, Optional, TypeVar, Union

from aitrail.instrument import context
from aitrail.record.ids import uuid7
from aitrail.config import Config
from aitrail.export import STRICT, AuditUnavailable, BatchWorker, Exporter, GrpcExporter
from aitrail.export.delivery import Ack
from aitrail.record.build import build_record
from aitrail.record.redact import Redactor

_time_ns = time.time_ns
_scope = context.scope          # -> (task_id, request_id)
_otel = context.otel_context    # -> the OpenTelemetry Context, formatted on the worker

F = TypeVar("F", bound=Callable[..., Any])
log = logging.getLogger("aitrail")

DECISIONS = ("approve", "reject", "modify")


class _State:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.config: Optional[Config] = None
        self.worker: Optional[BatchWorker] = None
        self.shut_down = False  # after shutdown(), records are not sent until configure()
        # The caller's fast path: the worker's submit when records go to it without
        # waiting (enabled, not strict); None sends every record the slow way.
        self.submit: Optional[Callable[[Any], None]] = None


_state = _State()


def configure(*, exporter: Optional[Exporter] = None, **options: Any) -> Config:
    """Configure the SDK; unspecified options come from AITRAIL_* environment variables.

    Options: endpoint, service, service_version, environment, host, enabled,
    redaction, redaction_key (bytes or str), redaction_policy ({field: action}),
    reference_store (callable(field, value) -> reference), batch_size,
    flush_interval, max_queue, export_timeout, retry_for, delivery
    (durable | best_effort | strict), spool_dir, spool_max_bytes, strict_timeout,
    api_key, tls, ca_cert, client_cert, client_key (see aitrail.config).

    ``exporter``: send records through this ``aitrail.export.Exporter`` instead of
    gRPC to ``endpoint`` (e.g. an ``InMemoryExporter`` in tests).
    """
    config = Config.from_env()
    known = {f.name for f in dataclasses.fields(Config)}
    unknown = set(options) - known
    if unknown:
        raise TypeError(f"configure() got unknown option(s): {', '.join(sorted(unknown))}")
    for name, value in options.items():
        if name == "redaction_key" and isinstance(value, str):
            value = value.encode("utf-8")
        setattr(config, name, value)
    config.validate()
    redactor = Redactor(config.redaction_key, config.redaction_policy, config.reference_store,
                        enabled=config.redaction)
    if exporter is None:
        exporter = GrpcExporter(config.endpoint, config.export_timeout, api_key=config.api_key,
                                **config.read_tls())
    worker = BatchWorker(functools.partial(_build, config=config, redactor=redactor),
                         exporter, batch_size=config.batch_size,
                         flush_interval=config.flush_interval, max_queue=config.max_queue,
                         # Strict callers stop waiting after strict_timeout; retrying
                         # longer would only hold up the records behind theirs.
                         retry_for=(min(config.retry_for, config.strict_timeout)
                                    if config.delivery == STRICT else config.retry_for),
                         delivery=config.delivery,
                         spool_dir=config.spool_dir, spool_max_bytes=config.spool_max_bytes,
                         export_timeout=config.export_timeout)
    with _state.lock:
        old = _state.worker
        _state.config, _state.worker, _state.shut_down = config, worker, False
        _state.submit = worker.submit if config.enabled and config.delivery != STRICT else None
    if old is not None:
        old.shutdown()
    return config


def _worker() -> Optional[BatchWorker]:
    """The worker to hand records to, configuring from the environment on first use."""
    worker, config = _state.worker, _state.config
    if worker is None:
        if _state.shut_down:
            return None
        with _state.lock:
            configured = _state.worker is not None
        if not configured:
            configure()
        worker, config = _state.worker, _state.config
    return worker if config is not None and config.enabled else None


def _build(draft: Any, config: Config, redactor: Redactor):
    """On the worker: a draft (a dict, or a draft object with ``to_dict``) to a record."""
    return build_record(draft if type(draft) is dict else draft.to_dict(), config, redactor)


def _emit(draft: Any) -> None:
    submit = _state.submit
    if submit is not None:
        submit(draft)
        return
    _emit_slow(draft)


def _emit_slow(draft: Any) -> None:
    worker = _worker()
    if worker is None:
        return
    if worker.delivery != STRICT:
        worker.submit(draft)
        return
    # Strict: the caller may not go on until its record is durably stored.
    ack = Ack()
    worker.submit(draft, ack)
    ack.wait(_state.config.strict_timeout if _state.config else 5.0)


def flush(timeout: Optional[float] = None, spool: bool = True) -> bool:
    """Block until every record emitted so far was delivered (or given up on), and
    with ``spool=True`` until the durable spool is empty as well. Returns False if
    that did not happen within ``timeout`` seconds."""
    worker = _state.worker
    return True if worker is None else worker.flush(timeout, spool=spool)


def shutdown(timeout: float = 5.0) -> bool:
    """Flush and stop the background worker (also done at interpreter exit)."""
    with _state.lock:
        worker, _state.worker, _state.config, _state.submit = _state.worker, None, None, None
        _state.shut_down = True
    return True if worker is None else worker.shutdown(timeout)


def stats() -> dict[str, int]:
    """Delivery counters: queued, sent, spooled, replayed, rejected, dropped, pending,
    spool_bytes."""
    worker = _state.worker
    return worker.stats() if worker is not None else {}


class _Draft:
    """A record in the making, as the caller's thread captured it: event type, task
    and request, OpenTelemetry context, start and end time, and the event's own
    ``fields`` (a dict in :func:`aitrail.record.build.build_record`'s keys). The worker
    turns it into that function's dict with :meth:`to_dict`."""

    __slots__ = ("event_type", "record_id", "task_id", "scope", "otel", "start", "end",
                 "attributes", "fields")

    def __init__(self, event_type: str, task_id: Optional[str],
                 attributes: Optional[Mapping[str, Any]], fields: dict) -> None:
        self.event_type = event_type
        self.record_id: Optional[str] = None  # made on the worker unless the caller needs it
        self.scope = scope = _scope()
        self.task_id = task_id if task_id is not None else scope[0]
        self.otel = _otel()
        self.start = _time_ns()
        self.end: Optional[int] = None
        self.attributes = attributes
        self.fields = fields

    def to_dict(self) -> dict:
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


# ---------------------------------------------------------------- model calls

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


def _describe_args(args: tuple, kwargs: dict) -> str:
    # Serialised now, on the caller's thread: a chat history list appended to
    # after the call must not change what was recorded as sent. (A str is
    # immutable, so the common single-str call keeps it as it is.)
    if len(args) == 1 and not kwargs:
        return _as_text(args[0])
    if not args and len(kwargs) == 1:
        return _as_text(next(iter(kwargs.values())))
    return _as_text({"args": list(args), "kwargs": kwargs})


_current_call: contextvars.ContextVar[Optional["ModelCallRecord"]] = contextvars.ContextVar(
    "aitrail_current_call", default=None)
_set_call = _current_call.set
_reset_call = _current_call.reset


def current_call() -> Optional["ModelCallRecord"]:
    """The model call being recorded around the running code, if any."""
    return _current_call.get()


# Positions in model_call._static (provider, model, model_version, prompt_template_id,
# prompt_version, parameters, task_id, attributes): the spec's values as of the call.
_S_TASK_ID, _S_ATTRIBUTES = 6, 7


class ModelCallRecord:
    """One model call being recorded; ``record_input`` / ``record_output`` fill it.

    It is also the draft handed to the worker when the call ends: the input and
    output are kept as the text captured on the caller's thread, and the rarer
    fields (confidence, logprobs, usage, error, changed attributes) in ``_extra``.
    """

    __slots__ = ("_static", "_scope", "_otel", "_start", "_end", "_input", "_output",
                 "_extra", "_chunks", "_done", "_token", "_record_id")

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

    def _extras(self) -> dict:
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

    def to_dict(self) -> dict:
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
    get = usage.get if isinstance(usage, Mapping) else (lambda k: getattr(usage, k, None))
    inp = get("input_tokens") or get("prompt_tokens") or 0
    out = get("output_tokens") or get("completion_tokens") or 0
    return int(inp), int(out)


def _spec_field(index: int, name: str) -> property:
    def get(self: "model_call") -> Any:
        return self._static[index]

    def set(self: "model_call", value: Any) -> None:
        values = list(self._static)
        values[index] = value
        self._static = tuple(values)
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
        self._static = (provider, model, model_version, prompt_template_id, prompt_version,
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

    def __exit__(self, exc_type, exc, tb) -> None:
        call = _current_call.get()
        _reset_call(call._token)
        call._finish(exc)

    async def __aenter__(self) -> ModelCallRecord:
        return self.__enter__()

    async def __aexit__(self, exc_type, exc, tb) -> None:
        self.__exit__(exc_type, exc, tb)

    # -- decorator
    def __call__(self, fn: F) -> F:
        if inspect.isasyncgenfunction(fn):
            return self._wrap_async_gen(fn)
        if inspect.isgeneratorfunction(fn):
            return self._wrap_gen(fn)
        if inspect.iscoroutinefunction(fn):
            return self._wrap_async(fn)
        return self._wrap_sync(fn)

    def _start(self, args: tuple, kwargs: dict) -> ModelCallRecord:
        call = ModelCallRecord(self)
        if self.capture_input:
            call._input = (_as_text(self.input_from(*args, **kwargs)) if self.input_from
                           else _describe_args(args, kwargs))
        return call

    def _set_result(self, call: ModelCallRecord, result: Any) -> None:
        if self.capture_output and call._output is None:
            call._output = _as_text(self.output_from(result) if self.output_from else result)

    def _wrap_sync(self, fn):
        spec = self

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
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

    def _wrap_async(self, fn):
        @functools.wraps(fn)
        async def wrapper(*args, **kwargs):
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

    def _wrap_gen(self, fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
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

    def _wrap_async_gen(self, fn):
        @functools.wraps(fn)
        async def wrapper(*args, **kwargs):
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


def _with_current_call(call: ModelCallRecord, gen):
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


async def _with_current_call_async(call: ModelCallRecord, agen):
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


# ---------------------------------------------------------------- human review

@dataclasses.dataclass(frozen=True)
class Rationale:
    """Why a reviewer decided as they did."""
    reason_code: str = ""
    policy_ref: str = ""
    text: str = ""


RationaleLike = Union[Rationale, Mapping[str, str], str, None]


def _rationale(value: RationaleLike) -> Rationale:
    if value is None:
        return Rationale()
    if isinstance(value, Rationale):
        return value
    if isinstance(value, str):
        return Rationale(text=value)
    if isinstance(value, Mapping):
        unknown = set(value) - {"reason_code", "policy_ref", "text"}
        if unknown:
            raise ValueError(f"rationale: unknown key(s) {sorted(unknown)}; "
                             "use reason_code, policy_ref, text")
        return Rationale(**value)
    raise TypeError(f"rationale must be a str, a mapping or aitrail.Rationale, "
                    f"not {type(value).__name__}")


def _rationale_parts(value: RationaleLike) -> tuple[str, str, str]:
    """(reason_code, policy_ref, text); a plain str or None without building a Rationale."""
    if value is None:
        return "", "", ""
    if type(value) is str:
        return "", "", value
    why = _rationale(value)
    return why.reason_code, why.policy_ref, why.text


class review:
    """``with aitrail.review(task_id=..., reviewer=...) as r: r.approve(...)``.

    Time spent runs from entering the block to the decision, unless the caller
    measured it elsewhere (a review UI) and passes ``time_spent_ms``. Leaving
    the block without a decision records decision ``none``.
    """

    def __init__(self, task_id: Optional[str] = None, *, reviewer: str,
                 original_output: Optional[str] = None, time_spent_ms: Optional[int] = None,
                 attributes: Optional[Mapping[str, Any]] = None):
        if not reviewer or not isinstance(reviewer, str):
            raise ValueError("review: reviewer must be a non-empty string")
        if time_spent_ms is not None and (not isinstance(time_spent_ms, int) or time_spent_ms < 0):
            raise ValueError("review: time_spent_ms must be a non-negative int")
        self._time_spent_ms = time_spent_ms
        self._task_id = task_id
        self._reviewer = reviewer
        self._original = original_output
        self._attributes = attributes
        self._draft: Optional[_Draft] = None
        self._t0 = 0

    def __enter__(self) -> "review":
        self._draft = _Draft("review", self._task_id, self._attributes,
                             {"reviewer_id": self._reviewer})
        self._t0 = time.monotonic_ns()
        return self

    def _decide(self, decision: str, rationale: RationaleLike, output: Optional[str] = None) -> None:
        draft = self._draft
        if draft is None:
            raise RuntimeError("review: decide inside the 'with' block")
        d = draft.fields
        if d.get("decision"):
            raise RuntimeError(f"review: decision already recorded ({d['decision']})")
        reason_code, policy_ref, text = _rationale_parts(rationale)
        d["decision"] = decision
        d["time_spent_ms"] = self._elapsed_ms()
        d["reason_code"], d["policy_ref"], d["rationale"] = reason_code, policy_ref, text
        if output is not None:
            d["modified_output"] = _as_text(output)
            original = self._original
            if original is None:
                original = _last_output.get(draft.task_id or "")
            d["original"] = original

    def _elapsed_ms(self) -> int:
        if self._time_spent_ms is not None:
            return self._time_spent_ms
        return (time.monotonic_ns() - self._t0) // 1_000_000

    def approve(self, rationale: RationaleLike = None) -> None:
        self._decide("approve", rationale)

    def reject(self, rationale: RationaleLike = None) -> None:
        self._decide("reject", rationale)

    def modify(self, output: Any, rationale: RationaleLike = None) -> None:
        self._decide("modify", rationale, output)

    def __exit__(self, exc_type, exc, tb) -> None:
        draft = self._draft
        d = draft.fields
        if not d.get("decision"):
            d["decision"] = "none"
            d["time_spent_ms"] = self._elapsed_ms()
        if exc is not None:
            d["error_type"], d["error_message"] = type(exc).__qualname__, str(exc)
        draft.end = _time_ns()
        _emit(draft)

    async def __aenter__(self) -> "review":
        return self.__enter__()

    async def __aexit__(self, exc_type, exc, tb) -> None:
        self.__exit__(exc_type, exc, tb)


# ---------------------------------------------------------------- single events

def _require(**values: Any) -> None:
    for name, value in values.items():
        if not isinstance(value, str) or not value:
            raise ValueError(f"{name} must be a non-empty string")


def _emit_with_id(draft: _Draft) -> str:
    # These calls return the record id, so it is made now, on the caller's thread.
    draft.record_id = record_id = uuid7(draft.start)
    _emit(draft)
    return record_id


def escalate(task_id: Optional[str] = None, *, from_reviewer: str, to_reviewer: str,
             reason: str = "", attributes: Optional[Mapping[str, Any]] = None) -> str:
    """Record that a task was handed from one reviewer to another. Returns the record id."""
    _require(from_reviewer=from_reviewer, to_reviewer=to_reviewer)
    return _emit_with_id(_Draft("escalation", task_id, attributes, {
        "escalation_from": from_reviewer, "escalation_to": to_reviewer,
        "escalation_reason": reason}))


def resolve(task_id: Optional[str] = None, *, resolution: str, final_decision: str = "",
            attributes: Optional[Mapping[str, Any]] = None) -> str:
    """Record how a task ended. Returns the record id."""
    _require(resolution=resolution)
    return _emit_with_id(_Draft("resolution", task_id, attributes, {
        "resolution_outcome": resolution, "final_decision": final_decision}))


def data_access(*, actor: str, resource: str, purpose: str, task_id: Optional[str] = None,
                attributes: Optional[Mapping[str, Any]] = None) -> str:
    """Record that someone read protected data (SOC 2 / HIPAA access log)."""
    _require(actor=actor, resource=resource, purpose=purpose)
    return _emit_with_id(_Draft("data_access", task_id, attributes, {
        "actor": actor, "resource": resource, "purpose": purpose}))


def event(event_type: str, *, task_id: Optional[str] = None,
          attributes: Optional[Mapping[str, Any]] = None) -> str:
    """Record another kind of event (for example ``task_created``)."""
    _require(event_type=event_type)
    return _emit_with_id(_Draft(event_type, task_id, attributes, {}))
