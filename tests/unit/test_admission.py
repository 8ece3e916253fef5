"""The gRPC handler's admission counts request bytes held, not only records."""

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
