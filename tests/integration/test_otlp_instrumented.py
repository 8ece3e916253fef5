"""Real instrumentations, offline, end to end (issue 13).

The real ``openai`` client (its HTTP answered by tests/fake_openai.py's MockTransport), the
real instrumentor patching it, the real OpenTelemetry SDK; then either the real OTLP exporters
(gRPC and HTTP) to a real collector, or ``aitrail.otel.AuditSpanProcessor`` in the
application's own ``TracerProvider``. What was sealed is read back from the store.

Each instrumentor patches the ``openai`` module globally: ``instrumented`` undoes it after
every test, so the tests do not see each other's spans.
"""

from __future__ import annotations

import contextlib
import re
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import fake_openai
import pytest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from support import CollectorProc, cli, verdict

import aitrail
from aitrail.export import InMemoryExporter
from aitrail.otel import AuditSpanProcessor
from aitrail.otel.mapping import record_id_for

RESOURCE = {"service.name": "support-bot", "service.version": "1.4.2",
            "deployment.environment.name": "staging", "host.name": "app-7"}


@contextlib.contextmanager
def instrumented(instrumentor: Any, provider: TracerProvider, **kwargs: Any) -> Iterator[None]:
    instrumentor.instrument(tracer_provider=provider, **kwargs)
    try:
        yield
    finally:
        instrumentor.uninstrument()
        _unwrap_openai()


def _unwrap_openai() -> None:
    """Undo every wrapt wrapper left on the openai client's resource classes.

    OpenLLMetry 0.62.4's uninstrument() leaves its wrappers on (it names the patched
    method as "module.Completions", "create" dotted the wrong way, so its unwrap finds
    nothing): without this, its spans would go on reaching a later test's SDK."""
    from wrapt import BaseObjectProxy
    for name, module in list(sys.modules.items()):
        if not name.startswith("openai.resources") or module is None:
            continue
        for cls in [v for v in vars(module).values() if isinstance(v, type)]:
            for attr, value in list(vars(cls).items()):
                # type(), not isinstance(): a proxy passes itself off as what it wraps
                while issubclass(type(value), BaseObjectProxy):
                    value = value.__wrapped__
                    setattr(cls, attr, value)


def openinference() -> Any:
    from openinference.instrumentation.openai import OpenAIInstrumentor
    return OpenAIInstrumentor()


def app_provider() -> tuple[TracerProvider, InMemorySpanExporter]:
    """The application's tracer provider, with an in-memory copy of every span it ends
    (what the application itself saw, to compare the store against)."""
    provider = TracerProvider(resource=Resource.create(RESOURCE))
    seen = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(seen))
    return provider, seen


def genai_spans(seen: InMemorySpanExporter) -> list[ReadableSpan]:
    return [s for s in seen.get_finished_spans() if s.name != "handle-ticket"]


def hex_ids(span: ReadableSpan) -> tuple[str, str, str]:
    ctx, parent = span.get_span_context(), span.parent
    return (format(ctx.trace_id, "032x"), format(ctx.span_id, "016x"),
            format(parent.span_id, "016x") if parent else "")


def assert_redacted(text: str) -> None:
    """No raw e-mail address, SSN or card number; each replaced by its typed token."""
    for raw in (fake_openai.EMAIL, fake_openai.SSN, fake_openai.CARD,
                fake_openai.CARD.replace(" ", "")):
        assert raw not in text
    for token in ("[EMAIL:", "[SSN:", "[CARD:"):
        assert token in text, text


def stored(collector: CollectorProc, query: str) -> list[dict[str, Any]]:
    return collector.get(f"/api/v1/records?limit=1000&{query}")["records"]


def assert_verifies(collector: CollectorProc, records: int) -> None:
    """`aitrail verify` is clean, over at least ``records`` (the collector seals a
    data_access record of each of the test's reads too)."""
    out = cli("verify", "--data-dir", str(collector.data_dir))
    assert out.returncode == 0, out.stdout + out.stderr
    found = re.match(r"OK: (\d+) records", verdict(out.stdout))
    assert found and int(found.group(1)) >= records, out.stdout


# ------------------------------------------- over the network: OTLP exporters -> collector

REDACTION_KEY = "test-key"   # the collector's, and the SDK's in the tests below: equal tokens


@pytest.fixture(scope="module")
def otlp_collector(tmp_path_factory) -> Iterator[tuple[CollectorProc, str]]:
    """(collector, API key): keys required, the key writes as the app's service; span
    content redacted under REDACTION_KEY."""
    from aitrail_collector.ingest.apikeys import create_key
    base = tmp_path_factory.mktemp("otlp-instrumented")
    keys, key_file = str(base / "keys.json"), base / "redaction.key"
    key_file.write_text(REDACTION_KEY)
    key = create_key(keys, RESOURCE["service.name"])
    proc = CollectorProc(base / "store", "--api-keys", keys,
                         "--redaction-key-file", str(key_file)).start()
    yield proc, key
    proc.stop()


def otlp_exporter(transport: str, collector: CollectorProc, key: str) -> Any:
    """The real OTLP span exporter, as an application configures it for aitrail."""
    headers = {"authorization": f"Bearer {key}"}
    if transport == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
        return OTLPSpanExporter(endpoint=collector.grpc, insecure=True, headers=headers)
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
        OTLPSpanExporter as HttpSpanExporter,
    )
    return HttpSpanExporter(endpoint=collector.url + "/v1/traces", headers=headers)


@pytest.mark.parametrize("transport", ["grpc", "http"])
def test_openinference_over_otlp_is_sealed_redacted_in_the_apps_trace(otlp_collector, transport):
    from openinference.instrumentation import using_attributes
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    from aitrail.record.redact import Redactor
    collector, key = otlp_collector
    not_genai = collector.get("/healthz")["otlp"]["not_genai"]
    provider, seen = app_provider()
    provider.add_span_processor(BatchSpanProcessor(otlp_exporter(transport, collector, key)))
    app = provider.get_tracer("support-bot")
    with instrumented(openinference(), provider):
        # OpenInference's session id (session.id on its spans) becomes the task id
        with app.start_as_current_span("handle-ticket") as root, \
                using_attributes(session_id=f"T-ticket-{transport}", user_id="user-42"):
            answer = fake_openai.chat(fake_openai.client(fake_openai.PII_ANSWER),
                                      fake_openai.PII_PROMPT)
            streamed = fake_openai.chat(fake_openai.client(), stream=True)
    assert (answer, streamed) == (fake_openai.PII_ANSWER, fake_openai.ANSWER)
    assert provider.force_flush(30_000)
    provider.shutdown()

    trace_id = format(root.get_span_context().trace_id, "032x")
    app_span_id = format(root.get_span_context().span_id, "016x")
    spans = genai_spans(seen)
    records = stored(collector, f"trace_id={trace_id}")
    # one record per GenAI span, in the application's trace; its own span made none
    assert sorted(r["span_id"] for r in records) == sorted(hex_ids(s)[1] for s in spans)
    assert collector.get("/healthz")["otlp"]["not_genai"] == not_genai + 1
    by_span = {r["span_id"]: r for r in records}
    pii, plain = (by_span[hex_ids(s)[1]] for s in spans)
    for rec in (pii, plain):
        assert (rec["event_type"], rec["trace_id"], rec["parent_span_id"]) == (
            "model_call", trace_id, app_span_id)
        assert rec["task_id"] == f"T-ticket-{transport}"
        assert rec["attributes"]["user.id"] == "user-42"
        assert (rec["provider"], rec["model"], rec["model_version"]) == (
            "openai", fake_openai.REQUEST_MODEL, fake_openai.MODEL)
        assert (rec["input_tokens"], rec["output_tokens"]) == (42, 17)
        assert (rec["service"], rec["service_version"], rec["environment"], rec["host"]) == (
            "support-bot", "1.4.2", "staging", "app-7")
        assert fake_openai.SYSTEM in rec["input"]
    assert (pii["output"], plain["output"]) == (fake_openai.PII_ANSWER, fake_openai.ANSWER)
    assert_redacted(pii["input"])
    # the collector's tokens are the SDK's under the same key: same customer, same token
    assert Redactor(REDACTION_KEY.encode()).scan(fake_openai.PII_PROMPT) in pii["input"]
    assert_verifies(collector, len(records))


# ---------------------------------------------------- in process: AuditSpanProcessor

@pytest.fixture
def in_memory_sdk() -> Iterator[InMemoryExporter]:
    exporter = InMemoryExporter()
    aitrail.configure(exporter=exporter, service="fallback-svc", redaction_key=REDACTION_KEY,
                      delivery="best_effort", flush_interval=0.05)
    yield exporter
    aitrail.shutdown()


def run_through_processor(instrumentor: Any, exporter: InMemoryExporter, **kwargs: Any
                          ) -> tuple[list[Any], list[ReadableSpan]]:
    """A plain and a PII chat completion under the application's span, the provider
    carrying an AuditSpanProcessor; the records made and the GenAI spans seen."""
    provider, seen = app_provider()
    provider.add_span_processor(AuditSpanProcessor())
    app = provider.get_tracer("support-bot")
    with instrumented(instrumentor, provider, **kwargs):
        with app.start_as_current_span("handle-ticket"):
            assert fake_openai.chat(fake_openai.client()) == fake_openai.ANSWER
        with app.start_as_current_span("handle-ticket"):
            fake_openai.chat(fake_openai.client(fake_openai.PII_ANSWER), fake_openai.PII_PROMPT)
    assert aitrail.flush(10)
    return exporter.get_finished_records(), genai_spans(seen)


def assert_model_call(rec: Any, span: ReadableSpan, answer: str) -> None:
    call = rec.model_call
    assert rec.event_type == "model_call"
    assert (rec.trace_id, rec.span_id, rec.parent_span_id) == hex_ids(span)
    assert rec.record_id == record_id_for(rec.trace_id, rec.span_id, "model_call", 0,
                                          span.start_time or 0)
    assert (call.provider, call.model) == ("openai", fake_openai.REQUEST_MODEL)
    assert call.model_version == fake_openai.MODEL
    assert (call.usage.input_tokens, call.usage.output_tokens) == (42, 17)
    assert fake_openai.SYSTEM in call.input and call.output == answer
    assert (rec.service, rec.service_version, rec.environment, rec.host) == (
        "support-bot", "1.4.2", "staging", "app-7")


def test_openllmetry_spans_become_model_calls_in_process(in_memory_sdk, monkeypatch):
    from opentelemetry.instrumentation.openai import OpenAIInstrumentor
    monkeypatch.setenv("TRACELOOP_TRACE_CONTENT", "true")
    records, spans = run_through_processor(OpenAIInstrumentor(), in_memory_sdk)
    assert [s.instrumentation_scope.name for s in spans] == [
        "opentelemetry.instrumentation.openai.v1"] * 2
    assert len(records) == 2  # the application's own spans made none
    plain, pii = records
    assert_model_call(plain, spans[0], fake_openai.ANSWER)
    assert fake_openai.PROMPT in plain.model_call.input
    assert plain.attributes["gen_ai.response.id"] == fake_openai.RESPONSE_ID
    assert plain.attributes["gen_ai.usage.cache_read.input_tokens"] == "8"
    assert plain.attributes["gen_ai.usage.reasoning_tokens"] == "5"
    assert_model_call(pii, spans[1], fake_openai.PII_ANSWER)
    assert_redacted(pii.model_call.input)


def test_official_v2_spans_become_model_calls_in_process(in_memory_sdk, monkeypatch):
    monkeypatch.setenv("OTEL_SEMCONV_STABILITY_OPT_IN", "gen_ai_latest_experimental")
    # span_only: the content on the span, where the processor sees it (event_only would
    # put it in a log record, which no span processor is shown)
    monkeypatch.setenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "span_only")
    # The opt-in is read once per process, by the first instrumentor to start (here, maybe
    # an earlier test's): have it read again, as in an application that sets it at start.
    from opentelemetry.instrumentation._semconv import _OpenTelemetrySemanticConventionStability
    monkeypatch.setattr(_OpenTelemetrySemanticConventionStability, "_initialized", False)
    from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor
    records, spans = run_through_processor(OpenAIInstrumentor(), in_memory_sdk)
    assert [s.name for s in spans] == ["chat gpt-4o"] * 2
    assert len(records) == 2
    plain, pii = records
    assert_model_call(plain, spans[0], fake_openai.ANSWER)
    assert fake_openai.PROMPT in plain.model_call.input
    assert plain.attributes["gen_ai.response.id"] == fake_openai.RESPONSE_ID
    assert_model_call(pii, spans[1], fake_openai.PII_ANSWER)
    assert_redacted(pii.model_call.input)


# ------------------------------------------- in process, durable: collector down, then up

@pytest.fixture
def down_collector(tmp_path: Path) -> Iterator[CollectorProc]:
    """A collector whose ports are chosen but which is not running yet."""
    proc = CollectorProc(tmp_path / "store")
    yield proc
    proc.stop()


def test_processor_durable_spools_while_the_collector_is_down_and_loses_nothing(
        down_collector, tmp_path):
    aitrail.configure(endpoint=down_collector.grpc, service="fallback-svc",
                      redaction_key=REDACTION_KEY, delivery="durable",
                      spool_dir=str(tmp_path / "spool"), flush_interval=0.05, export_timeout=1)
    try:
        provider, seen = app_provider()
        processor = AuditSpanProcessor()
        provider.add_span_processor(processor)
        app = provider.get_tracer("support-bot")
        with instrumented(openinference(), provider):
            for i in range(3):
                with app.start_as_current_span("handle-ticket"):
                    fake_openai.chat(fake_openai.client(), stream=i == 1)
            with app.start_as_current_span("handle-ticket"):
                fake_openai.chat(fake_openai.client(fake_openai.PII_ANSWER),
                                 fake_openai.PII_PROMPT)
        spans = genai_spans(seen)
        assert len(spans) == 4
        assert not aitrail.flush(1)  # nothing can be delivered yet
        deadline = time.monotonic() + 30  # a loaded machine may take longer to spool
        while aitrail.stats()["spooled"] < 4 and time.monotonic() < deadline:
            time.sleep(0.05)
        stats = aitrail.stats()
        assert (stats["spooled"], stats["dropped"]) == (4, 0)

        down_collector.start()
        assert aitrail.flush(30)
        assert aitrail.stats()["replayed"] == 4
        records = stored(down_collector, "service=support-bot")
        # every GenAI span's record, exactly once; the application's own spans made none
        assert sorted(r["span_id"] for r in records) == sorted(hex_ids(s)[1] for s in spans)
        by_span = {r["span_id"]: r for r in records}
        for span in spans:
            trace_id, span_id, parent = hex_ids(span)
            rec = by_span[span_id]
            assert (rec["trace_id"], rec["parent_span_id"]) == (trace_id, parent)
            assert rec["record_id"] == record_id_for(trace_id, span_id, "model_call", 0,
                                                     span.start_time or 0)
            assert (rec["event_type"], rec["provider"], rec["model"]) == (
                "model_call", "openai", fake_openai.REQUEST_MODEL)
            assert (rec["input_tokens"], rec["output_tokens"]) == (42, 17)
        assert_redacted(by_span[hex_ids(spans[3])[1]]["input"])

        # The same spans again (a re-delivery): the same record ids, stored once.
        sent = aitrail.stats()["sent"]
        for span in spans:
            processor.on_end(span)
        assert aitrail.flush(30)
        assert aitrail.stats()["sent"] == sent + 4  # acknowledged, as duplicates
        assert len(stored(down_collector, "service=support-bot")) == 4
    finally:
        aitrail.shutdown()
    assert_verifies(down_collector, 4)
