"""GenAI spans -> audit records (aitrail.otel; docs/otlp-mapping.md), field by field.

Spans are made by the real OpenTelemetry SDK and reach the mapping both ways the
product takes them: as SDK ReadableSpans (the in-process AuditSpanProcessor) and
encoded by the real OTLP encoder into an ExportTraceServiceRequest (the
collector's receiver). Both must give the same records.
"""

from __future__ import annotations

import json

import pytest
from opentelemetry import baggage, context
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Status, StatusCode

import aitrail
from aitrail.export.memory import InMemoryExporter
from aitrail.otel import AuditSpanProcessor, MappingOptions, drafts_for
from aitrail.otel.mapping import record_id_for
from aitrail.otel.otlp import OtlpError, parse_json, records_of
from aitrail.otel.processor import view_of
from aitrail.record.redact import Redactor

KEY = b"k" * 32
RESOURCE = Resource.create({"service.name": "triage-bot", "service.version": "1.4.2",
                            "deployment.environment.name": "staging", "host.name": "web-3"})

SEMCONV = {
    "gen_ai.operation.name": "chat",
    "gen_ai.provider.name": "openai",
    "gen_ai.request.model": "gpt-4o",
    "gen_ai.response.model": "gpt-4o-2024-08-06",
    "gen_ai.request.temperature": 0.2,
    "gen_ai.request.max_tokens": 256,
    "gen_ai.system_instructions": json.dumps([{"type": "text", "content": "Be brief."}]),
    "gen_ai.input.messages": json.dumps([{"role": "user", "parts": [
        {"type": "text", "content": "Mail jane.doe@example.com about card 4111 1111 1111 1111"}]}]),
    "gen_ai.output.messages": json.dumps([{"role": "assistant", "finish_reason": "stop",
                                           "parts": [{"type": "text", "content": "Done."}]}]),
    "gen_ai.usage.input_tokens": 42,
    "gen_ai.usage.output_tokens": 7,
    "gen_ai.usage.cache_read.input_tokens": 30,
    "gen_ai.response.finish_reasons": ("stop",),
    "gen_ai.response.id": "chatcmpl-123",
    "gen_ai.conversation.id": "conv-9",
}

LEGACY = {  # OpenLLMetry's defaults
    "gen_ai.system": "openai",
    "llm.request.type": "chat",
    "gen_ai.request.model": "gpt-4o",
    "gen_ai.response.model": "gpt-4o-2024-08-06",
    "gen_ai.prompt.0.role": "system",
    "gen_ai.prompt.0.content": "Be brief.",
    "gen_ai.prompt.1.role": "user",
    "gen_ai.prompt.1.content": "SSN 123-45-6789, please check",
    "gen_ai.completion.0.role": "assistant",
    "gen_ai.completion.0.content": "Checked.",
    "gen_ai.completion.0.finish_reason": "stop",
    "gen_ai.usage.prompt_tokens": 11,
    "gen_ai.usage.completion_tokens": 3,
    "gen_ai.request.temperature": 0.0,
}

OPENINFERENCE = {
    "openinference.span.kind": "LLM",
    "llm.provider": "openai",
    "llm.system": "openai",
    "llm.model_name": "gpt-4o-2024-08-06",
    "llm.invocation_parameters": json.dumps({"model": "gpt-4o", "temperature": 0.5}),
    "llm.input_messages.0.message.role": "user",
    "llm.input_messages.0.message.content": "Call me at +1 415 555 0100",
    "llm.output_messages.0.message.role": "assistant",
    "llm.output_messages.0.message.content": "Will do.",
    "llm.token_count.prompt": 9,
    "llm.token_count.completion": 2,
    "llm.token_count.total": 11,
    "llm.token_count.prompt_details.cache_read": 4,
    "input.value": '{"messages": "raw request"}',
    "output.value": '{"raw": "response"}',
    "session.id": "sess-1",
    "user.id": "u-7",
}


def spans(*specs, events=(), status=None):
    """Finish spans with the real SDK: each spec is (name, attributes)."""
    provider = TracerProvider(resource=RESOURCE)
    memory = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("test.instrumentation")
    for name, attrs in specs:
        with tracer.start_as_current_span(name, attributes=attrs) as span:
            for ev_name, ev_attrs in events:
                span.add_event(ev_name, ev_attrs)
            if status is not None:
                span.set_status(status)
    return list(memory.get_finished_spans())


def both_ways(finished, options=MappingOptions()):
    """(processor-path drafts, receiver-path records) of the same spans."""
    drafts = [d for s in finished for d in drafts_for(view_of(s), options)]
    request = encode_spans(finished)
    batch = records_of(request, Redactor(KEY), options)
    return drafts, batch


def test_semconv_span_field_by_field():
    (span,) = spans(("chat gpt-4o", SEMCONV))
    drafts, batch = both_ways([span])
    (d,) = drafts
    assert d["event_type"] == "model_call"
    assert d["provider"] == "openai" and d["model"] == "gpt-4o"
    assert d["model_version"] == "gpt-4o-2024-08-06"
    assert d["parameters"] == {"temperature": "0.2", "max_tokens": "256"}
    assert d["input"] == ("system: Be brief.\n\nuser: Mail jane.doe@example.com about card "
                          "4111 1111 1111 1111")
    assert d["output"] == "Done."
    assert (d["input_tokens"], d["output_tokens"]) == (42, 7)
    assert d["response_id"] == "chatcmpl-123"
    assert d["task_id"] == "conv-9"  # no aitrail.task_id: the conversation id
    assert d["trace_id"] == format(span.context.trace_id, "032x")
    assert d["span_id"] == format(span.context.span_id, "016x")
    assert d["start"] == span.start_time and d["end"] == span.end_time
    assert d["attributes"]["gen_ai.usage.cache_read.input_tokens"] == "30"
    assert d["attributes"]["gen_ai.response.finish_reasons"] == '["stop"]'
    assert d["attributes"]["otel.scope.name"] == "test.instrumentation"
    assert "error_type" not in d

    (rec,) = batch.records
    assert (batch.spans, batch.not_genai, batch.refused) == (1, 0, [])
    assert rec.record_id == d["record_id"] and rec.event_type == "model_call"
    assert rec.model_call.model == "gpt-4o" and rec.model_call.provider == "openai"
    assert rec.model_call.usage.input_tokens == 42 and rec.model_call.usage.output_tokens == 7
    assert (rec.service, rec.service_version, rec.environment, rec.host) == (
        "triage-bot", "1.4.2", "staging", "web-3")
    assert rec.trace_id == d["trace_id"] and rec.task_id == "conv-9"
    # Redacted with the collector's key before sealing: no raw e-mail or card number.
    assert "jane.doe@example.com" not in rec.model_call.input
    assert "4111" not in rec.model_call.input
    assert "[EMAIL:" in rec.model_call.input and "[CARD:" in rec.model_call.input


def test_legacy_openllmetry_keys():
    (span,) = spans(("openai.chat", LEGACY))
    drafts, batch = both_ways([span])
    (d,) = drafts
    assert d["provider"] == "openai" and d["model"] == "gpt-4o"
    assert d["input"] == "system: Be brief.\n\nuser: SSN 123-45-6789, please check"
    assert d["output"] == "Checked."
    assert (d["input_tokens"], d["output_tokens"]) == (11, 3)
    assert d["parameters"] == {"temperature": "0.0"}
    (rec,) = batch.records
    assert "123-45-6789" not in rec.model_call.input and "[SSN:" in rec.model_call.input


def test_openinference_keys():
    (span,) = spans(("ChatCompletion", OPENINFERENCE))
    drafts, batch = both_ways([span])
    (d,) = drafts
    assert d["provider"] == "openai"
    assert d["model"] == "gpt-4o" and d["model_version"] == "gpt-4o-2024-08-06"
    assert d["parameters"] == {"temperature": "0.5"}
    # The messages win over input.value / output.value (the raw request and response).
    assert d["input"] == "user: Call me at +1 415 555 0100"
    assert d["output"] == "Will do."
    assert (d["input_tokens"], d["output_tokens"]) == (9, 2)
    assert d["task_id"] == "sess-1"
    assert d["attributes"]["llm.token_count.prompt_details.cache_read"] == "4"
    assert d["attributes"]["user.id"] == "u-7"
    (rec,) = batch.records
    assert "555 0100" not in rec.model_call.input and "[PHONE:" in rec.model_call.input


def test_openinference_values_without_messages():
    attrs = {k: v for k, v in OPENINFERENCE.items() if "_messages." not in k}
    (span,) = spans(("ChatCompletion", attrs))
    (d,) = drafts_for(view_of(span))
    assert d["input"] == '{"messages": "raw request"}' and d["output"] == '{"raw": "response"}'


def test_content_from_the_inference_details_event():
    attrs = {k: v for k, v in SEMCONV.items() if "messages" not in k and "instructions" not in k}
    event = ("gen_ai.client.inference.operation.details", {
        "gen_ai.input.messages": SEMCONV["gen_ai.input.messages"],
        "gen_ai.output.messages": SEMCONV["gen_ai.output.messages"]})
    (span,) = spans(("chat", attrs), events=[event])
    (d,) = drafts_for(view_of(span))
    assert d["input"].startswith("user: Mail") and d["output"] == "Done."


def test_evaluation_events_become_evaluation_records():
    evals = [("gen_ai.evaluation.result", {
        "gen_ai.evaluation.name": "relevance", "gen_ai.evaluation.score.value": 0.82,
        "gen_ai.evaluation.score.label": "relevant",
        "gen_ai.evaluation.explanation": "Answers it; contact jane@example.com"}),
        ("gen_ai.evaluation.result", {"gen_ai.evaluation.name": "toxicity",
                                      "gen_ai.evaluation.score.label": "none",
                                      "gen_ai.response.id": "other-resp"})]
    (span,) = spans(("chat gpt-4o", SEMCONV), events=evals)
    drafts, batch = both_ways([span])
    call, rel, tox = drafts
    assert call["event_type"] == "model_call"
    assert rel["event_type"] == tox["event_type"] == "evaluation"
    assert rel["evaluation_name"] == "relevance" and rel["score_value"] == 0.82
    assert rel["score_label"] == "relevant"
    assert rel["explanation"] == "Answers it; contact jane@example.com"
    assert rel["response_id"] == "chatcmpl-123"  # the span's response, when the event names none
    assert tox["score_value"] is None and tox["response_id"] == "other-resp"
    assert rel["task_id"] == call["task_id"] and rel["trace_id"] == call["trace_id"]
    assert len({call["record_id"], rel["record_id"], tox["record_id"]}) == 3
    assert [r.event_type for r in batch.records] == ["model_call", "evaluation", "evaluation"]


def test_evaluation_on_a_span_that_is_not_a_model_call():
    (span,) = spans(("evaluate answer", {"app.step": "eval"}),
                    events=[("gen_ai.evaluation.result", {"gen_ai.evaluation.name": "faithful"})])
    (d,) = drafts_for(view_of(span))
    assert d["event_type"] == "evaluation" and d["evaluation_name"] == "faithful"


@pytest.mark.parametrize("attrs", [
    {"http.method": "GET", "http.route": "/tickets"},
    {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "lookup"},
    {"gen_ai.operation.name": "invoke_agent", "gen_ai.provider.name": "openai"},
    {"openinference.span.kind": "CHAIN", "input.value": "x"},
    {"openinference.span.kind": "TOOL"},
])
def test_spans_that_are_not_model_calls_make_no_record(attrs):
    finished = spans(("step", attrs))
    drafts, batch = both_ways(finished)
    assert drafts == [] and batch.records == []
    assert (batch.spans, batch.not_genai) == (1, 1)


def test_record_ids_are_derived_from_trace_and_span():
    (span,) = spans(("chat", SEMCONV))
    first = drafts_for(view_of(span))[0]["record_id"]
    assert drafts_for(view_of(span))[0]["record_id"] == first  # a retry: the same id
    request = encode_spans([span])
    again = records_of(request, Redactor(KEY)).records[0].record_id
    assert again == first
    assert first[14] == "8"  # UUIDv8, its first 48 bits the span's start in ms
    assert int(first.replace("-", "")[:12], 16) == span.start_time // 1_000_000
    tid, sid = format(span.context.trace_id, "032x"), format(span.context.span_id, "016x")
    assert record_id_for(tid, sid, "model_call", 0, span.start_time) == first
    assert record_id_for(tid, sid, "model_call", 1, span.start_time) != first
    assert record_id_for(tid, "0" * 15 + "1", "model_call", 0, span.start_time) != first


def test_task_id_precedence_and_options():
    attrs = dict(SEMCONV, **{"aitrail.task_id": "T-1", "session.id": "s"})
    (span,) = spans(("chat", attrs))
    assert drafts_for(view_of(span))[0]["task_id"] == "T-1"
    options = MappingOptions(task_id_keys=("session.id",))
    assert drafts_for(view_of(span), options)[0]["task_id"] == "s"
    (bare,) = spans(("chat", {k: v for k, v in SEMCONV.items()
                              if k != "gen_ai.conversation.id"}))
    assert drafts_for(view_of(bare))[0]["task_id"] == ""


def test_failed_call_keeps_its_error():
    attrs = dict(SEMCONV, **{"error.type": "RateLimitError"})
    (span,) = spans(("chat", attrs), status=Status(StatusCode.ERROR, "429 from upstream"))
    (d,) = drafts_for(view_of(span))
    assert d["error_type"] == "RateLimitError" and d["error_message"] == "429 from upstream"


def test_bad_ids_refuse_the_whole_request():
    finished = spans(("chat", SEMCONV), ("chat", SEMCONV))
    request = encode_spans(finished)
    request.resource_spans[0].scope_spans[0].spans[1].trace_id = b"\x00" * 16
    with pytest.raises(OtlpError, match=r"spans\[1\]\.trace_id is all zero"):
        records_of(request, Redactor(KEY))
    request.resource_spans[0].scope_spans[0].spans[1].trace_id = b"\x01" * 5
    with pytest.raises(OtlpError, match="must be 16 bytes; it is 5"):
        records_of(request, Redactor(KEY))


def test_otlp_json_has_hex_ids():
    (span,) = spans(("chat", SEMCONV))
    tid, sid = format(span.context.trace_id, "032x"), format(span.context.span_id, "016x")
    body = json.dumps({"resourceSpans": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "svc"}}]},
        "scopeSpans": [{"scope": {"name": "s"}, "spans": [{
            "traceId": tid, "spanId": sid, "name": "chat", "kind": 3,
            "startTimeUnixNano": "1700000000000000000", "endTimeUnixNano": "1700000000500000000",
            "attributes": [
                {"key": "gen_ai.operation.name", "value": {"stringValue": "chat"}},
                {"key": "gen_ai.request.model", "value": {"stringValue": "gpt-4o"}},
                {"key": "gen_ai.usage.input_tokens", "value": {"intValue": "5"}},
                {"key": "gen_ai.response.finish_reasons",
                 "value": {"arrayValue": {"values": [{"stringValue": "stop"}]}}}]}]}]}]})
    (rec,) = records_of(parse_json(body.encode()), Redactor(KEY)).records
    assert rec.trace_id == tid and rec.span_id == sid and rec.service == "svc"
    assert rec.model_call.usage.input_tokens == 5
    assert rec.start_time_unix_nano == 1700000000000000000
    assert rec.attributes["gen_ai.response.finish_reasons"] == '["stop"]'


@pytest.mark.parametrize("body, message", [
    (b"{not json", "not JSON"),
    (b"[1, 2]", "not an OTLP/JSON ExportTraceServiceRequest object"),
    (b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "xyz"}]}]}]}', "not hex"),
    (b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"name": 5, "kind": "nope"}]}]}]}',
     "not an OTLP/JSON ExportTraceServiceRequest"),
])
def test_bad_otlp_json_is_refused_clearly(body, message):
    with pytest.raises(OtlpError, match=message):
        parse_json(body)


@pytest.fixture
def memory_sdk():
    exporter = InMemoryExporter()
    aitrail.configure(exporter=exporter, service="fallback-svc", redaction_key=KEY)
    yield exporter
    aitrail.shutdown()


def test_processor_makes_the_same_records_in_process(memory_sdk):
    provider = TracerProvider(resource=RESOURCE)
    provider.add_span_processor(AuditSpanProcessor())
    memory = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("test.instrumentation")
    token = context.attach(baggage.set_baggage("aitrail.task_id", "T-77"))
    try:
        with tracer.start_as_current_span("chat", attributes=SEMCONV) as span:
            span.add_event("gen_ai.evaluation.result", {"gen_ai.evaluation.name": "relevance"})
        with tracer.start_as_current_span("GET /health", attributes={"http.method": "GET"}):
            pass
    finally:
        context.detach(token)
    with aitrail.task("T-88"), tracer.start_as_current_span("chat", attributes=LEGACY):
        pass
    assert aitrail.flush(5)
    records = memory_sdk.get_finished_records()
    assert [r.event_type for r in records] == ["model_call", "evaluation", "model_call"]
    call, evaluation, legacy = records
    assert call.task_id == evaluation.task_id == "T-77"  # baggage beats the conversation id
    assert legacy.task_id == "T-88"                      # the enclosing aitrail.task
    assert call.service == "triage-bot" and call.host == "web-3"  # the span's resource
    assert "jane.doe@example.com" not in call.model_call.input    # the SDK's redaction
    # The same record ids as the receiver gives the same spans.
    finished = [s for s in memory.get_finished_spans() if s.name == "chat"]
    receiver = records_of(encode_spans(finished[:1]), Redactor(KEY)).records
    assert [r.record_id for r in receiver] == [call.record_id, evaluation.record_id]
    assert receiver[0].model_call.input == call.model_call.input  # one key, one redaction


def test_streaming_error_and_response_id_as_each_dialect_says_them():
    oi = dict(OPENINFERENCE, **{
        "llm.invocation_parameters": json.dumps({"model": "gpt-4o", "stream": True}),
        "output.mime_type": "application/json",
        "output.value": json.dumps({"id": "chatcmpl-oi", "object": "chat.completion"})})
    (span,) = spans(("ChatCompletion", oi), events=[("exception", {
        "exception.type": "openai.RateLimitError", "exception.message": "429"})],
        status=Status(StatusCode.ERROR))
    (d,) = drafts_for(view_of(span))
    assert d["streamed"] is True and d["response_id"] == "chatcmpl-oi"
    assert d["error_type"] == "openai.RateLimitError" and d["error_message"] == "429"
    (legacy,) = spans(("openai.chat", dict(LEGACY, **{"gen_ai.is_streaming": True})))
    assert drafts_for(view_of(legacy))[0]["streamed"] is True
    (plain,) = spans(("chat", SEMCONV))
    assert drafts_for(view_of(plain))[0]["streamed"] is False


def test_request_parameters_are_redacted_too():
    """OpenInference puts the call's `user` parameter (an end user's id, often an
    e-mail address) in llm.invocation_parameters: it must not reach the ledger raw."""
    oi = dict(OPENINFERENCE, **{"llm.invocation_parameters": json.dumps(
        {"model": "gpt-4o", "user": "jane.doe@example.com", "temperature": 0.5})})
    (span,) = spans(("ChatCompletion", oi))
    (rec,) = records_of(encode_spans([span]), Redactor(KEY)).records
    assert rec.model_call.parameters["temperature"] == "0.5"
    assert "jane.doe@example.com" not in rec.model_call.parameters["user"]
    assert rec.model_call.parameters["user"].startswith("[EMAIL:")
