"""Capture what the real OpenAI instrumentations emit, offline, as JSON fixtures.

Run: ``python tests/testdata/otel/capture.py`` (from the repository, in the project's venv).
Each instrumentation runs in its own subprocess, because instrumentors patch the ``openai``
module globally and read their environment at ``instrument()`` time.

The OpenAI API is stood in for by ``httpx2.MockTransport`` (openai 3.x is built on httpx2;
tests/fake_openai.py), so the real client code, the real instrumentor and the real
OpenTelemetry SDK run; only the socket to api.openai.com does not. Ids come from a counting generator, so reruns differ only in times.

Writes ``<instrumentation>-<case>.json`` beside this file: the finished spans (and, for the
official instrumentation, the log records it emits as events).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))  # tests/: the fake OpenAI API the tests use too
import fake_openai  # noqa: E402

#: what each instrumentation needs in its environment to capture message content
INSTRUMENTATIONS: dict[str, dict[str, str]] = {
    "openinference": {},
    # the official instrumentation: content on the span attributes (span_only) ...
    "otel-v2-span": {
        "OTEL_SEMCONV_STABILITY_OPT_IN": "gen_ai_latest_experimental",
        "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT": "span_only",
    },
    # ... or as the gen_ai.client.inference.operation.details event (a log record)
    "otel-v2-event": {
        "OTEL_SEMCONV_STABILITY_OPT_IN": "gen_ai_latest_experimental",
        "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT": "event_only",
    },
    # OpenLLMetry's default: content as gen_ai.input/output.messages span attributes ...
    "openllmetry": {"TRACELOOP_TRACE_CONTENT": "true"},
    # ... or, with use_attributes=False, as log-record events
    "openllmetry-events": {"TRACELOOP_TRACE_CONTENT": "true"},
}

CASES: dict[str, dict[str, Any]] = {
    "chat": {"prompt": fake_openai.PROMPT, "answer": fake_openai.ANSWER, "stream": False},
    "stream": {"prompt": fake_openai.PROMPT, "answer": fake_openai.ANSWER, "stream": True},
    "pii": {"prompt": fake_openai.PII_PROMPT, "answer": fake_openai.PII_ANSWER,
            "stream": False},
    # the API refuses: HTTP 429, openai.RateLimitError raised through the instrumentor
    "error": {"prompt": fake_openai.PROMPT, "answer": None, "stream": False},
    # inside OpenInference's using_attributes(session_id, user_id): only OpenInference
    # reads it (session.id, user.id on its spans); the others ignore it
    "session": {"prompt": fake_openai.PROMPT, "answer": fake_openai.ANSWER, "stream": False,
                "session": True},
}


def run_case(case: Mapping[str, Any]) -> None:
    import openai
    from openinference.instrumentation import using_attributes
    client = fake_openai.client(case["answer"])
    if case.get("session"):
        with using_attributes(session_id="conv-42", user_id="user-42"):
            fake_openai.chat(client, case["prompt"])
        return
    if case["answer"] is not None:
        fake_openai.chat(client, case["prompt"], stream=case["stream"])
        return
    try:
        fake_openai.chat(client, case["prompt"])
    except openai.RateLimitError:
        return
    raise AssertionError("the mock API should have refused")


def counting_ids() -> Any:
    """Deterministic trace/span ids, so the fixtures are stable across reruns."""
    from opentelemetry.sdk.trace.id_generator import IdGenerator

    class CountingIds(IdGenerator):
        def __init__(self) -> None:
            self._trace = 0x0AF7651916CD43DD8448EB211C80319B
            self._span = 0x00F067AA0BA902B7

        def generate_trace_id(self) -> int:
            self._trace += 1
            return self._trace

        def generate_span_id(self) -> int:
            self._span += 1
            return self._span

    return CountingIds()


def jsonable(value: Any) -> Any:
    if isinstance(value, (tuple, list)):
        return [jsonable(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, bytes):
        return value.hex()
    return value


def span_dict(span: Any) -> dict[str, Any]:
    ctx = span.get_span_context()
    return {
        "name": span.name,
        "kind": span.kind.name,
        "trace_id": f"{ctx.trace_id:032x}",
        "span_id": f"{ctx.span_id:016x}",
        "parent_span_id": f"{span.parent.span_id:016x}" if span.parent else None,
        "start_time_unix_nano": span.start_time,
        "end_time_unix_nano": span.end_time,
        "status": {"code": span.status.status_code.name,
                   "description": span.status.description},
        "attributes": jsonable(dict(span.attributes or {})),
        "events": [{"name": e.name, "time_unix_nano": e.timestamp,
                    "attributes": jsonable(dict(e.attributes or {}))} for e in span.events],
        "resource": jsonable(dict(span.resource.attributes)),
        "scope": {"name": span.instrumentation_scope.name if span.instrumentation_scope else None,
                  "version": span.instrumentation_scope.version
                  if span.instrumentation_scope else None},
    }


def log_dict(data: Any) -> dict[str, Any]:
    record = data.log_record
    return {
        "event_name": getattr(record, "event_name", None),
        "time_unix_nano": record.timestamp or record.observed_timestamp,
        "trace_id": f"{record.trace_id:032x}" if record.trace_id else None,
        "span_id": f"{record.span_id:016x}" if record.span_id else None,
        "attributes": jsonable(dict(record.attributes or {})),
        "body": jsonable(record.body),
        "scope": {"name": data.instrumentation_scope.name if data.instrumentation_scope else None},
    }


def instrument(name: str, tracer_provider: Any, logger_provider: Any) -> Any:
    if name == "openinference":
        from openinference.instrumentation.openai import OpenAIInstrumentor as OI
        instrumentor: Any = OI()
        instrumentor.instrument(tracer_provider=tracer_provider)
    elif name.startswith("otel-v2"):
        from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor as V2
        instrumentor = V2()
        instrumentor.instrument(tracer_provider=tracer_provider,
                                logger_provider=logger_provider)
    elif name.startswith("openllmetry"):
        from opentelemetry.instrumentation.openai import OpenAIInstrumentor as LL
        instrumentor = LL(use_attributes=name == "openllmetry")
        instrumentor.instrument(tracer_provider=tracer_provider,
                                logger_provider=logger_provider)
    else:
        raise SystemExit(f"unknown instrumentation {name!r}")
    return instrumentor


def capture(name: str) -> None:
    """In this process: instrument, run every case, write one fixture per case."""
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    resource = Resource.create({"service.name": "support-bot", "service.version": "1.4.2",
                                "deployment.environment.name": "staging",
                                "host.name": "app-7"})
    spans = InMemorySpanExporter()
    tracer_provider = TracerProvider(resource=resource, id_generator=counting_ids())
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    logs = InMemoryLogRecordExporter()
    logger_provider = LoggerProvider(resource=resource)
    logger_provider.add_log_record_processor(SimpleLogRecordProcessor(logs))
    instrument(name, tracer_provider, logger_provider)
    app = tracer_provider.get_tracer("support-bot")

    for case_name, case in CASES.items():
        spans.clear()
        logs.clear()
        # the application's own span: the GenAI span must be its child, in its trace
        with app.start_as_current_span("handle-ticket"):
            run_case(case)
        out = {
            "instrumentation": name,
            "case": case_name,
            "environment": INSTRUMENTATIONS[name],
            "spans": [span_dict(s) for s in spans.get_finished_spans()],
            "logs": [log_dict(r) for r in logs.get_finished_logs()],
        }
        path = HERE / f"{name}-{case_name}.json"
        path.write_text(json.dumps(out, indent=1, sort_keys=True) + "\n")
        print(f"wrote {path.name}: {len(out['spans'])} spans, {len(out['logs'])} logs")


def versions() -> Iterator[str]:
    from importlib.metadata import version
    for dist in ("openai", "httpx2", "opentelemetry-sdk", "openinference-instrumentation-openai",
                 "opentelemetry-instrumentation-openai-v2", "opentelemetry-util-genai",
                 "opentelemetry-instrumentation-openai"):
        yield f"{dist}=={version(dist)}"


def main(argv: list[str]) -> int:
    if argv:
        capture(argv[0])
        return 0
    for name, env in INSTRUMENTATIONS.items():
        subprocess.run([sys.executable, __file__, name], check=True,
                       env={**os.environ, **env, "OTEL_SDK_DISABLED": "false"})
    print("\n".join(versions()))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
