"""The collector's OTLP receivers (OTLP/gRPC TraceService/Export, OTLP/HTTP POST /v1/traces),
over real sockets: the real OpenTelemetry SDK and OTLP exporters for the happy paths, raw
gRPC and httpx for what no exporter would send. Each case checks what was sealed (or that
nothing was) and ends with `aitrail verify` clean."""

from __future__ import annotations

import base64
import gzip
import json
import secrets
import time

import grpc
import httpx
import pytest
from google.protobuf import json_format
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter
from opentelemetry.exporter.otlp.proto.http import Compression as HttpCompression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, Span
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from support import CollectorProc, cli, count_records, verdict

from aitrail_collector.ingest.apikeys import create_key
from aitrail_collector.ingest.google_rpc import Status

EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
SERVICE = "otel-app"
MAX_MESSAGE = 400_000   # the open collector's --max-message-bytes
MAX_TEXT = 50_000       # and its --max-text-chars (the longest attribute value)


# ------------------------------------------------------------------ collectors

@pytest.fixture(scope="module")
def open_collector(tmp_path_factory):
    """No API keys: open, like the native gRPC service; small limits for the size cases."""
    base = tmp_path_factory.mktemp("otlp-open")
    proc = CollectorProc(base / "store", "--max-message-bytes", str(MAX_MESSAGE),
                         "--max-text-chars", str(MAX_TEXT)).start()
    yield proc
    proc.stop()


REDACTION_KEY = "the-sdk-redaction-key"


@pytest.fixture(scope="module")
def keyed(tmp_path_factory):
    """(collector, key) with API keys (the key writes as SERVICE), the SDK's redaction key
    in a file, a redaction policy and the task id taken from session.id first."""
    base = tmp_path_factory.mktemp("otlp-keyed")
    keys = str(base / "keys.json")
    key = create_key(keys, SERVICE)
    (base / "redaction.key").write_text(REDACTION_KEY + "\n")
    proc = CollectorProc(base / "store", "--api-keys", keys,
                         "--redaction-key-file", str(base / "redaction.key"),
                         "--redaction-policy", "attributes.gen_ai.conversation.id=hash",
                         "--otlp-task-id-keys", "session.id,gen_ai.conversation.id").start()
    yield proc, key
    proc.stop()


def verify_clean(collector: CollectorProc) -> None:
    out = cli("verify", "--url", collector.url)
    assert out.returncode == 0, out.stdout + out.stderr
    assert verdict(out.stdout).startswith("OK"), out.stdout


def stored(collector: CollectorProc, trace_id: str) -> list[dict]:
    return collector.get(f"/api/v1/records?limit=100&trace_id={trace_id}")["records"]


def otlp_stats(collector: CollectorProc) -> dict:
    return collector.get("/healthz")["otlp"]


# ------------------------------------------------------------------ spans

def sdk_spans(n_genai: int = 1, n_other: int = 0, email: str = "bob@example.com"):
    """Finished spans of the real OpenTelemetry SDK: GenAI chat spans (current semconv
    keys) and plain ones, in one trace; (spans, trace id as hex)."""
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource({"service.name": SERVICE,
                                                 "deployment.environment.name": "test"}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("test-otlp")
    with tracer.start_as_current_span("request") as root:
        trace_id = format(root.get_span_context().trace_id, "032x")
        for i in range(n_genai):
            with tracer.start_as_current_span("chat gpt-4o") as span:
                span.set_attributes(genai_attributes(f"question {i}: mail me at {email}"))
        for i in range(n_other - 1):
            with tracer.start_as_current_span(f"db query {i}"):
                pass
    spans = list(memory.get_finished_spans())
    if n_other == 0:  # the root is not GenAI: leave it out
        spans = [s for s in spans if s.name != "request"]
    provider.shutdown()
    return spans, trace_id


def genai_attributes(question: str) -> dict:
    return {
        "gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai",
        "gen_ai.request.model": "gpt-4o", "gen_ai.response.model": "gpt-4o-2024-08-06",
        "gen_ai.input.messages": json.dumps(
            [{"role": "user", "parts": [{"type": "text", "content": question}]}]),
        "gen_ai.output.messages": json.dumps(
            [{"role": "assistant", "parts": [{"type": "text", "content": "on it"}],
              "finish_reason": "stop"}]),
        "gen_ai.usage.input_tokens": 12, "gen_ai.usage.output_tokens": 3,
        "gen_ai.conversation.id": "conv-otlp-1",
    }


def _kv(key: str, value) -> KeyValue:
    if isinstance(value, bool):
        v = AnyValue(bool_value=value)
    elif isinstance(value, int):
        v = AnyValue(int_value=value)
    else:
        v = AnyValue(string_value=str(value))
    return KeyValue(key=key, value=v)


def hand_span(trace_id: bytes, span_id: bytes, attributes: dict, name: str = "chat") -> Span:
    now = time.time_ns()
    return Span(trace_id=trace_id, span_id=span_id, name=name, kind=Span.SPAN_KIND_CLIENT,
                start_time_unix_nano=now - 5_000_000, end_time_unix_nano=now,
                attributes=[_kv(k, v) for k, v in attributes.items()])


def hand_request(*spans: Span, service: str = SERVICE) -> ExportTraceServiceRequest:
    rs = ResourceSpans()
    rs.resource.attributes.append(_kv("service.name", service))
    ss = rs.scope_spans.add()
    ss.scope.name = "hand-built"
    ss.spans.extend(spans)
    return ExportTraceServiceRequest(resource_spans=[rs])


def new_trace() -> bytes:
    return secrets.token_bytes(16)


def raw_grpc(endpoint: str, payload: bytes, key: str = "") -> bytes:
    with grpc.insecure_channel(endpoint) as channel:
        call = channel.unary_unary(EXPORT)  # bytes in, bytes out
        metadata = [("authorization", f"Bearer {key}")] if key else None
        return call(payload, timeout=30, metadata=metadata)


def post(collector: CollectorProc, body: bytes, ctype: str = "application/x-protobuf",
         **headers: str) -> httpx.Response:
    return httpx.post(collector.url + "/v1/traces", content=body, timeout=30,
                      headers={"Content-Type": ctype, **headers})


def http_status(resp: httpx.Response):
    """The google.rpc.Status of an OTLP/HTTP error, decoded in its content type."""
    if resp.headers["content-type"].startswith("application/json"):
        return json_format.Parse(resp.text, Status())
    return Status.FromString(resp.content)


def otlp_json(request: ExportTraceServiceRequest) -> bytes:
    """OTLP/JSON of ``request``: protobuf's JSON mapping, but ids in hex."""
    doc = json_format.MessageToDict(request)
    for rs in doc["resourceSpans"]:
        for ss in rs["scopeSpans"]:
            for span in ss["spans"]:
                for k in ("traceId", "spanId", "parentSpanId"):
                    if k in span:
                        span[k] = base64.b64decode(span[k]).hex()
    return json.dumps(doc).encode()


# ------------------------------------------------------------------ happy paths

@pytest.mark.parametrize("transport,compressed", [("grpc", False), ("grpc", True),
                                                  ("http", False), ("http", True)])
def test_the_real_exporters_seal_genai_spans_redacted(open_collector, transport, compressed):
    spans, trace_id = sdk_spans(n_genai=2)
    if transport == "grpc":
        exporter = GrpcExporter(endpoint=open_collector.grpc, insecure=True,
                                compression=grpc.Compression.Gzip if compressed else None)
    else:
        exporter = HttpExporter(endpoint=open_collector.url + "/v1/traces",
                                compression=HttpCompression.Gzip if compressed
                                else HttpCompression.NoCompression)
    assert exporter.export(spans) == SpanExportResult.SUCCESS
    exporter.shutdown()
    records = stored(open_collector, trace_id)
    assert len(records) == 2
    for rec in records:
        assert rec["event_type"] == "model_call" and rec["service"] == SERVICE
        assert (rec["provider"], rec["model"]) == ("openai", "gpt-4o")
        assert (rec["input_tokens"], rec["output_tokens"]) == (12, 3)
        assert rec["task_id"] == "conv-otlp-1" and rec["trace_id"] == trace_id
        assert "bob@example.com" not in rec["input"] and "[EMAIL:" in rec["input"]
        assert "on it" in rec["output"]
    assert {r["span_id"] for r in records} == {format(s.context.span_id, "016x")
                                               for s in spans}
    verify_clean(open_collector)


def test_otlp_json_over_http_is_sealed_and_answered_in_json(open_collector):
    trace = new_trace()
    request = hand_request(hand_span(trace, secrets.token_bytes(8),
                                     genai_attributes("json question")))
    for body, extra in ((otlp_json(request), {}),
                        (gzip.compress(otlp_json(request)), {"Content-Encoding": "gzip"})):
        resp = post(open_collector, body, "application/json", **extra)
        assert resp.status_code == 200, resp.text
        assert resp.headers["content-type"].startswith("application/json")
        json_format.Parse(resp.text, ExportTraceServiceResponse())
    records = stored(open_collector, trace.hex())
    assert len(records) == 1  # the second post was the same span: deduplicated
    assert records[0]["model"] == "gpt-4o" and "json question" in records[0]["input"]
    verify_clean(open_collector)


def test_a_retried_export_is_deduplicated_on_both_transports(open_collector):
    spans, trace_id = sdk_spans(n_genai=3)
    before = otlp_stats(open_collector)
    grpc_exp = GrpcExporter(endpoint=open_collector.grpc, insecure=True)
    http_exp = HttpExporter(endpoint=open_collector.url + "/v1/traces")
    for exporter in (grpc_exp, grpc_exp, http_exp):
        assert exporter.export(spans) == SpanExportResult.SUCCESS
    grpc_exp.shutdown()
    http_exp.shutdown()
    assert len(stored(open_collector, trace_id)) == 3
    after = otlp_stats(open_collector)
    assert after["accepted"] - before["accepted"] == 3
    assert after["duplicates"] - before["duplicates"] == 6
    verify_clean(open_collector)


def test_spans_that_are_not_genai_are_counted_not_stored(open_collector):
    spans, trace_id = sdk_spans(n_genai=1, n_other=3)  # the root and two db spans
    before = otlp_stats(open_collector)
    request = encode_spans(spans)
    for reply in (ExportTraceServiceResponse.FromString(
                      raw_grpc(open_collector.grpc, request.SerializeToString())),
                  ExportTraceServiceResponse.FromString(
                      post(open_collector, request.SerializeToString()).content)):
        assert reply.partial_success.rejected_spans == 0  # left out, not refused
        assert "3 span(s) are not GenAI" in reply.partial_success.error_message
    records = stored(open_collector, trace_id)
    assert [r["event_type"] for r in records] == ["model_call"]
    after = otlp_stats(open_collector)
    assert after["not_genai"] - before["not_genai"] == 6
    assert after["spans"] - before["spans"] == 8
    verify_clean(open_collector)


# ------------------------------------------------------------------ authentication

def test_api_keys_are_required_on_both_transports(keyed, monkeypatch):
    collector, key = keyed
    spans, trace_id = sdk_spans()
    before = count_records(collector)
    for headers in ({}, {"authorization": "Bearer ait_nope_wrongsecret"}):
        exporter = GrpcExporter(endpoint=collector.grpc, insecure=True, headers=headers,
                                timeout=10)
        assert exporter.export(spans) == SpanExportResult.FAILURE
        exporter.shutdown()
        with pytest.raises(grpc.RpcError) as err:
            raw_grpc(collector.grpc, b"\x0a\x00", key=headers.get("authorization", "")[7:])
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
        resp = httpx.post(collector.url + "/v1/traces", content=b"\x0a\x00", timeout=30,
                          headers={"Content-Type": "application/x-protobuf", **headers})
        assert resp.status_code == 401
        assert "API key" in http_status(resp).message
        assert resp.headers["www-authenticate"].startswith("Bearer")
    # A console-style token is not an ingest key either; and the key is checked first.
    resp = post(collector, b"", Authorization="Bearer aitk_console_token")
    assert resp.status_code == 401
    assert post(collector, b"x", "text/plain").status_code == 401
    assert count_records(collector) == before and stored(collector, trace_id) == []
    for exporter in (GrpcExporter(endpoint=collector.grpc, insecure=True,
                                  headers={"authorization": f"Bearer {key}"}),
                     HttpExporter(endpoint=collector.url + "/v1/traces",
                                  headers={"Authorization": f"Bearer {key}"})):
        assert exporter.export(spans) == SpanExportResult.SUCCESS
        exporter.shutdown()
    # The exporters' standard variable carries it too (a retry of the same span here).
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", f"authorization=Bearer%20{key}")
    exporter = GrpcExporter(endpoint=collector.grpc, insecure=True)
    assert exporter.export(spans) == SpanExportResult.SUCCESS
    exporter.shutdown()
    records = stored(collector, trace_id)
    assert len(records) == 1 and records[0]["principal_kind"] == "apikey"
    verify_clean(collector)


def test_a_key_may_only_write_its_own_service_refused_spans_are_counted(keyed):
    collector, key = keyed
    trace = new_trace()
    request = hand_request(hand_span(trace, secrets.token_bytes(8), genai_attributes("q")),
                           service="someone-else")
    reply = ExportTraceServiceResponse.FromString(
        raw_grpc(collector.grpc, request.SerializeToString(), key=key))
    assert reply.partial_success.rejected_spans == 1
    assert "does not match the API key's service" in reply.partial_success.error_message
    assert stored(collector, trace.hex()) == []
    verify_clean(collector)


def test_span_content_is_redacted_under_the_collectors_key_and_policy(keyed):
    """The key file gives the tokens the SDK gives with the same AITRAIL_REDACTION_KEY;
    the policy and the task-id keys are the collector's flags."""
    from aitrail.record.redact import Redactor
    collector, key = keyed
    trace = new_trace()
    attributes = {**genai_attributes("write to carol@example.com"), "session.id": "S-7"}
    request = hand_request(hand_span(trace, secrets.token_bytes(8), attributes))
    resp = post(collector, request.SerializeToString(), Authorization=f"Bearer {key}")
    assert resp.status_code == 200, resp.text
    (rec,) = stored(collector, trace.hex())
    sdk = Redactor(REDACTION_KEY.encode())
    assert sdk.apply("input", "carol@example.com") in rec["input"]
    assert "carol@example.com" not in rec["input"]
    assert rec["task_id"] == "S-7"  # session.id before the conversation id here
    policy = Redactor(REDACTION_KEY.encode(), {"attributes.gen_ai.conversation.id": "hash"})
    assert rec["attributes"]["gen_ai.conversation.id"] == \
        policy.apply("attributes.gen_ai.conversation.id", "conv-otlp-1")
    assert rec["attributes"]["session.id"] == "S-7"  # kept: the policy names one field
    verify_clean(collector)


# ------------------------------------------------------------------ malformed input

def _refused_everywhere(collector: CollectorProc, payload: bytes, expected: str,
                        json_body: bytes = b"") -> None:
    """``payload`` is refused whole over gRPC and HTTP (and ``json_body`` as OTLP/JSON)
    with a message containing ``expected``; nothing is stored."""
    before = count_records(collector)
    with pytest.raises(grpc.RpcError) as err:
        raw_grpc(collector.grpc, payload)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert expected in err.value.details(), err.value.details()
    resp = post(collector, payload)
    assert resp.status_code == 400
    assert resp.headers["content-type"] == "application/x-protobuf"
    status = http_status(resp)
    assert status.code == 3 and expected in status.message, status.message
    if json_body:
        resp = post(collector, json_body, "application/json")
        assert resp.status_code == 400 and resp.headers["content-type"] == "application/json"
        assert expected in http_status(resp).message
    assert count_records(collector) == before
    verify_clean(collector)


def test_bad_protobuf_is_refused_whole(open_collector):
    _refused_everywhere(open_collector, b"\xff\xff\xff\xff not protobuf",
                        "not a valid OTLP ExportTraceServiceRequest")


def test_bad_json_is_refused_whole(open_collector):
    before = count_records(open_collector)
    for body, expected in ((b"{not json", "not JSON"),
                           (b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": '
                            b'"zz"}]}]}]}', "not hex"),
                           (b'{"resourceSpans": 7}', "ExportTraceServiceRequest")):
        resp = post(open_collector, body, "application/json")
        assert resp.status_code == 400, resp.text
        assert expected in http_status(resp).message, http_status(resp).message
    assert count_records(open_collector) == before
    verify_clean(open_collector)


@pytest.mark.parametrize("trace_id,span_id,expected", [
    (b"\x01" * 8, b"\x02" * 8, "trace_id must be 16 bytes"),
    (b"\x00" * 16, b"\x02" * 8, "all zero"),
    (b"\x01" * 16, b"\x02" * 3, "span_id must be 8 bytes"),
])
def test_invalid_ids_refuse_the_whole_request(open_collector, trace_id, span_id, expected):
    good = hand_span(new_trace(), secrets.token_bytes(8), genai_attributes("good one"))
    bad = hand_span(trace_id, span_id, genai_attributes("bad one"))
    request = hand_request(good, bad)
    _refused_everywhere(open_collector, request.SerializeToString(), expected,
                        otlp_json(request))
    assert stored(open_collector, good.trace_id.hex()) == []


def test_an_attribute_longer_than_any_record_may_hold_refuses_the_request(open_collector):
    good = hand_span(new_trace(), secrets.token_bytes(8), genai_attributes("fine"))
    big = hand_span(new_trace(), secrets.token_bytes(8),
                    {**genai_attributes("x"), "gen_ai.input.messages": "y" * (MAX_TEXT + 1)})
    request = hand_request(good, big)
    _refused_everywhere(open_collector, request.SerializeToString(),
                        f"is {MAX_TEXT + 1} characters long; the limit is {MAX_TEXT}",
                        otlp_json(request))
    assert stored(open_collector, good.trace_id.hex()) == []


def test_too_large_bodies_and_gzip_bombs_are_refused(open_collector):
    before = count_records(open_collector)
    spans = [hand_span(new_trace(), secrets.token_bytes(8),
                       {**genai_attributes("x"), "pad": "p" * 40_000}) for _ in range(12)]
    big = hand_request(*spans).SerializeToString()
    assert len(big) > MAX_MESSAGE
    with pytest.raises(grpc.RpcError) as err:
        raw_grpc(open_collector.grpc, big)
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    resp = post(open_collector, big)
    assert resp.status_code == 413 and "--max-message-bytes" in http_status(resp).message
    # A gzip bomb: a few hundred bytes that inflate past the limit.
    bomb = gzip.compress(b"\x0a" * (50 * MAX_MESSAGE))
    assert len(bomb) < MAX_MESSAGE // 10
    resp = post(open_collector, bomb, **{"Content-Encoding": "gzip"})
    assert resp.status_code == 413 and "inflates to more than" in http_status(resp).message
    with grpc.insecure_channel(open_collector.grpc) as channel:
        with pytest.raises(grpc.RpcError) as err:
            channel.unary_unary(EXPORT)(b"\x0a" * (50 * MAX_MESSAGE), timeout=30,
                                        compression=grpc.Compression.Gzip)
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    # Broken gzip is a bad request, not a crash.
    resp = post(open_collector, gzip.compress(big)[:200], **{"Content-Encoding": "gzip"})
    assert resp.status_code == 400 and "gzip" in http_status(resp).message
    assert count_records(open_collector) == before
    assert otlp_stats(open_collector)["refused_requests"]["too_large"] >= 2
    verify_clean(open_collector)


def test_unknown_content_types_and_encodings_are_415(open_collector):
    resp = post(open_collector, b"{}", "text/plain")
    assert resp.status_code == 415 and "Content-Type" in http_status(resp).message
    resp = post(open_collector, b"{}", "application/json", **{"Content-Encoding": "br"})
    assert resp.status_code == 415 and "Content-Encoding" in http_status(resp).message
    assert resp.headers["content-type"] == "application/json"
    verify_clean(open_collector)


# ------------------------------------------------------------------ evaluations

def test_evaluation_events_are_sealed_beside_the_model_call(open_collector):
    """gen_ai.evaluation.result events become `evaluation` records in the task's
    timeline, with the call they evaluate; one without a name is refused alone."""
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource({"service.name": SERVICE}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    task = f"T-eval-{secrets.token_hex(3)}"
    with provider.get_tracer("test-otlp").start_as_current_span("chat gpt-4o") as span:
        span.set_attributes(dict(genai_attributes("is this right?"), **{
            "aitrail.task_id": task, "gen_ai.response.id": "chatcmpl-ev1"}))
        span.add_event("gen_ai.evaluation.result", {
            "gen_ai.evaluation.name": "relevance", "gen_ai.evaluation.score.value": 0.25,
            "gen_ai.evaluation.score.label": "irrelevant",
            "gen_ai.evaluation.explanation": "Off topic; write to ann@example.com"})
        span.add_event("gen_ai.evaluation.result", {"gen_ai.evaluation.score.label": "x"})
    provider.shutdown()
    reply = ExportTraceServiceResponse.FromString(
        post(open_collector, encode_spans(memory.get_finished_spans()).SerializeToString())
        .content)
    assert reply.partial_success.rejected_spans == 1
    assert "evaluation needs a name" in reply.partial_success.error_message
    timeline = open_collector.get(f"/api/v1/tasks/{task}/timeline")["events"]
    assert [r["event_type"] for r in timeline] == ["model_call", "evaluation"]
    call, evaluation = timeline
    assert call["response_id"] == evaluation["response_id"] == "chatcmpl-ev1"
    assert (evaluation["evaluation_name"], evaluation["score_label"]) == ("relevance",
                                                                          "irrelevant")
    assert evaluation["score_value"] == 0.25
    assert "ann@example.com" not in evaluation["explanation"]
    assert "[EMAIL:" in evaluation["explanation"]
    assert evaluation["trace_id"] == call["trace_id"]
    found = open_collector.get(f"/api/v1/records?type=evaluation&task={task}")
    assert [r["record_id"] for r in found["records"]] == [evaluation["record_id"]]
    verify_clean(open_collector)
