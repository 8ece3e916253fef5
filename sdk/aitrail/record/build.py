"""From a draft (a plain dict the caller's thread made) to a redacted AuditRecord.

This runs on the background worker, so the caller pays only for the dict.
"""

from __future__ import annotations

import difflib
import json
from typing import Any, Callable, Mapping

from aitrail.record import event_types
from aitrail.record.event_types import Part, Value
from aitrail.record.redact import Redactor
from aitrail.v1 import audit_pb2 as pb
from aitrail.version import SDK_VERSION

Redact = Callable[[str, str], str]  # (field, value) -> what is sent


def unified_diff(original: str, changed: str) -> str:
    lines = difflib.unified_diff(original.splitlines(), changed.splitlines(),
                                 "model output", "reviewer output", lineterm="")
    return "\n".join(lines)


def logprobs_text(logprobs: Any) -> list[tuple[str, float]]:
    """Accepts [(token, logprob)], [{"token": .., "logprob": ..}] or [logprob]."""
    out = []
    for item in logprobs or ():
        if isinstance(item, Mapping):
            out.append((str(item.get("token", "")), float(item["logprob"])))
        elif isinstance(item, (tuple, list)):
            out.append((str(item[0]), float(item[1])))
        else:
            out.append(("", float(item)))
    return out


def build_record(d: Mapping[str, Any], config: Any, redactor: Redactor) -> pb.AuditRecord:
    """The record of draft ``d``. Who sent it (service, service_version, environment,
    host, sdk_version) comes from ``config``, unless the draft names it (a span's
    resource does, aitrail.otel)."""
    r = redactor.apply
    rec = pb.AuditRecord(
        record_id=d["record_id"], event_type=d["event_type"],
        task_id=r("task_id", d.get("task_id") or ""),
        request_id=d.get("request_id") or "",
        trace_id=d.get("trace_id", ""), span_id=d.get("span_id", ""),
        parent_span_id=d.get("parent_span_id", ""),
        start_time_unix_nano=d["start"], end_time_unix_nano=d.get("end") or d["start"],
        service=d.get("service") or config.service,
        service_version=d.get("service_version") or config.service_version,
        environment=d.get("environment") or config.environment,
        host=d.get("host") or config.host,
        sdk_version=d.get("sdk_version") or getattr(config, "sdk_version", SDK_VERSION),
    )
    for key, value in (d.get("attributes") or {}).items():
        rec.attributes[str(key)] = r(f"attributes.{key}", str(value))
    if d.get("error_type"):
        rec.error.type = d["error_type"]
        rec.error.message = r("error_message", d.get("error_message", ""))
    kind = d["event_type"]
    if kind == "model_call":
        _model_call(rec.model_call, d, r)
    elif kind == "review":
        _review(rec.review, d, r)
    elif kind == "evaluation":
        _evaluation(rec.evaluation, d, r)
    elif kind in _TEXT_PARTS:
        _text_part(getattr(rec, _TEXT_PARTS[kind].name), _TEXT_PARTS[kind], d, r)
    return rec


# Event types whose part is text fields only (escalation, resolution, data_access): the
# draft names each field by its envelope column; required ones must be in the draft.
_TEXT_PARTS: dict[str, Part] = {
    t.name: event_types.PARTS_BY_NAME[t.part] for t in event_types.EVENT_TYPES
    if t.part is not None and not t.reserved and t.part not in ("model_call", "review")
    and all(f.value is Value.TEXT for f in event_types.PARTS_BY_NAME[t.part].fields)}


def _text_part(msg: Any, part: Part, d: Mapping[str, Any], r: Callable[[str, str], str]
               ) -> None:
    for f in part.fields:
        value = d[f.key] if f.required else (d.get(f.key) or "")
        setattr(msg, f.path, r(f.redact, value) if f.redact else value)


def _model_call(m: pb.ModelCall, d: Mapping[str, Any], r: Redact) -> None:
    m.provider = d.get("provider") or ""
    m.model = d.get("model") or ""
    m.model_version = d.get("model_version") or ""
    m.prompt_template_id = d.get("prompt_template_id") or ""
    m.prompt_version = d.get("prompt_version") or ""
    for key, value in (d.get("parameters") or {}).items():
        text = value if isinstance(value, str) else json.dumps(value, default=repr)
        m.parameters[str(key)] = r(f"parameters.{key}", text)
    m.input = r("input", d.get("input") or "")
    m.output = r("output", d.get("output") or "")
    if d.get("confidence") is not None:
        m.confidence = float(d["confidence"])
    for token, logprob in logprobs_text(d.get("logprobs")):
        m.logprobs.add(token=r("logprobs", token), logprob=logprob)
    m.usage.input_tokens = int(d.get("input_tokens") or 0)
    m.usage.output_tokens = int(d.get("output_tokens") or 0)
    m.streamed = bool(d.get("streamed"))
    m.response_id = d.get("response_id") or ""


def _evaluation(e: pb.Evaluation, d: Mapping[str, Any], r: Redact) -> None:
    e.name = d["evaluation_name"]
    if d.get("score_value") is not None:
        e.score_value = float(d["score_value"])
    e.score_label = d.get("score_label") or ""
    e.explanation = r("explanation", d.get("explanation") or "")
    e.response_id = d.get("response_id") or ""


def _review(v: pb.Review, d: Mapping[str, Any], r: Redact) -> None:
    v.reviewer_id = r("reviewer_id", d["reviewer_id"])
    v.decision = d.get("decision") or "none"
    v.time_spent_ms = int(d.get("time_spent_ms") or 0)
    v.rationale.reason_code = d.get("reason_code") or ""
    v.rationale.policy_ref = d.get("policy_ref") or ""
    v.rationale.text = r("rationale", d.get("rationale") or "")
    modified = d.get("modified_output")
    if modified is not None:
        v.modified_output = r("modified_output", modified)
        original = d.get("original")
        if original is not None:
            v.diff = r("diff", unified_diff(original, modified))
