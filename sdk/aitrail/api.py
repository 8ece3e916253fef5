"""The instrumentation API: what application code calls.

Every function here builds a draft dict and hands it to the background worker;
nothing on the caller's path does network or disk I/O.
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

from aitrail import context
from aitrail._ids import uuid7
from aitrail.config import Config
from aitrail.record import build_record
from aitrail.redact import Redactor
from aitrail.transport import STRICT, Ack, AuditUnavailable, BatchWorker, GrpcExporter

F = TypeVar("F", bound=Callable[..., Any])
log = logging.getLogger("aitrail")

DECISIONS = ("approve", "reject", "modify")


class _State:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.config: Optional[Config] = None
        self.worker: Optional[BatchWorker] = None
        self.shut_down = False  # after shutdown(), records are not sent until configure()


_state = _State()


def configure(**options: Any) -> Config:
    """Configure the SDK; unspecified options come from AITRAIL_* environment variables.

    Options: endpoint, service, service_version, environment, host, enabled,
    redaction, redaction_key (bytes or str), redaction_policy ({field: action}),
    reference_store (callable(field, value) -> reference), batch_size,
    flush_interval, max_queue, export_timeout, retry_for, delivery
    (durable | best_effort | strict), spool_dir, spool_max_bytes, strict_timeout,
    api_key, tls, ca_cert, client_cert, client_key (see aitrail.config).
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
    exporter = GrpcExporter(config.endpoint, config.export_timeout, api_key=config.api_key,
                            **config.read_tls())
    worker = BatchWorker(functools.partial(build_record, config=config, redactor=redactor),
                         exporter, batch_size=config.batch_size,
                         flush_interval=config.flush_interval, max_queue=config.max_queue,
                         # Strict callers stop waiting after strict_timeout; retrying
                         # longer would only hold up the records behind theirs.
                         retry_for=(min(config.retry_for, config.strict_timeout)
                                    if config.delivery == STRICT else config.retry_for),
                         delivery=config.delivery,
                         spool_dir=config.spool_dir, spool_max_bytes=config.spool_max_bytes)
    with _state.lock:
        old = _state.worker
        _state.config, _state.worker, _state.shut_down = config, worker, False
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


def _emit(draft: dict) -> None:
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
        worker, _state.worker, _state.config = _state.worker, None, None
        _state.shut_down = True
    return True if worker is None else worker.shutdown(timeout)


def stats() -> dict[str, int]:
    """Delivery counters: queued, sent, spooled, replayed, rejected, dropped, pending,
    spool_bytes."""
    worker = _state.worker
    return worker.stats() if worker is not None else {}


def _base(event_type: str, task_id: Optional[str], attributes: Optional[Mapping[str, Any]],
          start: Optional[int] = None) -> dict:
    trace_id, span_id, parent_id = context.span_ids()
    return {
        "record_id": uuid7(), "event_type": event_type,
        "task_id": task_id if task_id is not None else context.current_task_id(),
        "request_id": context.current_request_id(),
        "trace_id": trace_id, "span_id": span_id, "parent_span_id": parent_id,
        "start": start if start is not None else time.time_ns(),
        "attributes": attributes,
    }


# ---------------------------------------------------------------- model calls

# The last model output per task, so a later review in this process can show a
# diff without the caller passing the original. Bounded; best effort.
_last_output: "collections.OrderedDict[str, str]" = collections.OrderedDict()
_LAST_OUTPUT_MAX = 4096


def _remember_output(task_id: Optional[str], output: Optional[str]) -> None:
    if task_id and output is not None:
        _last_output[task_id] = output
        if len(_last_output) > _LAST_OUTPUT_MAX:
            _last_output.popitem(last=False)


def _as_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, default=repr, ensure_ascii=False)
    except (TypeError, ValueError):
        return repr(value)


def _describe_args(args: tuple, kwargs: dict) -> str:
    # Serialised now, on the caller's thread: a chat history list appended to
    # after the call must not change what was recorded as sent.
    if len(args) == 1 and not kwargs:
        return _as_text(args[0])
    if not args and len(kwargs) == 1:
        return _as_text(next(iter(kwargs.values())))
    return _as_text({"args": list(args), "kwargs": kwargs})


_current_call: contextvars.ContextVar[Optional["ModelCallRecord"]] = contextvars.ContextVar(
    "aitrail_current_call", default=None)


def current_call() -> Optional["ModelCallRecord"]:
    """The model call being recorded around the running code, if any."""
    return _current_call.get()


class ModelCallRecord:
    """One model call being recorded; ``record_input`` / ``record_output`` fill it."""

    __slots__ = ("_draft", "_chunks", "_done", "_token")

    def __init__(self, spec: "model_call"):
        d = _base("model_call", spec.task_id, spec.attributes)
        d["provider"] = spec.provider
        d["model"] = spec.model
        d["model_version"] = spec.model_version
        d["prompt_template_id"] = spec.prompt_template_id
        d["prompt_version"] = spec.prompt_version
        d["parameters"] = spec.parameters
        self._draft = d
        self._chunks: Optional[list] = None
        self._done = False
        self._token: Optional[contextvars.Token] = None

    def record_input(self, value: Any) -> None:
        self._draft["input"] = _as_text(value)

    def record_output(self, text: Any, *, confidence: Optional[float] = None,
                      logprobs: Any = None, usage: Any = None) -> None:
        d = self._draft
        d["output"] = _as_text(text)
        if confidence is not None:
            d["confidence"] = float(confidence)
        if logprobs is not None:
            d["logprobs"] = list(logprobs)
        if usage is not None:
            d["input_tokens"], d["output_tokens"] = _usage(usage)

    def set_attribute(self, key: str, value: Any) -> None:
        attrs = self._draft.get("attributes")
        self._draft["attributes"] = attrs = dict(attrs or {})
        attrs[key] = value

    def _add_chunk(self, chunk: Any) -> None:
        if self._chunks is None:
            self._chunks = []
        self._chunks.append(chunk if isinstance(chunk, str) else _as_text(chunk))

    def _finish(self, error: Optional[BaseException] = None) -> None:
        if self._done:
            return
        self._done = True
        d = self._draft
        d["end"] = time.time_ns()
        if self._chunks is not None and "output" not in d:
            d["output"] = "".join(self._chunks)
            d["streamed"] = True
        if error is not None:
            d["error_type"] = type(error).__qualname__
            d["error_message"] = str(error)
        _remember_output(d["task_id"], d.get("output"))
        _emit(d)


def _usage(usage: Any) -> tuple[int, int]:
    get = usage.get if isinstance(usage, Mapping) else (lambda k: getattr(usage, k, None))
    inp = get("input_tokens") or get("prompt_tokens") or 0
    out = get("output_tokens") or get("completion_tokens") or 0
    return int(inp), int(out)


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
        self.model = model
        self.model_version = model_version
        self.prompt_version = prompt_version
        self.provider = provider
        self.prompt_template_id = prompt_template_id
        self.parameters = dict(parameters) if parameters else None
        self.task_id = task_id
        self.attributes = dict(attributes) if attributes else None
        self.capture_input = capture_input
        self.capture_output = capture_output
        self.input_from = input_from
        self.output_from = output_from

    # -- context manager: the call being exited is always the current one, so
    # one spec object can be entered by many threads or tasks at once.
    def __enter__(self) -> ModelCallRecord:
        call = ModelCallRecord(self)
        call._token = _current_call.set(call)
        return call

    def __exit__(self, exc_type, exc, tb) -> None:
        call = _current_call.get()
        _current_call.reset(call._token)
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
            call._draft["input"] = (_as_text(self.input_from(*args, **kwargs)) if self.input_from
                                    else _describe_args(args, kwargs))
        return call

    def _set_result(self, call: ModelCallRecord, result: Any) -> None:
        if self.capture_output and "output" not in call._draft:
            call._draft["output"] = _as_text(self.output_from(result) if self.output_from
                                             else result)

    def _wrap_sync(self, fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            call = self._start(args, kwargs)
            token = _current_call.set(call)
            try:
                result = fn(*args, **kwargs)
            except BaseException as exc:
                _finish_failed(call, exc)
                raise
            finally:
                _current_call.reset(token)
            self._set_result(call, result)
            call._finish()
            return result
        return wrapper

    def _wrap_async(self, fn):
        @functools.wraps(fn)
        async def wrapper(*args, **kwargs):
            call = self._start(args, kwargs)
            token = _current_call.set(call)
            try:
                result = await fn(*args, **kwargs)
            except BaseException as exc:
                _finish_failed(call, exc)
                raise
            finally:
                _current_call.reset(token)
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
                call._draft["streamed"] = True
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
                call._draft["streamed"] = True
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
            token = _current_call.set(call)
            try:
                chunk = next(gen)
            except StopIteration:
                return
            finally:
                _current_call.reset(token)
            yield chunk
    finally:
        gen.close()


async def _with_current_call_async(call: ModelCallRecord, agen):
    try:
        while True:
            token = _current_call.set(call)
            try:
                chunk = await agen.__anext__()
            except StopAsyncIteration:
                return
            finally:
                _current_call.reset(token)
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
        self._draft: Optional[dict] = None
        self._t0 = 0

    def __enter__(self) -> "review":
        self._draft = _base("review", self._task_id, self._attributes)
        self._draft["reviewer_id"] = self._reviewer
        self._t0 = time.monotonic_ns()
        return self

    def _decide(self, decision: str, rationale: RationaleLike, output: Optional[str] = None) -> None:
        d = self._draft
        if d is None:
            raise RuntimeError("review: decide inside the 'with' block")
        if d.get("decision"):
            raise RuntimeError(f"review: decision already recorded ({d['decision']})")
        why = _rationale(rationale)
        d["decision"] = decision
        d["time_spent_ms"] = self._elapsed_ms()
        d["reason_code"], d["policy_ref"], d["rationale"] = why.reason_code, why.policy_ref, why.text
        if output is not None:
            d["modified_output"] = _as_text(output)
            original = self._original
            if original is None:
                original = _last_output.get(d["task_id"] or "")
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
        d = self._draft
        if not d.get("decision"):
            d["decision"] = "none"
            d["time_spent_ms"] = self._elapsed_ms()
        if exc is not None:
            d["error_type"], d["error_message"] = type(exc).__qualname__, str(exc)
        d["end"] = time.time_ns()
        _emit(d)

    async def __aenter__(self) -> "review":
        return self.__enter__()

    async def __aexit__(self, exc_type, exc, tb) -> None:
        self.__exit__(exc_type, exc, tb)


# ---------------------------------------------------------------- single events

def _require(**values: Any) -> None:
    for name, value in values.items():
        if not isinstance(value, str) or not value:
            raise ValueError(f"{name} must be a non-empty string")


def escalate(task_id: Optional[str] = None, *, from_reviewer: str, to_reviewer: str,
             reason: str = "", attributes: Optional[Mapping[str, Any]] = None) -> str:
    """Record that a task was handed from one reviewer to another. Returns the record id."""
    _require(from_reviewer=from_reviewer, to_reviewer=to_reviewer)
    d = _base("escalation", task_id, attributes)
    d["escalation_from"], d["escalation_to"], d["escalation_reason"] = (
        from_reviewer, to_reviewer, reason)
    _emit(d)
    return d["record_id"]


def resolve(task_id: Optional[str] = None, *, resolution: str, final_decision: str = "",
            attributes: Optional[Mapping[str, Any]] = None) -> str:
    """Record how a task ended. Returns the record id."""
    _require(resolution=resolution)
    d = _base("resolution", task_id, attributes)
    d["resolution_outcome"], d["final_decision"] = resolution, final_decision
    _emit(d)
    return d["record_id"]


def data_access(*, actor: str, resource: str, purpose: str, task_id: Optional[str] = None,
                attributes: Optional[Mapping[str, Any]] = None) -> str:
    """Record that someone read protected data (SOC 2 / HIPAA access log)."""
    _require(actor=actor, resource=resource, purpose=purpose)
    d = _base("data_access", task_id, attributes)
    d["actor"], d["resource"], d["purpose"] = actor, resource, purpose
    _emit(d)
    return d["record_id"]


def event(event_type: str, *, task_id: Optional[str] = None,
          attributes: Optional[Mapping[str, Any]] = None) -> str:
    """Record another kind of event (for example ``task_created``)."""
    _require(event_type=event_type)
    d = _base(event_type, task_id, attributes)
    _emit(d)
    return d["record_id"]
