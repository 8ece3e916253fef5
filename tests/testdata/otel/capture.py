"""Capture what the real OpenAI instrumentations emit, offline, as JSON fixtures.

Run: ``python tests/testdata/otel/capture.py`` (from the repository, in the project's venv).
Each instrumentation runs in its own subprocess, because instrumentors patch the ``openai``
module globally and read their environment at ``instrument()`` time.

The OpenAI API is stood in for by ``httpx2.MockTransport`` (openai 3.x is built on httpx2), so
the real client code, the real instrumentor and the real OpenTelemetry SDK run; only the socket
to api.openai.com does not. Ids come from a counting generator, so reruns differ only in times.

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

MODEL = "gpt-4o-2024-08-06"
SYSTEM = "You are a concise support assistant."
PROMPT = "How do I reset my password?"
PII_PROMPT = (
    "My e-mail is jane.doe@example.com, my SSN is 123-45-6789 and my card is "
    "4111 1111 1111 1111. Why was I charged twice?"
)
ANSWER = "Open Settings, choose Security, then Reset password."
PII_ANSWER = "I have flagged the duplicate charge on the card ending 1111 for a refund."

CASES: dict[str, dict[str, Any]] = {
    "chat": {"prompt": PROMPT, "answer": ANSWER, "stream": False},
    "stream": {"prompt": PROMPT, "answer": ANSWER, "stream": True},
    "pii": {"prompt": PII_PROMPT, "answer": PII_ANSWER, "stream": False},
    # the API refuses: HTTP 429, openai.RateLimitError raised through the instrumentor
    "error": {"prompt": PROMPT, "answer": None, "stream": False},
}

USAGE = {
    "prompt_tokens": 42,
    "completion_tokens": 17,
    "total_tokens": 59,
    "prompt_tokens_details": {"cached_tokens": 8, "audio_tokens": 0},
    "completion_tokens_details": {
        "reasoning_tokens": 5,
        "audio_tokens": 0,
        "accepted_prediction_tokens": 0,
        "rejected_prediction_tokens": 0,
    },
}


def completion_body(answer: str) -> dict[str, Any]:
    """A realistic non-streamed chat.completion response."""
    return {
        "id": "chatcmpl-AbC123xyz",
        "object": "chat.completion",
        "created": 1764640000,
        "model": MODEL,
        "system_fingerprint": "fp_50cad350e4",
        "service_tier": "default",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": answer, "refusal": None},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": USAGE,
    }


def stream_body(answer: str) -> bytes:
    """The same response as server-sent chat.completion.chunk events (with include_usage)."""
    base = {
        "id": "chatcmpl-AbC123xyz",
        "object": "chat.completion.chunk",
        "created": 1764640000,
        "model": MODEL,
        "system_fingerprint": "fp_50cad350e4",
    }
    words = answer.split(" ")
    chunks: list[dict[str, Any]] = [
        {**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""},
                              "finish_reason": None}]}
    ]
    for i, word in enumerate(words):
        text = word if i == 0 else " " + word
        chunks.append({**base, "choices": [{"index": 0, "delta": {"content": text},
                                            "finish_reason": None}]})
    chunks.append({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    chunks.append({**base, "choices": [], "usage": USAGE})
    lines = [f"data: {json.dumps(c)}\n\n" for c in chunks] + ["data: [DONE]\n\n"]
    return "".join(lines).encode()


def mock_openai_client(answer: str | None) -> Any:
    """The real openai client whose HTTP goes to an in-process MockTransport."""
    import httpx2
    import openai

    def handle(request: httpx2.Request) -> httpx2.Response:
        sent = json.loads(request.content)
        if answer is None:
            return httpx2.Response(429, headers={"x-request-id": "req_0123456789abcdef"}, json={
                "error": {"message": "Rate limit reached for gpt-4o", "type": "requests",
                          "param": None, "code": "rate_limit_exceeded"}})
        if sent.get("stream"):
            return httpx2.Response(
                200, headers={"content-type": "text/event-stream",
                              "x-request-id": "req_0123456789abcdef"},
                content=stream_body(answer))
        return httpx2.Response(
            200, headers={"x-request-id": "req_0123456789abcdef"},
            json=completion_body(answer))

    return openai.OpenAI(api_key="sk-test-offline", base_url="https://api.openai.com/v1",
                         http_client=httpx2.Client(transport=httpx2.MockTransport(handle)),
                         max_retries=0)


def run_case(client: Any, case: Mapping[str, Any]) -> None:
    import openai
    messages = [{"role": "system", "content": SYSTEM},
                {"role": "user", "content": case["prompt"]}]
    params: dict[str, Any] = {"model": "gpt-4o", "messages": messages, "temperature": 0.2,
                              "max_tokens": 256, "user": "user-42"}
    if case["stream"]:
        stream = client.chat.completions.create(
            stream=True, stream_options={"include_usage": True}, **params)
        "".join((c.choices[0].delta.content or "") for c in stream if c.choices)
    elif case["answer"] is None:
        try:
            client.chat.completions.create(**params)
        except openai.RateLimitError:
            pass
        else:
            raise AssertionError("the mock API should have refused")
    else:
        client.chat.completions.create(**params)


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
        client = mock_openai_client(case["answer"])
        # the application's own span: the GenAI span must be its child, in its trace
        with app.start_as_current_span("handle-ticket"):
            run_case(client, case)
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
