"""Getting records from the application to the collector.

- :mod:`aitrail.export.exporter`: the ``Exporter`` protocol and ``ExportFailed``
- :mod:`aitrail.export.grpc`: ``GrpcExporter``, the collector's gRPC service
- :mod:`aitrail.export.memory`: ``InMemoryExporter``, for testing instrumentation
- :mod:`aitrail.export.worker`: ``BatchWorker``, the queue and its thread
- :mod:`aitrail.export.delivery`: the delivery modes (durable, best_effort, strict)
- :mod:`aitrail.export.spool`: the durable mode's on-disk spool
"""

from aitrail.export.delivery import (
    BEST_EFFORT,
    DELIVERY_MODES,
    DURABLE,
    STRICT,
    AuditUnavailable,
    Counters,
)
from aitrail.export.exporter import (
    Exporter,
    ExportFailed,
    ExportRefused,
    ExportUnavailable,
)
from aitrail.export.grpc import GrpcExporter
from aitrail.export.memory import InMemoryExporter
from aitrail.export.worker import BatchWorker

__all__ = [
    "BEST_EFFORT", "DELIVERY_MODES", "DURABLE", "STRICT", "AuditUnavailable", "BatchWorker",
    "Counters", "ExportFailed", "ExportRefused", "ExportUnavailable", "Exporter", "GrpcExporter",
    "InMemoryExporter",
]
