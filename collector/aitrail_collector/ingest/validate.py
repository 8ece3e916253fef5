"""Record validation: every record is checked on its own and refused with a reason.

A refused record never reaches the chain; the other records of its batch do.
"""

from __future__ import annotations

import math
import re
import uuid
from typing import Optional

from aitrail.v1 import audit_pb2 as pb
from aitrail_collector.config import Limits

KNOWN_TYPES = ("model_call", "review", "escalation", "resolution", "task_created",
               "data_access", "redaction")
RESERVED_TYPES = ("redaction",)  # written by the collector itself (erasure)
DECISIONS = ("approve", "reject", "modify", "none")
_EVENT_TYPE = re.compile(r"[a-z][a-z0-9_.]{0,63}")
_HEX32 = re.compile(r"[0-9a-f]{32}")
_HEX16 = re.compile(r"[0-9a-f]{16}")
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
# fullmatch, not match with "$": "$" also matches before a trailing newline.
_PARTS = ("model_call", "review", "escalation", "resolution", "data_access")


class Invalid(ValueError):
    pass


def _check_len(name: str, value: str, limit: int) -> None:
    if len(value) > limit:
        raise Invalid(f"{name} is {len(value)} characters; the limit is {limit}")


def validate(rec: pb.AuditRecord, now_ns: int, limits: Limits) -> Optional[str]:
    """None when the record may be sealed, else the reason it may not."""
    try:
        _validate(rec, now_ns, limits)
    except Invalid as exc:
        return str(exc)
    return None


def _validate(rec: pb.AuditRecord, now_ns: int, limits: Limits) -> None:
    size = rec.ByteSize()
    if size > limits.max_record_bytes:
        raise Invalid(f"record is {size} bytes; the limit is {limits.max_record_bytes}")
    _identity(rec, limits)
    _times(rec, now_ns, limits)
    for name in ("service", "service_version", "environment", "host", "sdk_version"):
        _check_len(name, getattr(rec, name), limits.max_name_chars)
    if not rec.service:
        raise Invalid("service is required")
    if len(rec.attributes) > limits.max_attributes:
        raise Invalid(f"{len(rec.attributes)} attributes; the limit is {limits.max_attributes}")
    for key, value in rec.attributes.items():
        _check_len(f"attribute key {key[:40]!r}", key, limits.max_name_chars)
        _check_len(f"attribute {key[:40]!r}", value, limits.max_attribute_chars)
    _check_len("error.type", rec.error.type, limits.max_name_chars)
    _check_len("error.message", rec.error.message, limits.max_text_chars)
    _parts(rec, limits)


def _identity(rec: pb.AuditRecord, limits: Limits) -> None:
    if not _UUID.fullmatch(rec.record_id):
        try:
            uuid.UUID(rec.record_id)
        except ValueError:
            raise Invalid(f"record_id {rec.record_id[:64]!r} is not a UUID") from None
        raise Invalid("record_id must be a UUID in lowercase hyphenated form")
    if not _EVENT_TYPE.fullmatch(rec.event_type):
        raise Invalid(f"event_type {rec.event_type[:64]!r} must match [a-z][a-z0-9_.]{{0,63}}")
    if rec.event_type in RESERVED_TYPES:
        raise Invalid(f"event_type {rec.event_type!r} is written by the collector only")
    for name in ("task_id", "request_id"):
        _check_len(name, getattr(rec, name), limits.max_id_chars)
    if rec.trace_id and (not _HEX32.fullmatch(rec.trace_id) or rec.trace_id == "0" * 32):
        raise Invalid("trace_id must be 32 lowercase hex digits, not all zero")
    for name in ("span_id", "parent_span_id"):
        value = getattr(rec, name)
        if value and (not _HEX16.fullmatch(value) or value == "0" * 16):
            raise Invalid(f"{name} must be 16 lowercase hex digits, not all zero")
    if rec.span_id and not rec.trace_id:
        raise Invalid("span_id is set but trace_id is not")


def _times(rec: pb.AuditRecord, now_ns: int, limits: Limits) -> None:
    start, end = rec.start_time_unix_nano, rec.end_time_unix_nano
    if start == 0:
        raise Invalid("start_time_unix_nano is required")
    if end and end < start:
        raise Invalid("end_time_unix_nano is before start_time_unix_nano")
    if start > now_ns + limits.future_skew_s * 10**9:
        raise Invalid(f"start_time is {(start - now_ns) / 1e9:.0f} s in the future; "
                      f"at most {limits.future_skew_s} s of clock skew is accepted")
    if start < now_ns - limits.max_age_s * 10**9:
        raise Invalid(f"start_time is {(now_ns - start) / 86400e9:.1f} days old; "
                      f"records older than {limits.max_age_s / 86400:g} days are refused")
    if end > now_ns + limits.future_skew_s * 10**9:
        raise Invalid("end_time is in the future")


def _parts(rec: pb.AuditRecord, limits: Limits) -> None:
    kind = rec.event_type
    for part in _PARTS:
        if rec.HasField(part) and part != kind:
            raise Invalid(f"{part} fields are set on a {kind!r} record")
    if kind == "model_call":
        _model_call(rec.model_call, limits)
    elif kind == "review":
        _review(rec.review, limits)
    elif kind == "escalation":
        e = rec.escalation
        if not e.from_reviewer or not e.to_reviewer:
            raise Invalid("escalation needs from_reviewer and to_reviewer")
        _check_len("escalation.from_reviewer", e.from_reviewer, limits.max_id_chars)
        _check_len("escalation.to_reviewer", e.to_reviewer, limits.max_id_chars)
        _check_len("escalation.reason", e.reason, limits.max_text_chars)
    elif kind == "resolution":
        if not rec.resolution.outcome:
            raise Invalid("resolution needs an outcome")
        _check_len("resolution.outcome", rec.resolution.outcome, limits.max_name_chars)
        _check_len("resolution.final_decision", rec.resolution.final_decision,
                   limits.max_text_chars)
    elif kind == "data_access":
        a = rec.data_access
        if not (a.actor and a.resource and a.purpose):
            raise Invalid("data_access needs actor, resource and purpose")
        for name in ("actor", "resource", "purpose"):
            _check_len(f"data_access.{name}", getattr(a, name), limits.max_name_chars)


def _model_call(m: pb.ModelCall, limits: Limits) -> None:
    if not m.model:
        raise Invalid("model_call needs a model name")
    for name in ("provider", "model", "model_version", "prompt_template_id", "prompt_version"):
        _check_len(f"model_call.{name}", getattr(m, name), limits.max_name_chars)
    if len(m.parameters) > limits.max_attributes:
        raise Invalid(f"{len(m.parameters)} parameters; the limit is {limits.max_attributes}")
    for key, value in m.parameters.items():
        _check_len(f"parameter {key[:40]!r}", value, limits.max_attribute_chars)
    _check_len("model_call.input", m.input, limits.max_text_chars)
    _check_len("model_call.output", m.output, limits.max_text_chars)
    if m.HasField("confidence") and not (math.isfinite(m.confidence) and 0 <= m.confidence <= 1):
        raise Invalid(f"confidence {m.confidence!r} must be between 0 and 1")
    if len(m.logprobs) > limits.max_logprobs:
        raise Invalid(f"{len(m.logprobs)} logprobs; the limit is {limits.max_logprobs}")
    for lp in m.logprobs:
        if not math.isfinite(lp.logprob) or lp.logprob > 0:
            raise Invalid(f"logprob {lp.logprob!r} must be a finite number <= 0")


def _review(v: pb.Review, limits: Limits) -> None:
    if not v.reviewer_id:
        raise Invalid("review needs a reviewer_id")
    _check_len("review.reviewer_id", v.reviewer_id, limits.max_id_chars)
    if v.decision not in DECISIONS:
        raise Invalid(f"review.decision {v.decision[:40]!r} must be one of {', '.join(DECISIONS)}")
    if v.decision == "modify" and not v.modified_output:
        raise Invalid("a 'modify' review needs modified_output")
    for name in ("modified_output", "diff"):
        _check_len(f"review.{name}", getattr(v, name), limits.max_text_chars)
    _check_len("review.rationale.text", v.rationale.text, limits.max_text_chars)
    _check_len("review.rationale.reason_code", v.rationale.reason_code, limits.max_name_chars)
    _check_len("review.rationale.policy_ref", v.rationale.policy_ref, limits.max_name_chars)
