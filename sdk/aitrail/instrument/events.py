"""Single events: escalations, resolutions, evaluations, data access (SOC 2 / HIPAA
access logs) and other kinds; each returns its record id."""

from __future__ import annotations

import math
from typing import Any, Mapping, Optional

from aitrail.instrument.draft import _Draft
from aitrail.instrument.setup import _emit
from aitrail.record.ids import uuid7


def _require(**values: Any) -> None:
    for name, value in values.items():
        if not isinstance(value, str) or not value:
            raise ValueError(f"{name} must be a non-empty string")


def _emit_with_id(draft: _Draft) -> str:
    # These calls return the record id, so it is made now, on the caller's thread.
    draft.record_id = record_id = uuid7(draft.start)
    _emit(draft)
    return record_id


def escalate(task_id: Optional[str] = None, *, from_reviewer: str, to_reviewer: str,
             reason: str = "", attributes: Optional[Mapping[str, Any]] = None) -> str:
    """Record that a task was handed from one reviewer to another. Returns the record id."""
    _require(from_reviewer=from_reviewer, to_reviewer=to_reviewer)
    return _emit_with_id(_Draft("escalation", task_id, attributes, {
        "escalation_from": from_reviewer, "escalation_to": to_reviewer,
        "escalation_reason": reason}))


def resolve(task_id: Optional[str] = None, *, resolution: str, final_decision: str = "",
            attributes: Optional[Mapping[str, Any]] = None) -> str:
    """Record how a task ended. Returns the record id."""
    _require(resolution=resolution)
    return _emit_with_id(_Draft("resolution", task_id, attributes, {
        "resolution_outcome": resolution, "final_decision": final_decision}))


def evaluate(task_id: Optional[str] = None, *, name: str, score: Optional[float] = None,
             label: str = "", explanation: str = "", response_id: str = "",
             attributes: Optional[Mapping[str, Any]] = None) -> str:
    """Record the result of an evaluation of a model response (what an OpenTelemetry
    ``gen_ai.evaluation.result`` event says, for code without OpenTelemetry).

    ``name`` says what was evaluated for (``"relevance"``); ``score`` is a finite
    number on the evaluator's own scale, or None; ``label`` the verdict in words
    (``"pass"``); ``explanation`` free text (redacted like a model's output);
    ``response_id`` the provider's id of the evaluated response. Returns the record id.
    """
    _require(name=name)
    if score is not None:
        if isinstance(score, bool) or not isinstance(score, (int, float)):
            raise ValueError(f"score must be a number or None, not {type(score).__name__}")
        if not math.isfinite(score):
            raise ValueError(f"score must be a finite number, not {score!r}")
    for key, value in (("label", label), ("explanation", explanation),
                       ("response_id", response_id)):
        if not isinstance(value, str):
            raise ValueError(f"{key} must be a string, not {type(value).__name__}")
    return _emit_with_id(_Draft("evaluation", task_id, attributes, {
        "evaluation_name": name, "score_value": None if score is None else float(score),
        "score_label": label, "explanation": explanation, "response_id": response_id}))


def data_access(*, actor: str, resource: str, purpose: str, task_id: Optional[str] = None,
                attributes: Optional[Mapping[str, Any]] = None) -> str:
    """Record that someone read protected data (SOC 2 / HIPAA access log)."""
    _require(actor=actor, resource=resource, purpose=purpose)
    return _emit_with_id(_Draft("data_access", task_id, attributes, {
        "actor": actor, "resource": resource, "purpose": purpose}))


def event(event_type: str, *, task_id: Optional[str] = None,
          attributes: Optional[Mapping[str, Any]] = None) -> str:
    """Record another kind of event (for example ``task_created``)."""
    _require(event_type=event_type)
    return _emit_with_id(_Draft(event_type, task_id, attributes, {}))
