"""Configuring the SDK and handing records to the background worker.

``configure`` builds the redactor, the exporter and the worker; ``_emit`` is the
caller's path (a bound method call when records need no waiting); ``flush``,
``shutdown`` and ``stats`` act on the worker. Nothing here does I/O on the
caller's thread.
"""

from __future__ import annotations

import dataclasses
import functools
import threading
from typing import Any, Callable, Optional

from aitrail.config import Config
from aitrail.export import STRICT, BatchWorker, Exporter, GrpcExporter
from aitrail.export.delivery import Ack
from aitrail.record.build import build_record
from aitrail.record.redact import Redactor
from aitrail.v1 import audit_pb2 as pb


class _State:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.config: Optional[Config] = None
        self.worker: Optional[BatchWorker] = None
        self.shut_down = False  # after shutdown(), records are not sent until configure()
        # The caller's fast path: the worker's submit when records go to it without
        # waiting (enabled, not strict); None sends every record the slow way.
        self.submit: Optional[Callable[[Any], None]] = None


_state = _State()


def configure(*, exporter: Optional[Exporter] = None, **options: Any) -> Config:
    """Configure the SDK; unspecified options come from AITRAIL_* environment variables.

    Options: endpoint, service, service_version, environment, host, enabled,
    redaction, redaction_key (bytes or str), redaction_policy ({field: action}),
    reference_store (callable(field, value) -> reference), batch_size,
    flush_interval, max_queue, export_timeout, retry_for, delivery
    (durable | best_effort | strict), spool_dir, spool_max_bytes, strict_timeout,
    api_key, tls, ca_cert, client_cert, client_key (see aitrail.config).

    ``exporter``: send records through this ``aitrail.export.Exporter`` instead of
    gRPC to ``endpoint`` (e.g. an ``InMemoryExporter`` in tests).
    """
    config = Config.from_env()
    known = {f.name for f in dataclasses.fields(Config)}
    unknown = set(options) - known
    if unknown:
        raise TypeError(f"configure() got unknown option(s): {', '.join(sorted(unknown))}")
    for name, value in options.items():
        if name == "redaction_key" and isinstance(value, str):
            value = value.encode("utf-8")
        setattr(config, name, value)
    config.validate()
    redactor = Redactor(config.redaction_key, config.redaction_policy, config.reference_store,
                        enabled=config.redaction)
    if exporter is None:
        exporter = GrpcExporter(config.endpoint, config.export_timeout, api_key=config.api_key,
                                **config.read_tls())
    worker = BatchWorker(functools.partial(_build, config=config, redactor=redactor),
                         exporter, batch_size=config.batch_size,
                         flush_interval=config.flush_interval, max_queue=config.max_queue,
                         # Strict callers stop waiting after strict_timeout; retrying
                         # longer would only hold up the records behind theirs.
                         retry_for=(min(config.retry_for, config.strict_timeout)
                                    if config.delivery == STRICT else config.retry_for),
                         delivery=config.delivery,
                         spool_dir=config.spool_dir, spool_max_bytes=config.spool_max_bytes,
                         export_timeout=config.export_timeout)
    with _state.lock:
        old = _state.worker
        _state.config, _state.worker, _state.shut_down = config, worker, False
        _state.submit = worker.submit if config.enabled and config.delivery != STRICT else None
    if old is not None:
        old.shutdown()
    return config


def _worker() -> Optional[BatchWorker]:
    """The worker to hand records to, configuring from the environment on first use."""
    worker, config = _state.worker, _state.config
    if worker is None:
        if _state.shut_down:
            return None
        with _state.lock:
            configured = _state.worker is not None
        if not configured:
            configure()
        worker, config = _state.worker, _state.config
    return worker if config is not None and config.enabled else None


def _build(draft: Any, config: Config, redactor: Redactor) -> pb.AuditRecord:
    """On the worker: a draft (a dict, or a draft object with ``to_dict``) to a record."""
    return build_record(draft if type(draft) is dict else draft.to_dict(), config, redactor)


def _emit(draft: Any) -> None:
    submit = _state.submit
    if submit is not None:
        submit(draft)
        return
    _emit_slow(draft)


def _emit_slow(draft: Any) -> None:
    worker = _worker()
    if worker is None:
        return
    if worker.delivery != STRICT:
        worker.submit(draft)
        return
    # Strict: the caller may not go on until its record is durably stored.
    ack = Ack()
    worker.submit(draft, ack)
    ack.wait(_state.config.strict_timeout if _state.config else 5.0)


def flush(timeout: Optional[float] = None, spool: bool = True) -> bool:
    """Block until every record emitted so far was delivered (or given up on), and
    with ``spool=True`` until the durable spool is empty as well. Returns False if
    that did not happen within ``timeout`` seconds."""
    worker = _state.worker
    return True if worker is None else worker.flush(timeout, spool=spool)


def shutdown(timeout: float = 5.0) -> bool:
    """Flush and stop the background worker (also done at interpreter exit)."""
    with _state.lock:
        worker, _state.worker, _state.config, _state.submit = _state.worker, None, None, None
        _state.shut_down = True
    return True if worker is None else worker.shutdown(timeout)


def stats() -> dict[str, int]:
    """Delivery counters: queued, sent, spooled, replayed, rejected, dropped, pending,
    spool_bytes."""
    worker = _state.worker
    return worker.stats() if worker is not None else {}
