"""OpenTelemetry in, audit records out.

GenAI spans that an application's instrumentation already makes (the GenAI
semantic conventions, OpenLLMetry's legacy keys, OpenInference) become sealed
``model_call`` records, and their ``gen_ai.evaluation.result`` events become
``evaluation`` records. Two ways in, one mapping (:mod:`aitrail.otel.mapping`):

* in process: add :class:`AuditSpanProcessor` to the application's
  ``TracerProvider`` (needs ``opentelemetry-sdk``: ``pip install aitrail[otel]``);
* over the network: point an OTLP exporter at the collector, whose receiver
  uses :mod:`aitrail.otel.otlp` (needs ``opentelemetry-proto``).

The mapping is specified in docs/otlp-mapping.md.
"""

from __future__ import annotations

from typing import Any

from aitrail.otel.mapping import MappingOptions, drafts_for, is_genai_model_call
from aitrail.otel.spans import EventView, SpanView

__all__ = ["AuditSpanProcessor", "EventView", "MappingOptions", "SpanView", "drafts_for",
           "is_genai_model_call"]


def __getattr__(name: str) -> Any:
    # The processor needs opentelemetry-sdk, which the SDK does not depend on:
    # imported when asked for, so the mapping works with the API alone.
    if name == "AuditSpanProcessor":
        from aitrail.otel.processor import AuditSpanProcessor
        return AuditSpanProcessor
    raise AttributeError(f"module 'aitrail.otel' has no attribute {name!r}")
