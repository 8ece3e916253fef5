"""Admission: request bytes held count, not only records, and one budget is shared by the
native gRPC service and the OTLP receivers (overload answered 429 / RESOURCE_EXHAUSTED with
a retry hint; a failed store 503 / UNAVAILABLE)."""

import threading

import grpc
import pytest

from aitrail.v1 import audit_pb2 as pb
from aitrail_collector.ingest.service import ExportHandler
from aitrail_collector.ledger.group_commit import AppendResult


class _Aborted(Exception):
    pass


class _Context:
    def __init__(self):
        self.code = None

    def abort(self, code, details):
        self.code, self.details = code, details
        raise _Aborted(details)

    def set_trailing_metadata(self, md):
        self.trailing = md

    def auth_context(self):
        return {}  # no client certificate


class _SlowLedger:
    chain_id = "main"

    def __init__(self):
        self.entered, self.go = threading.Event(), threading.Event()

    def append(self, records, sender=None):
        self.entered.set()
        assert self.go.wait(10)
        return AppendResult(accepted=len(records))

    def append_request(self, raw, request, sender=None):
        return self.append(request.records, sender)


def test_request_bytes_waiting_to_be_sealed_are_capped():
    ledger = _SlowLedger()
    handler = ExportHandler(ledger, max_records=10, max_pending=1000, max_pending_bytes=1000,
                            retry_pushback_ms=50)
    big = pb.ExportRequest(records=[pb.AuditRecord(task_id="x" * 700)]).SerializeToString()
    first = threading.Thread(target=handler.export, args=(big, _Context()))
    first.start()
    assert ledger.entered.wait(10)
    ctx = _Context()
    with pytest.raises(_Aborted):
        handler.export(big, ctx)  # 2 x 700 bytes > 1000 while the first one waits
    assert ctx.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "request bytes waiting to be sealed" in ctx.details
    ledger.go.set()
    first.join(10)
    assert handler.export(big, _Context())  # released: admitted again


# ---------------------------------------------------------------- OTLP shares the budget

def _otlp_receiver(ledger, admission):
    from aitrail.record.redact import Redactor
    from aitrail_collector.ingest.otlp import OtlpReceiver
    return OtlpReceiver(ledger, Redactor(b"unit-key"), admission, max_records=10,
                        max_message_bytes=1 << 20, max_attribute_chars=1 << 16)


def _otlp_body() -> bytes:
    import time

    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
    request = ExportTraceServiceRequest()
    span = request.resource_spans.add().scope_spans.add().spans.add(
        trace_id=b"\x01" * 16, span_id=b"\x02" * 8, name="chat",
        start_time_unix_nano=time.time_ns(), end_time_unix_nano=time.time_ns())
    for key, value in (("gen_ai.operation.name", "chat"), ("gen_ai.request.model", "gpt-4o"),
                       ("gen_ai.provider.name", "openai"), ("pad", "p" * 400)):
        span.attributes.append(KeyValue(key=key, value=AnyValue(string_value=value)))
    return request.SerializeToString()


def _client(receiver):
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from aitrail_collector.ingest.otlp import mount_http
    app = FastAPI()
    mount_http(app, receiver)
    return TestClient(app)


def test_otlp_and_native_calls_share_one_admission_budget():
    from aitrail_collector.ingest.google_rpc import RetryInfo, Status
    from aitrail_collector.ingest.service import Admission
    ledger = _SlowLedger()
    admission = Admission(max_pending=1000, max_pending_bytes=1000, retry_pushback_ms=1500)
    native = ExportHandler(ledger, max_records=10, admission=admission)
    otlp = _otlp_receiver(ledger, admission)
    big = pb.ExportRequest(records=[pb.AuditRecord(task_id="x" * 700)]).SerializeToString()
    first = threading.Thread(target=native.export, args=(big, _Context()))
    first.start()
    assert ledger.entered.wait(10)
    body = _otlp_body()
    assert len(body) > 300  # 700 + this > 1000 while the native call waits
    with _client(otlp) as client:
        resp = client.post("/v1/traces", content=body,
                           headers={"Content-Type": "application/x-protobuf"})
        assert resp.status_code == 429
        assert resp.headers["retry-after"] == "2"
        assert "request bytes waiting to be sealed" in Status.FromString(resp.content).message
        ctx = _Context()
        with pytest.raises(_Aborted):
            otlp.grpc_export(body, ctx)
        assert ctx.code == grpc.StatusCode.RESOURCE_EXHAUSTED
        retry = RetryInfo.FromString(dict(ctx.trailing)["google.rpc.retryinfo-bin"])
        assert (retry.retry_delay.seconds, retry.retry_delay.nanos) == (1, 500_000_000)
        ledger.go.set()
        first.join(10)
        resp = client.post("/v1/traces", content=body,
                           headers={"Content-Type": "application/x-protobuf"})
        assert resp.status_code == 200  # released: admitted again
    assert otlp.stats.snapshot()["refused_requests"]["overloaded"] == 2


class _BrokenLedger:
    chain_id = "main"

    def append_request(self, raw, request, sender=None):
        raise OSError("disk full")


def test_a_store_failure_is_answered_retryable_on_both_otlp_transports():
    from aitrail_collector.ingest.google_rpc import Status
    from aitrail_collector.ingest.service import Admission
    otlp = _otlp_receiver(_BrokenLedger(), Admission(1000, 1 << 20, 500))
    body = _otlp_body()
    with _client(otlp) as client:
        resp = client.post("/v1/traces", content=body,
                           headers={"Content-Type": "application/x-protobuf"})
    assert resp.status_code == 503 and resp.headers["retry-after"] == "1"
    assert "disk full" in Status.FromString(resp.content).message
    ctx = _Context()
    with pytest.raises(_Aborted):
        otlp.grpc_export(body, ctx)
    assert ctx.code == grpc.StatusCode.UNAVAILABLE
    assert otlp.admission._pending == otlp.admission._pending_bytes == 0  # nothing held
