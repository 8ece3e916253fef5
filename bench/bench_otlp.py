"""Acknowledged OTLP ingest next to native ingest, in the same run (issue 13).

1. One real ``aitrail collector`` subprocess (gRPC and HTTP on loopback, chDB store)
   is sent, from K client threads as pre-serialized raw bytes:
   BASELINE native ``aitrail.v1.AuditService/Export`` requests of ~1 KB model calls;
   then OTLP ``TraceService/Export`` requests of GenAI chat spans carrying the same
   content (current semconv keys: model, provider, input and output messages, token
   usage, a conversation id), the same number per call; then the same spans as
   OTLP/HTTP protobuf to ``POST /v1/traces``. Only acknowledged items count: native
   ``accepted``; OTLP spans not in ``partial_success.rejected_spans`` (every span is
   GenAI, each makes one record, so a clean answer acknowledges them all).
2. What OTLP adds to the native path, in this process, single thread, on the same
   requests: decoding the OTLP request, and ``aitrail.otel.otlp.records_of``
   (span views, the mapping, build_record with redaction).
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import threading
import time
from typing import Callable

import grpc
import httpx
from _common import CollectorProcess, machine_line, print_table, run_verify
from bench_ingest import text
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from aitrail.otel.otlp import records_of
from aitrail.record.ids import uuid7
from aitrail.record.redact import Redactor
from aitrail.v1 import audit_pb2 as pb

OTLP_EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
NATIVE_EXPORT = "/aitrail.v1.AuditService/Export"


def native_batches(total: int, batch_size: int, seed: int) -> list[bytes]:
    """ExportRequests of ~1 KB model calls (400 characters in, 400 out)."""
    rng = random.Random(seed)
    now = time.time_ns()
    out = []
    for start in range(0, total, batch_size):
        req = pb.ExportRequest()
        for i in range(start, min(total, start + batch_size)):
            rec = req.records.add(
                record_id=uuid7(), event_type="model_call", task_id=f"T-{i // 4:07d}",
                trace_id=f"{rng.getrandbits(128) | 1:032x}",
                span_id=f"{rng.getrandbits(64) | 1:016x}", start_time_unix_nano=now,
                end_time_unix_nano=now + 850_000_000, service="bench-otlp",
                service_version="1.4.2", environment="bench", host="bench-host",
                sdk_version="0.1.0")
            m = rec.model_call
            m.provider, m.model, m.model_version = "openai", "gpt-4o", "gpt-4o-2024-08-06"
            m.parameters["temperature"] = "0.2"
            m.input, m.output = text(rng, 400), text(rng, 400)
            m.usage.input_tokens, m.usage.output_tokens = 100, 100
        out.append(req.SerializeToString())
    return out


def _kv(key: str, value: object) -> KeyValue:
    if isinstance(value, int):
        return KeyValue(key=key, value=AnyValue(int_value=value))
    if isinstance(value, float):
        return KeyValue(key=key, value=AnyValue(double_value=value))
    return KeyValue(key=key, value=AnyValue(string_value=str(value)))


def otlp_batches(total: int, batch_size: int, seed: int) -> list[bytes]:
    """ExportTraceServiceRequests of GenAI chat spans with the same content."""
    rng = random.Random(seed)
    now = time.time_ns()
    resource = [_kv("service.name", "bench-otlp"), _kv("service.version", "1.4.2"),
                _kv("deployment.environment.name", "bench"), _kv("host.name", "bench-host"),
                _kv("telemetry.sdk.name", "opentelemetry"),
                _kv("telemetry.sdk.language", "python"), _kv("telemetry.sdk.version", "1.45")]
    out = []
    for start in range(0, total, batch_size):
        req = ExportTraceServiceRequest()
        rs = req.resource_spans.add()
        rs.resource.attributes.extend(resource)
        ss = rs.scope_spans.add()
        ss.scope.name = "opentelemetry.instrumentation.openai_v2"
        for i in range(start, min(total, start + batch_size)):
            question, answer = text(rng, 400), text(rng, 400)
            span = ss.spans.add(
                trace_id=(rng.getrandbits(128) | 1).to_bytes(16, "big"),
                span_id=(rng.getrandbits(64) | 1).to_bytes(8, "big"), name="chat gpt-4o",
                kind=3, start_time_unix_nano=now, end_time_unix_nano=now + 850_000_000)
            span.attributes.extend([
                _kv("gen_ai.operation.name", "chat"), _kv("gen_ai.provider.name", "openai"),
                _kv("gen_ai.request.model", "gpt-4o"),
                _kv("gen_ai.response.model", "gpt-4o-2024-08-06"),
                _kv("gen_ai.request.temperature", 0.2),
                _kv("gen_ai.conversation.id", f"T-{i // 4:07d}"),
                _kv("gen_ai.input.messages", json.dumps(
                    [{"role": "user", "parts": [{"type": "text", "content": question}]}])),
                _kv("gen_ai.output.messages", json.dumps(
                    [{"role": "assistant", "parts": [{"type": "text", "content": answer}],
                      "finish_reason": "stop"}])),
                _kv("gen_ai.usage.input_tokens", 100), _kv("gen_ai.usage.output_tokens", 100)])
        out.append(req.SerializeToString())
    return out


def native_acked(answer: bytes) -> int:
    return pb.ExportResponse.FromString(answer).accepted


def otlp_acked(n: int) -> Callable[[bytes], int]:
    def acked(answer: bytes) -> int:
        partial = ExportTraceServiceResponse.FromString(answer).partial_success
        if partial.error_message:
            raise SystemExit(f"the collector refused spans: {partial.error_message}")
        return n - partial.rejected_spans
    return acked


def send(batches: list[bytes], clients: int, call: Callable[[bytes], bytes],
         acked: Callable[[bytes], int]) -> tuple[float, int]:
    """Every batch from ``clients`` threads; (seconds, acknowledged items)."""
    total = [0]
    lock = threading.Lock()
    start = threading.Barrier(clients + 1)

    def client(share: list[bytes]) -> None:
        start.wait()
        for raw in share:
            n = acked(call(raw))
            with lock:
                total[0] += n

    threads = [threading.Thread(target=client, args=(batches[k::clients],))
               for k in range(clients)]
    for t in threads:
        t.start()
    start.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    return time.perf_counter() - t0, total[0]


def grpc_call(endpoint: str, method: str) -> Callable[[bytes], bytes]:
    channel = grpc.insecure_channel(endpoint, options=[("grpc.max_send_message_length",
                                                        64 << 20)])
    stub = channel.unary_unary(method)  # bytes in, bytes out
    return lambda raw: stub(raw, timeout=300)


def http_call(url: str) -> Callable[[bytes], bytes]:
    local = threading.local()

    def call(raw: bytes) -> bytes:
        if not hasattr(local, "client"):
            local.client = httpx.Client(timeout=300)
        resp = local.client.post(url, content=raw,
                                 headers={"Content-Type": "application/x-protobuf"})
        resp.raise_for_status()
        return resp.content
    return call


def mapping_rate(batches: list[bytes]) -> tuple[float, float]:
    """(spans/s decoding OTLP requests, spans/s of records_of), this process, one thread."""
    redactor = Redactor(b"bench-key")
    t0 = time.perf_counter()
    requests = [ExportTraceServiceRequest.FromString(raw) for raw in batches]
    decode = time.perf_counter() - t0
    spans = sum(len(ss.spans) for r in requests for rs in r.resource_spans
                for ss in rs.scope_spans)
    t0 = time.perf_counter()
    for r in requests:
        records_of(r, redactor)
    return spans / decode, spans / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="20k spans per figure, not 100k")
    ap.add_argument("--spans", type=int, default=None)
    ap.add_argument("--batch-size", type=int, default=512,
                    help="items per call (default 512: the OTel BatchSpanProcessor's "
                         "max_export_batch_size and the SDK's batch_size)")
    ap.add_argument("--clients", type=int, default=4)
    args = ap.parse_args()
    total = args.spans or (20_000 if args.quick else 100_000)
    total = -(-total // args.batch_size) * args.batch_size  # whole calls: each acks its n

    native = native_batches(total, args.batch_size, seed=1)
    warm_native = native_batches(args.batch_size, args.batch_size, seed=2)
    otlp = otlp_batches(total, args.batch_size, seed=3)
    otlp_http = otlp_batches(total, args.batch_size, seed=4)
    warm_otlp = otlp_batches(args.batch_size, args.batch_size, seed=5)
    print(f"bench_otlp: {total} items per figure (~{sum(map(len, native)) / total:.0f} B "
          f"native records, ~{sum(map(len, otlp)) / total:.0f} B OTLP spans), "
          f"{args.batch_size} per call, {args.clients} client threads; {machine_line()}")

    tmp = tempfile.TemporaryDirectory(prefix="aitrail-bench-otlp-")
    collector = CollectorProcess(f"{tmp.name}/data", http=True)
    try:
        native_call = grpc_call(collector.endpoint, NATIVE_EXPORT)
        otlp_call = grpc_call(collector.endpoint, OTLP_EXPORT)
        native_call(warm_native[0])  # untimed: connections, first statements
        otlp_call(warm_otlp[0])
        n_s, n_acked = send(native, args.clients, native_call, native_acked)
        g_s, g_acked = send(otlp, args.clients, otlp_call, otlp_acked(args.batch_size))
        h_s, h_acked = send(otlp_http, args.clients, http_call(collector.url + "/v1/traces"),
                            otlp_acked(args.batch_size))
        stats = httpx.get(collector.url + "/healthz", timeout=30).json()["otlp"]
    finally:
        rc = collector.stop()
    print(f"collector stopped with exit code {rc}; OTLP counters: {stats}")
    for name, acked in (("native", n_acked), ("OTLP/gRPC", g_acked), ("OTLP/HTTP", h_acked)):
        if acked != total:
            print(f"WARNING: {name}: {total} sent, {acked} acknowledged")
    print(f"aitrail verify: {run_verify(f'{tmp.name}/data')}")
    tmp.cleanup()
    decode, mapped = mapping_rate(otlp)

    native_rate, grpc_rate, http_rate = n_acked / n_s, g_acked / g_s, h_acked / h_s
    print_table("Acknowledged OTLP ingest vs native ingest, same collector, same run",
                ("figure", "items/s", "ratio"), [
                    ("BASELINE native AuditService/Export, records", f"{native_rate:,.0f}",
                     "1.00x"),
                    ("OTLP/gRPC TraceService/Export, GenAI spans", f"{grpc_rate:,.0f}",
                     f"{grpc_rate / native_rate:.2f}x"),
                    ("OTLP/HTTP POST /v1/traces (protobuf), GenAI spans", f"{http_rate:,.0f}",
                     f"{http_rate / native_rate:.2f}x")])
    print_table("What OTLP adds, this process, one thread, same requests",
                ("stage", "spans/s", "us/span"), [
                    ("decode ExportTraceServiceRequest (upb)", f"{decode:,.0f}",
                     f"{1e6 / decode:.1f}"),
                    ("records_of: views, mapping, build_record + redaction", f"{mapped:,.0f}",
                     f"{1e6 / mapped:.1f}")])


if __name__ == "__main__":
    main()
