"""The OpenAI API, offline: the real ``openai`` client over an ``httpx2.MockTransport``.

openai 3.x is built on httpx2, so ``httpx2.MockTransport`` stands in for the socket to the
API while the client, the instrumentors that patch it and the OpenTelemetry SDK all run for
real. Used by the OTLP end-to-end tests and by tests/testdata/otel/capture.py (which wrote
the fixtures of what each instrumentation emits from these same answers).
"""

from __future__ import annotations

import json
from typing import Any, Optional

MODEL = "gpt-4o-2024-08-06"        # the snapshot the API answers with
REQUEST_MODEL = "gpt-4o"           # what the application asks for
RESPONSE_ID = "chatcmpl-AbC123xyz"
SYSTEM = "You are a concise support assistant."
PROMPT = "How do I reset my password?"
ANSWER = "Open Settings, choose Security, then Reset password."
EMAIL, SSN, CARD = "jane.doe@example.com", "123-45-6789", "4111 1111 1111 1111"
PII_PROMPT = (f"My e-mail is {EMAIL}, my SSN is {SSN} and my card is {CARD}. "
              "Why was I charged twice?")
PII_ANSWER = "I have flagged the duplicate charge on the card ending 1111 for a refund."

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
        "id": RESPONSE_ID,
        "object": "chat.completion",
        "created": 1764640000,
        "model": MODEL,
        "system_fingerprint": "fp_50cad350e4",
        "service_tier": "default",
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": answer, "refusal": None},
            "logprobs": None,
            "finish_reason": "stop",
        }],
        "usage": USAGE,
    }


def stream_body(answer: str) -> bytes:
    """The same response as server-sent chat.completion.chunk events (with include_usage)."""
    base = {"id": RESPONSE_ID, "object": "chat.completion.chunk", "created": 1764640000,
            "model": MODEL, "system_fingerprint": "fp_50cad350e4"}

    def chunk(delta: dict[str, Any], finish: Optional[str] = None) -> dict[str, Any]:
        return {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

    words = answer.split(" ")
    chunks = [chunk({"role": "assistant", "content": ""})]
    chunks += [chunk({"content": w if i == 0 else " " + w}) for i, w in enumerate(words)]
    chunks += [chunk({}, "stop"), {**base, "choices": [], "usage": USAGE}]
    return "".join([f"data: {json.dumps(c)}\n\n" for c in chunks] + ["data: [DONE]\n\n"]).encode()


def client(answer: Optional[str] = ANSWER) -> Any:
    """The real openai client whose HTTP goes to an in-process MockTransport that
    answers every chat completion with ``answer`` (streamed when asked), or, when
    ``answer`` is None, refuses it with HTTP 429 (openai.RateLimitError)."""
    import httpx2
    import openai

    def handle(request: httpx2.Request) -> httpx2.Response:
        headers = {"x-request-id": "req_0123456789abcdef"}
        if answer is None:
            return httpx2.Response(429, headers=headers, json={"error": {
                "message": "Rate limit reached for gpt-4o", "type": "requests",
                "param": None, "code": "rate_limit_exceeded"}})
        if json.loads(request.content).get("stream"):
            return httpx2.Response(200, headers={**headers, "content-type": "text/event-stream"},
                                   content=stream_body(answer))
        return httpx2.Response(200, headers=headers, json=completion_body(answer))

    return openai.OpenAI(api_key="sk-test-offline", base_url="https://api.openai.com/v1",
                         http_client=httpx2.Client(transport=httpx2.MockTransport(handle)),
                         max_retries=0)


def chat(openai_client: Any, prompt: str = PROMPT, stream: bool = False) -> str:
    """One chat completion as an application makes it; returns the answer's text."""
    params: dict[str, Any] = {
        "model": REQUEST_MODEL, "temperature": 0.2, "max_tokens": 256, "user": "user-42",
        "messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": prompt}]}
    if stream:
        chunks = openai_client.chat.completions.create(
            stream=True, stream_options={"include_usage": True}, **params)
        return "".join((c.choices[0].delta.content or "") for c in chunks if c.choices)
    return str(openai_client.chat.completions.create(**params).choices[0].message.content)
