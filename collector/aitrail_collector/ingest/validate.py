"""Record validation: every record is checked on its own and refused with a reason.

A refused record never reaches the chain; the other records of its batch do.
"""

from __future__ import annotations

import math
import re
import uuid
from operator import attrgetter
from typing import Any, Callable, Optional

from aitrail.errors import AitrailError
from aitrail.record import event_types
from aitrail.record.event_types import Limit, Part, PartField, Rule
from aitrail.v1 import audit_pb2 as pb
from aitrail_collector.config import Limits

# From the table of event types (aitrail.record.event_types).
KNOWN_TYPES = event_types.KNOWN_TYPES
RESERVED_TYPES = event_types.RESERVED_TYPES  # written by the collector itself (erasure)
DECISIONS = event_types.DECISIONS
PART_NAMES = event_types.PART_NAMES
_EVENT_TYPE = event_types.EVENT_TYPE_PATTERN
_HEX32 = re.compile(r"[0-9a-f]{32}")
_HEX16 = re.compile(r"[0-9a-f]{16}")
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
# fullmatch, not match with "$": "$" also matches before a trailing newline.


class Invalid(AitrailError, ValueError):
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
    if event_types.is_collector_service(rec.service):
        raise Invalid(f"service {rec.service[:64]!r} is reserved for the collector's own "
                      "records")
    if len(rec.attributes) > limits.max_attributes:
        raise Invalid(f"{len(rec.attributes)} attributes; the limit is {limits.max_attributes}")
    for key, value in rec.attributes.items():
        _check_len(f"attribute key {key[:40]!r}", key, limits.max_name_chars)
        _check_len(f"attribute {key[:40]!r}", value, limits.max_attribute_chars)
    for check in _CHECKS[event_types.ERROR_PART.name]:
        check(rec.error, limits)
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
    part = event_types.part_of(kind)
    for name in PART_NAMES:
        if (part is None or name != part.name) and rec.HasField(name) \
                and _carries_values(getattr(rec, name)):
            raise Invalid(f"{name} fields are set on a {kind!r} record")
    if part is not None:
        message = getattr(rec, part.name)
        for required in _REQUIRED[part.name]:
            if not required(message):
                raise Invalid(part.missing)
        for check in _CHECKS[part.name]:
            check(message, limits)


def _carries_values(message: Any) -> bool:
    """Whether a part holds any value that is not its field's default. A part that is
    present but empty carries nothing (and the wire format cannot tell it from an
    absent one: the engine lane, which reads the wire format, sees no difference)."""
    for fd, value in message.ListFields():
        if fd.message_type is None or fd.is_repeated:
            return True  # a scalar set, a non-empty map or list
        if _carries_values(value):
            return True
    return False


# ------------------------------------------------- checks derived from the event table

_Check = Callable[[Any, Limits], None]


def _length_check(label: str, read: Callable[[Any], Any], limit: Limit) -> _Check:
    def check(m: Any, limits: Limits) -> None:
        _check_len(label, read(m), getattr(limits, limit.value))
    return check


def _map_check(noun: str, read: Callable[[Any], Any]) -> _Check:
    # Like the record's attributes: at most max_attributes entries, each value at most
    # max_attribute_chars.
    def check(m: Any, limits: Limits) -> None:
        entries = read(m)
        if len(entries) > limits.max_attributes:
            raise Invalid(f"{len(entries)} {noun}s; the limit is {limits.max_attributes}")
        for key, value in entries.items():
            _check_len(f"{noun} {key[:40]!r}", value, limits.max_attribute_chars)
    return check


def _unit_interval(f: PartField) -> _Check:
    def check(m: Any, limits: Limits) -> None:
        if m.HasField(f.path):
            x = getattr(m, f.path)
            if not (math.isfinite(x) and 0 <= x <= 1):
                raise Invalid(f"{f.path} {x!r} must be between 0 and 1")
    return check


def _finite(part: str, f: PartField) -> _Check:
    def check(m: Any, limits: Limits) -> None:
        if m.HasField(f.path):
            x = getattr(m, f.path)
            if not math.isfinite(x):
                raise Invalid(f"{part}.{f.path} {x!r} must be a finite number")
    return check


def _logprobs(f: PartField) -> _Check:
    read = attrgetter(f.path)

    def check(m: Any, limits: Limits) -> None:
        items = read(m)
        if len(items) > limits.max_logprobs:
            raise Invalid(f"{len(items)} logprobs; the limit is {limits.max_logprobs}")
        for lp in items:
            if not math.isfinite(lp.logprob) or lp.logprob > 0:
                raise Invalid(f"logprob {lp.logprob!r} must be a finite number <= 0")
    return check


def _decision(part: str, f: PartField) -> _Check:
    read = attrgetter(f.path)
    modified = attrgetter(event_types.PARTS_BY_NAME[part].by_key("modified_output").path)

    def check(m: Any, limits: Limits) -> None:
        decision = read(m)
        if decision not in DECISIONS:
            raise Invalid(f"{part}.{f.path} {decision[:40]!r} must be one of "
                          f"{', '.join(DECISIONS)}")
        if decision == "modify" and not modified(m):
            raise Invalid(f"a 'modify' {part} needs modified_output")
    return check


_RULES: dict[Rule, Callable[[str, PartField], _Check]] = {
    Rule.UNIT_INTERVAL: lambda part, f: _unit_interval(f),
    Rule.FINITE: _finite,
    Rule.LOGPROBS: lambda part, f: _logprobs(f),
    Rule.DECISION: _decision,
}


def _compile(part: Part) -> tuple[_Check, ...]:
    """The checks of a part's fields, in table order (so the first failing one is the
    reason given)."""
    checks: list[_Check] = []
    for f in part.fields:
        read = attrgetter(f.path)
        if f.limit is Limit.ATTRIBUTE:
            checks.append(_map_check(f.label, read))
        elif f.limit is not None:
            checks.append(_length_check(f"{part.name}.{f.path}", read, f.limit))
        if f.rule is not None:
            checks.append(_RULES[f.rule](part.name, f))
    return tuple(checks)


_ALL_PARTS = event_types.PARTS + (event_types.ERROR_PART,)
_CHECKS: dict[str, tuple[_Check, ...]] = {p.name: _compile(p) for p in _ALL_PARTS}
_REQUIRED: dict[str, tuple[Callable[[Any], Any], ...]] = {
    p.name: tuple(attrgetter(f.path) for f in p.required) for p in _ALL_PARTS}
