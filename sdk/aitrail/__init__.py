"""aitrail: a tamper-evident audit trail for AI decisions.

Application side::

    import aitrail
    aitrail.configure(endpoint="collector:4327", service="triage-bot")

    @aitrail.model_call(model="gpt-4o", model_version="2024-08-06", prompt_version="v3")
    def classify(ticket: str) -> str: ...

    with aitrail.task("T-1042"):
        label = classify(text)
        with aitrail.review(reviewer="alice") as r:
            r.modify(output="billing", rationale={"reason_code": "wrong_category"})

The SDK depends only on opentelemetry-api, grpcio and protobuf. Hashing and
verification (``aitrail.verify.chain``, ``aitrail.verify.envelope``) live here too, so an
auditor can verify with this package alone.
"""

from aitrail.export import AuditUnavailable
from aitrail.instrument import (
    Rationale,
    configure,
    current_call,
    data_access,
    escalate,
    evaluate,
    event,
    flush,
    model_call,
    resolve,
    review,
    shutdown,
    stats,
)
from aitrail.instrument.context import task
from aitrail.version import SDK_VERSION as __version__

__all__ = [
    "AuditUnavailable", "Rationale", "configure", "current_call", "data_access", "escalate",
    "evaluate", "event", "flush",
    "model_call", "resolve", "review", "shutdown", "stats", "task", "__version__",
]
