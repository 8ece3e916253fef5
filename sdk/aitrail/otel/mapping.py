"""From a GenAI span to the drafts of its audit records (docs/otlp-mapping.md).

One module for both ways in (the collector's OTLP receiver and the in-process
span processor), so a span gives the same records whichever way it came. A draft
is a plain dict in :func:`aitrail.record.build.build_record`'s keys; building it
into a record is where redaction happens, on the same path as the SDK's own
records.

Three attribute dialects are read, each field from the first key present:

* the GenAI semantic conventions (``gen_ai.operation.name``, ``gen_ai.provider.name``,
  ``gen_ai.input.messages``, ...), also from the
  ``gen_ai.client.inference.operation.details`` event;
* OpenLLMetry's legacy keys (``gen_ai.system``, ``gen_ai.prompt.{i}.*``,
  ``gen_ai.completion.{i}.*``, ``gen_ai.usage.prompt_tokens``);
* OpenInference (``openinference.span.kind``, ``llm.model_name``,
  ``llm.input_messages.{i}.message.*``, ``llm.token_count.*``, ...).

Record ids are derived from the trace and span ids (:func:`record_id_for`), so a
retried export of the same span is deduplicated by the collector.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Optional

from aitrail.otel.spans import STATUS_ERROR, Attributes, EventView, SpanView

#: gen_ai.operation.name values that are a call to a model (the others, such as
#: execute_tool, invoke_agent and create_agent, are not).
MODEL_OPERATIONS = frozenset({"chat", "text_completion", "generate_content", "embeddings"})
#: openinference.span.kind values that are a call to a model.
OPENINFERENCE_MODEL_KINDS = frozenset({"LLM", "EMBEDDING"})

INFERENCE_DETAILS_EVENT = "gen_ai.client.inference.operation.details"
EVALUATION_EVENT = "gen_ai.evaluation.result"

#: Which attribute gives the task id, in order; the first one set wins.
DEFAULT_TASK_ID_KEYS: tuple[str, ...] = ("aitrail.task_id", "gen_ai.conversation.id",
                                         "session.id")


@dataclass(frozen=True)
class MappingOptions:
    task_id_keys: tuple[str, ...] = DEFAULT_TASK_ID_KEYS


# --------------------------------------------------------------------------- detection

def is_genai_model_call(attributes: Attributes) -> bool:
    """Whether a span with these attributes is a call to a model, in any dialect."""
    kind = attributes.get("openinference.span.kind")
    if kind is not None:
        return str(kind).upper() in OPENINFERENCE_MODEL_KINDS
    operation = attributes.get("gen_ai.operation.name")
    if operation is not None:
        return str(operation) in MODEL_OPERATIONS
    # OpenLLMetry's legacy spans name no operation (llm.request.type instead).
    return any(k in attributes for k in ("gen_ai.system", "gen_ai.provider.name",
                                         "gen_ai.request.model"))


def has_evaluations(events: Iterable[EventView]) -> bool:
    return any(e.name == EVALUATION_EVENT for e in events)


def drafts_for(span: SpanView, options: MappingOptions = MappingOptions()) -> list[dict[str, Any]]:
    """The drafts of a span's records: a ``model_call`` when it is a GenAI model
    call, then an ``evaluation`` per ``gen_ai.evaluation.result`` event; [] when it
    is neither (it is not GenAI, and makes no record)."""
    attrs = _with_details(span)
    drafts: list[dict[str, Any]] = []
    if is_genai_model_call(attrs):
        drafts.append(_model_call(span, attrs, options))
    evaluations = [e for e in span.events if e.name == EVALUATION_EVENT]
    for i, event in enumerate(evaluations):
        drafts.append(_evaluation(span, attrs, event, i, options))
    return drafts


def _with_details(span: SpanView) -> dict[str, Any]:
    """The span's attributes, with those of its inference-details event where the
    span has none of its own (instrumentations record content on one or the other)."""
    attrs = dict(span.attributes)
    for e in span.events:
        if e.name == INFERENCE_DETAILS_EVENT:
            for k, v in e.attributes.items():
                attrs.setdefault(k, v)
    return attrs


# ----------------------------------------------------------------------- identity

_ID_DOMAIN = b"aitrail.otel.record-id.v1\x00"


def record_id_for(trace_id: str, span_id: str, kind: str, index: int, start_ns: int) -> str:
    """A UUIDv8 (RFC 9562) made from the span: its first 48 bits are the span's start
    in Unix milliseconds (so ids sort by time, like the SDK's UUIDv7), the rest a
    SHA-256 of (trace id, span id, record kind, index). Equal spans give equal ids:
    a retried export is a duplicate, not a second record."""
    digest = hashlib.sha256(_ID_DOMAIN + f"{trace_id}/{span_id}/{kind}/{index}".encode()).digest()
    b = bytearray((start_ns // 1_000_000 & (1 << 48) - 1).to_bytes(6, "big") + digest[:10])
    b[6] = 0x80 | (b[6] & 0x0F)  # version 8
    b[8] = 0x80 | (b[8] & 0x3F)  # variant 0b10
    h = b.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def _common(span: SpanView, attrs: Attributes, options: MappingOptions, kind: str,
            index: int, start_ns: int) -> dict[str, Any]:
    return {
        "record_id": record_id_for(span.trace_id, span.span_id, kind, index, start_ns),
        "task_id": _first_text(attrs, options.task_id_keys),
        "request_id": _text(attrs.get("aitrail.request_id")),
        "trace_id": span.trace_id, "span_id": span.span_id,
        "parent_span_id": span.parent_span_id,
    }


# --------------------------------------------------------------------- model calls

def _model_call(span: SpanView, attrs: Attributes, options: MappingOptions) -> dict[str, Any]:
    d = _common(span, attrs, options, "model_call", 0, span.start_ns)
    params = _parameters(attrs)
    request_model = _first_text(attrs, ("gen_ai.request.model",)) or _text(params.get("model"))
    response_model = _first_text(attrs, ("gen_ai.response.model", "llm.model_name"))
    d.update({
        "event_type": "model_call", "start": span.start_ns, "end": span.end_ns,
        "provider": _first_text(attrs, ("gen_ai.provider.name", "gen_ai.system",
                                        "llm.provider", "llm.system")),
        "model": request_model or response_model,
        # The response names the exact snapshot (gpt-4o -> gpt-4o-2024-08-06).
        "model_version": response_model if request_model and response_model != request_model
        else "",
        "parameters": {k: v for k, v in params.items() if k != "model"},
        "input": _input_text(attrs),
        "output": _output_text(attrs),
        "input_tokens": _first_int(attrs, ("gen_ai.usage.input_tokens",
                                           "gen_ai.usage.prompt_tokens",
                                           "llm.token_count.prompt")),
        "output_tokens": _first_int(attrs, ("gen_ai.usage.output_tokens",
                                            "gen_ai.usage.completion_tokens",
                                            "llm.token_count.completion")),
        "streamed": _streamed(attrs, params),
        "response_id": _first_text(attrs, ("gen_ai.response.id",)) or _response_json_id(attrs),
        "attributes": _kept_attributes(span, attrs),
    })
    exception = next((e.attributes for e in span.events if e.name == "exception"), {})
    if span.status_code == STATUS_ERROR or attrs.get("error.type"):
        d["error_type"] = (_first_text(attrs, ("error.type",))
                           or _first_text(exception, ("exception.type",)) or "error")
        d["error_message"] = span.status_message or _text(exception.get("exception.message"))
    return d


def _streamed(attrs: Attributes, params: Mapping[str, str]) -> bool:
    """Conventions: gen_ai.request.stream; OpenLLMetry: gen_ai.is_streaming;
    OpenInference only says so in its invocation parameters."""
    for key in ("gen_ai.request.stream", "gen_ai.is_streaming", "llm.is_streaming"):
        if key in attrs:
            return _is_true(attrs[key])
    return params.get("stream") == "true"


def _response_json_id(attrs: Attributes) -> str:
    """OpenInference has no response-id attribute; its output.value is the
    provider's JSON response, whose ``id`` is the response id."""
    if attrs.get("output.mime_type") != "application/json":
        return ""
    body = _json(attrs.get("output.value"))
    return _text(body.get("id")) if isinstance(body, dict) and isinstance(body.get("id"), str) \
        else ""


_REQUEST_PREFIX = "gen_ai.request."
_NOT_PARAMETERS = frozenset({"gen_ai.request.model", "gen_ai.request.stream"})


def _parameters(attrs: Attributes) -> dict[str, str]:
    """Request parameters, as text: ``gen_ai.request.*`` (but the model), else
    OpenInference's ``llm.invocation_parameters`` JSON object."""
    out = {k[len(_REQUEST_PREFIX):]: _as_text(v) for k, v in attrs.items()
           if k.startswith(_REQUEST_PREFIX) and k not in _NOT_PARAMETERS}
    if out:
        return out
    raw = attrs.get("llm.invocation_parameters")
    parsed = _json(raw) if isinstance(raw, str) else None
    if isinstance(parsed, dict):
        return {str(k): _as_text(v) for k, v in parsed.items()}
    return {}


# Kept in the sealed attributes: what says more about the call than the columns do.
_KEPT_KEYS = ("gen_ai.operation.name", "gen_ai.response.finish_reasons",
              "gen_ai.conversation.id", "gen_ai.response.id", "gen_ai.output.type",
              "gen_ai.agent.name", "gen_ai.agent.id", "session.id", "user.id",
              "openinference.span.kind", "llm.request.type", "llm.finish_reason", "error.type",
              "server.address")
_KEPT_PREFIXES = ("gen_ai.usage.", "llm.token_count.")
_COLUMN_KEYS = frozenset({"gen_ai.usage.input_tokens", "gen_ai.usage.output_tokens",
                          "gen_ai.usage.prompt_tokens", "gen_ai.usage.completion_tokens",
                          "llm.token_count.prompt", "llm.token_count.completion"})


def _kept_attributes(span: SpanView, attrs: Attributes) -> dict[str, str]:
    """Everything of note the columns do not hold: cache and reasoning token counts,
    finish reasons, ids; the span's name and the instrumentation that made it."""
    out = {"otel.span.name": span.name}
    if span.scope:
        out["otel.scope.name"] = span.scope
    for k, v in attrs.items():
        if k in _KEPT_KEYS or (k.startswith(_KEPT_PREFIXES) and k not in _COLUMN_KEYS):
            out[k] = _as_text(v)
    return out


# ------------------------------------------------------------------- message text

def _input_text(attrs: Attributes) -> str:
    messages = _system_messages(attrs) + _messages(attrs, "gen_ai.input.messages",
                                                   "gen_ai.prompt", "llm.input_messages")
    if messages:
        return _transcript(messages)
    return _text(attrs.get("input.value"))


def _output_text(attrs: Attributes) -> str:
    messages = _messages(attrs, "gen_ai.output.messages", "gen_ai.completion",
                         "llm.output_messages")
    if len(messages) == 1:
        # One answer: its text alone, so a reviewer's change diffs against it.
        return _parts_text(messages[0].get("parts") or ())
    if messages:
        return _transcript(messages)
    return _text(attrs.get("output.value"))


def _system_messages(attrs: Attributes) -> list[dict[str, Any]]:
    parts = _json(attrs.get("gen_ai.system_instructions"))
    if isinstance(parts, list) and parts:
        return [{"role": "system", "parts": parts}]
    return []


def _messages(attrs: Attributes, semconv: str, legacy: str, openinference: str
              ) -> list[dict[str, Any]]:
    """Messages as the semantic conventions shape them ({role, parts: [{type,
    content}]}), from whichever dialect the span carries."""
    raw = attrs.get(semconv)
    current = _json(raw)
    if isinstance(current, list):
        return [m for m in current if isinstance(m, dict)]
    if isinstance(raw, str) and raw:  # not JSON: kept as the one message's text
        return [{"role": "", "parts": [{"type": "text", "content": raw}]}]
    indexed = _indexed(attrs, legacy + ".")
    if indexed:
        return [_legacy_message(fields) for fields in indexed]
    indexed = _indexed(attrs, openinference + ".")
    return [_openinference_message(fields) for fields in indexed]


_INDEX = re.compile(r"(\d+)\.(.+)")


def _indexed(attrs: Attributes, prefix: str) -> list[dict[str, Any]]:
    """``prefix{i}.rest`` keys, grouped by i in numeric order, as {rest: value}."""
    groups: dict[int, dict[str, Any]] = {}
    for k, v in attrs.items():
        if k.startswith(prefix):
            m = _INDEX.fullmatch(k[len(prefix):])
            if m:
                groups.setdefault(int(m.group(1)), {})[m.group(2)] = v
    return [groups[i] for i in sorted(groups)]


def _legacy_message(fields: Mapping[str, Any]) -> dict[str, Any]:
    parts: list[Any] = []
    if "content" in fields:
        content = fields["content"]
        decoded = _json(content) if isinstance(content, str) and content[:1] == "[" else None
        parts = decoded if isinstance(decoded, list) else [{"type": "text",
                                                            "content": _text(content)}]
    for call in _indexed(fields, "tool_calls."):
        parts.append({"type": "tool_call", "name": _text(call.get("name")),
                      "arguments": _text(call.get("arguments"))})
    return {"role": _text(fields.get("role")), "parts": parts}


def _openinference_message(fields: Mapping[str, Any]) -> dict[str, Any]:
    parts: list[Any] = []
    if "message.content" in fields:
        parts.append({"type": "text", "content": _text(fields["message.content"])})
    for content in _indexed(fields, "message.contents."):
        if "message_content.text" in content:
            parts.append({"type": "text", "content": _text(content["message_content.text"])})
    for call in _indexed(fields, "message.tool_calls."):
        parts.append({"type": "tool_call",
                      "name": _text(call.get("tool_call.function.name")),
                      "arguments": _text(call.get("tool_call.function.arguments"))})
    return {"role": _text(fields.get("message.role")), "parts": parts}


def _transcript(messages: Iterable[Mapping[str, Any]]) -> str:
    """``role: text`` per message, blank-line separated; a part that is not text
    (a tool call, an image) is kept as its JSON."""
    return "\n\n".join(f"{_text(m.get('role')) or 'message'}: {_parts_text(m.get('parts') or ())}"
                       for m in messages)


def _parts_text(parts: Iterable[Any]) -> str:
    out = []
    for p in parts:
        if isinstance(p, Mapping) and p.get("type") == "text":
            out.append(_text(p.get("content")))
        else:
            out.append(json.dumps(p, ensure_ascii=False, sort_keys=True, default=str))
    return "\n".join(out)


# -------------------------------------------------------------------- evaluations

def _evaluation(span: SpanView, attrs: Attributes, event: EventView, index: int,
                options: MappingOptions) -> dict[str, Any]:
    e = event.attributes
    d = _common(span, attrs, options, "evaluation", index, event.time_ns)
    score = e.get("gen_ai.evaluation.score.value")
    d.update({
        "event_type": "evaluation", "start": event.time_ns, "end": event.time_ns,
        "evaluation_name": _text(e.get("gen_ai.evaluation.name")),
        "score_value": float(score) if isinstance(score, (int, float))
        and not isinstance(score, bool) else None,
        "score_label": _text(e.get("gen_ai.evaluation.score.label")),
        "explanation": _text(e.get("gen_ai.evaluation.explanation")),
        "response_id": _text(e.get("gen_ai.response.id")) or
        _first_text(attrs, ("gen_ai.response.id",)),
        "attributes": {"otel.span.name": span.name,
                       **({"error.type": _text(e["error.type"])} if "error.type" in e else {})},
    })
    return d


# ------------------------------------------------------------------------ values

def _text(value: Any) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else _as_text(value)


def _as_text(value: Any) -> str:
    """An attribute value as text: strings as they are, the rest as JSON."""
    if isinstance(value, str):
        return value
    if type(value) in (int, float) and value == value and abs(value) != float("inf"):
        return repr(value)  # what json.dumps writes for a finite number, cheaper
    if isinstance(value, tuple):
        value = list(value)
    return json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)


def _first_text(attrs: Attributes, keys: Iterable[str]) -> str:
    for k in keys:
        v = attrs.get(k)
        if v is not None and v != "":
            return _text(v)
    return ""


def _first_int(attrs: Attributes, keys: Iterable[str]) -> int:
    for k in keys:
        v = attrs.get(k)
        if isinstance(v, bool):
            continue
        if isinstance(v, int) and v >= 0:
            return v
        if isinstance(v, float) and v.is_integer() and v >= 0:
            return int(v)
        if isinstance(v, str) and v.isdigit():
            return int(v)
    return 0


def _is_true(value: Any) -> bool:
    return value is True or (isinstance(value, str) and value.lower() == "true")


def _json(value: Any) -> Optional[Any]:
    """A JSON attribute (structured values travel as JSON strings), decoded; a
    value that is already structured (an OTLP kvlist/array) as it is."""
    if isinstance(value, (list, tuple)):
        return list(value)
    if isinstance(value, dict):
        return value
    if not isinstance(value, str) or not value:
        return None
    try:
        return json.loads(value)
    except ValueError:
        return None
