"""The gRPC endpoint: ``aitrail.v1.AuditService/Export``.

Requests are taken as raw bytes and parsed here, so a request that is not a
valid ExportRequest (bad wire format, invalid UTF-8 in a string) gets a clear
INVALID_ARGUMENT rather than gRPC's generic deserialization error.
"""

from __future__ import annotations

import logging
from concurrent import futures
from typing import Optional

import grpc
from google.protobuf.message import DecodeError

from aitrail.v1 import audit_pb2 as pb
from aitrail_collector.ledger import Ledger

log = logging.getLogger("aitrail.collector")

SERVICE = "aitrail.v1.AuditService"
DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024 * 1024
DEFAULT_MAX_RECORDS_PER_BATCH = 10_000


class ExportHandler:
    def __init__(self, ledger: Ledger, max_records: int = DEFAULT_MAX_RECORDS_PER_BATCH):
        self.ledger = ledger
        self.max_records = max_records

    def export(self, raw: bytes, context: grpc.ServicerContext) -> bytes:
        try:
            request = pb.ExportRequest.FromString(raw)
        except DecodeError as exc:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                          f"request is not a valid aitrail.v1.ExportRequest "
                          f"(bad wire format or invalid UTF-8 in a string field): {exc}")
        if len(request.records) > self.max_records:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                          f"{len(request.records)} records in one request; the limit is "
                          f"{self.max_records}")
        try:
            result = self.ledger.append(request.records)
        except Exception as exc:  # noqa: BLE001 - the store failed: nothing was acknowledged
            log.exception("store write failed")
            context.abort(grpc.StatusCode.UNAVAILABLE, f"the store did not accept the batch: {exc}")
        response = pb.ExportResponse(accepted=result.accepted, duplicates=result.duplicates,
                                     chain_id=self.ledger.chain_id, head_seq=result.head_seq)
        for index, record_id, reason in result.rejected:
            response.rejected.add(index=index, record_id=record_id, reason=reason)
        return response.SerializeToString()


def start_grpc(ledger: Ledger, listen: str, *, max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
               workers: int = 8) -> tuple[grpc.Server, int]:
    """Start serving on ``listen`` (HOST:PORT, port 0 picks one); returns (server, port)."""
    handler = ExportHandler(ledger)
    rpc = grpc.unary_unary_rpc_method_handler(handler.export)  # bytes in, bytes out
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="grpc"),
                         options=[("grpc.max_receive_message_length", max_message_bytes),
                                  ("grpc.max_send_message_length", max_message_bytes)])
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, {"Export": rpc}),))
    port = server.add_insecure_port(listen)
    if port == 0:
        raise OSError(f"cannot listen for gRPC on {listen}")
    server.start()
    return server, port
