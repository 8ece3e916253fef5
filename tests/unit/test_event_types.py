"""The table of event types (aitrail.record.event_types) against the proto, and the
places derived from it against the code they replaced (copied here as references)."""

from __future__ import annotations

import json
import random
import textwrap
from typing import Any

import pytest
from google.protobuf.descriptor import FieldDescriptor

from aitrail.cli.output import describe_event, safe
from aitrail.record import event_types as et
from aitrail.record.csv_format import RESULT_COLUMNS
from aitrail.v1 import audit_pb2 as pb
from aitrail.verify.envelope import (
    FIELD_NAMES_V1,
    FIELDS_V2,
    PAYLOAD_NAMES,
    STORED_FIELD_NAMES,
    empty_envelope,
)
from aitrail_collector.ingest import validate
from aitrail_collector.ledger.group_commit import Sender, as_v1, as_v2, split_record
from aitrail_collector.web.console import pages

RECORD = pb.AuditRecord.DESCRIPTOR
FIELD_NAMES_V2 = tuple(f.name for f in FIELDS_V2)


# ------------------------------------------------------------- table <-> proto descriptor

def _is_map(f: FieldDescriptor) -> bool:
    return f.message_type is not None and f.message_type.GetOptions().map_entry


def _is_repeated(f: FieldDescriptor) -> bool:
    return bool(f.is_repeated)


def _leaves(message: Any, prefix: str = "") -> dict[str, FieldDescriptor]:
    """Field paths of a part down to its scalars, maps and repeated fields."""
    out: dict[str, FieldDescriptor] = {}
    for f in message.fields:
        path = prefix + f.name
        if f.message_type is not None and not _is_repeated(f):
            out.update(_leaves(f.message_type, path + "."))
        else:
            out[path] = f
    return out


def _value_of(f: FieldDescriptor) -> et.Value:
    if _is_map(f):
        return et.Value.MAP
    if _is_repeated(f):
        assert f.message_type.full_name == "aitrail.v1.TokenLogprob"
        return et.Value.LOGPROBS
    if f.type == FieldDescriptor.TYPE_STRING:
        return et.Value.TEXT
    if f.type in (FieldDescriptor.TYPE_UINT32, FieldDescriptor.TYPE_UINT64):
        return et.Value.UINT
    if f.type == FieldDescriptor.TYPE_BOOL:
        return et.Value.BOOL
    if f.type == FieldDescriptor.TYPE_DOUBLE and f.has_presence:
        return et.Value.OPTIONAL_F64
    raise AssertionError(f"no Value for {f.full_name}")


def test_every_part_of_the_proto_is_in_the_table_and_vice_versa():
    parts = {f.name for f in RECORD.fields if f.message_type is not None and not _is_map(f)}
    assert parts == set(et.PARTS_BY_NAME)
    for t in et.EVENT_TYPES:
        assert t.part is None or t.part in parts, t


@pytest.mark.parametrize("part", list(et.PARTS_BY_NAME.values()), ids=lambda p: p.name)
def test_every_field_of_a_part_is_in_the_table_and_vice_versa(part):
    leaves = _leaves(RECORD.fields_by_name[part.name].message_type)
    paths = [f.path for f in part.fields]
    assert len(paths) == len(set(paths))
    assert set(paths) == set(leaves)
    for f in part.fields:
        assert f.value is _value_of(leaves[f.path]), f.path


def test_record_columns_are_the_records_own_fields():
    own = {f.name for f in RECORD.fields if f.message_type is None}
    assert {name for name, _ in et.RECORD_COLUMNS} == own


def test_every_field_goes_to_one_envelope_column_or_one_payload():
    columns = [f.column for f in et.ERROR_PART.fields if f.column]
    columns += [column for _, column in et.RECORD_COLUMNS]
    # Parts of event types are never on one record together, so two of them may share
    # a column of one meaning (response_id: the model response a record is about), with
    # the same kind of value; within a part, and against the record's own columns and
    # the error part (on every record), a column is one field's.
    shared: dict[str, et.PartField] = {}
    for p in et.PARTS:
        own = [f.column for f in p.fields if f.column]
        assert len(own) == len(set(own)), p.name
        for f in p.fields:
            if f.column in shared:
                assert (f.value, f.limit) == (shared[f.column].value, shared[f.column].limit)
            elif f.column:
                shared[f.column] = f
    assert [c for c in shared if sum(1 for p in et.PARTS for f in p.fields
                                     if f.column == c) > 1] == ["response_id"]
    columns += list(shared)
    assert len(columns) == len(set(columns))
    assert set(columns) <= set(STORED_FIELD_NAMES)
    for p in et.PARTS_BY_NAME.values():
        for f in p.fields:
            assert (f.column is None) != (f.payload is None), f
            assert f.payload is None or f.payload in PAYLOAD_NAMES
            assert f.value is not et.Value.LOGPROBS or f.payload
    assert et.payload_names() == PAYLOAD_NAMES


def test_derived_lists():
    assert et.KNOWN_TYPES == ("model_call", "review", "evaluation", "escalation",
                              "resolution", "task_created", "data_access", "redaction",
                              "admin_action", "log_review")
    assert validate.KNOWN_TYPES == pages.EVENT_TYPES == et.KNOWN_TYPES
    assert validate.RESERVED_TYPES == ("redaction", "admin_action", "log_review")
    assert validate.DECISIONS == ("approve", "reject", "modify", "none")
    assert et.PART_NAMES == ("model_call", "review", "escalation", "resolution",
                             "data_access", "evaluation")
    for t in et.EVENT_TYPES:
        assert et.EVENT_TYPE_PATTERN.fullmatch(t.name)
        part = et.part_of(t.name)
        for d in t.details:
            assert part is not None and part.field(d.path)


def test_result_columns():
    # The CSV export, the SQL export (store/export.py) and stored exports depend on this.
    # Envelope v2 added the principal after host and the erase_reason payload; the
    # payloads that v1 sealed as columns kept their columns' places. v3 added
    # response_id after the model call's columns and the evaluation's after data
    # access's, and the explanation payload.
    assert RESULT_COLUMNS == (
        "time", "end_time", "received_time", "seq", "chain_id", "record_id", "event_type",
        "task_id", "request_id", "trace_id", "span_id", "parent_span_id", "service",
        "service_version", "environment", "host", "principal_kind", "principal_id",
        "provider", "model", "model_version",
        "prompt_template_id", "prompt_version", "confidence", "input_tokens",
        "output_tokens", "streamed", "response_id", "reviewer_id", "decision",
        "time_spent_ms", "reason_code", "policy_ref", "escalation_from", "escalation_to",
        "escalation_reason", "resolution_outcome", "final_decision", "actor", "resource",
        "purpose", "evaluation_name", "score_value", "score_label", "error_type",
        "error_message", "attributes", "parameters",
        "input", "output", "logprobs", "modified_output", "diff", "rationale",
        "explanation", "erase_reason", "leaf_hash", "chain_hash")


# --------------------------------------------------- split_record against its old version

def split_record_reference(rec: pb.AuditRecord, chain_id: str, received_ns: int
                           ) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """split_record as it was before the table of event types (commit f948c26)."""
    env = empty_envelope(1)
    env.update(
        chain_id=chain_id, record_id=rec.record_id, event_type=rec.event_type,
        task_id=rec.task_id, request_id=rec.request_id, trace_id=rec.trace_id,
        span_id=rec.span_id, parent_span_id=rec.parent_span_id,
        start_time=rec.start_time_unix_nano,
        end_time=rec.end_time_unix_nano or rec.start_time_unix_nano,
        received_time=received_ns, service=rec.service, service_version=rec.service_version,
        environment=rec.environment, host=rec.host, sdk_version=rec.sdk_version,
        error_type=rec.error.type, error_message=rec.error.message,
        attributes=dict(rec.attributes),
    )
    payloads: list[tuple[str, str]] = []
    kind = rec.event_type
    if kind == "model_call":
        m = rec.model_call
        env.update(provider=m.provider, model=m.model, model_version=m.model_version,
                   prompt_template_id=m.prompt_template_id, prompt_version=m.prompt_version,
                   parameters=dict(m.parameters),
                   confidence=m.confidence if m.HasField("confidence") else None,
                   input_tokens=m.usage.input_tokens, output_tokens=m.usage.output_tokens,
                   streamed=int(m.streamed))
        payloads += [("input", m.input), ("output", m.output)]
        if m.logprobs:
            payloads.append(("logprobs", json.dumps([[lp.token, lp.logprob] for lp in m.logprobs],
                                                    ensure_ascii=False)))
    elif kind == "review":
        v = rec.review
        env.update(reviewer_id=v.reviewer_id, decision=v.decision, time_spent_ms=v.time_spent_ms,
                   reason_code=v.rationale.reason_code, policy_ref=v.rationale.policy_ref)
        payloads += [("modified_output", v.modified_output), ("diff", v.diff),
                     ("rationale", v.rationale.text)]
    elif kind == "escalation":
        e = rec.escalation
        env.update(escalation_from=e.from_reviewer, escalation_to=e.to_reviewer,
                   escalation_reason=e.reason)
    elif kind == "resolution":
        env.update(resolution_outcome=rec.resolution.outcome,
                   final_decision=rec.resolution.final_decision)
    elif kind == "data_access":
        a = rec.data_access
        env.update(actor=a.actor, resource=a.resource, purpose=a.purpose)
    elif kind in ("redaction", "admin_action", "log_review"):
        a = rec.data_access
        env.update(actor=a.actor, resource=a.resource, purpose=a.purpose)
    return env, [(name, content) for name, content in payloads if content]


_ALPHABET = "ab Z09_-.:\"'\\\n\té€𝄞\u0000\u2028"


def _text(rng: random.Random, n: int = 12) -> str:
    if rng.random() < 0.3:
        return ""
    return "".join(rng.choice(_ALPHABET) for _ in range(rng.randint(1, n)))


# The old versions below predate the evaluation type (envelope v3): the random records
# they are held to are of the other types, with no evaluation part.
OLD_TYPES = tuple(t for t in et.KNOWN_TYPES if t != "evaluation")
OLD_PARTS = tuple(p for p in et.PART_NAMES if p != "evaluation")


def random_record(rng: random.Random, types: tuple[str, ...] = OLD_TYPES,
                  parts: tuple[str, ...] = OLD_PARTS) -> pb.AuditRecord:
    t = _text
    rec = pb.AuditRecord(
        record_id=t(rng, 36), event_type=rng.choice(types + ("custom.x", "", "x")),
        task_id=t(rng), request_id=t(rng), trace_id=t(rng), span_id=t(rng),
        parent_span_id=t(rng), start_time_unix_nano=rng.randrange(2**64),
        end_time_unix_nano=rng.choice((0, rng.randrange(2**64))), service=t(rng),
        service_version=t(rng), environment=t(rng), host=t(rng), sdk_version=t(rng))
    for _ in range(rng.randint(0, 3)):
        rec.attributes[t(rng)] = t(rng)
    if rng.random() < 0.3:
        rec.error.type, rec.error.message = t(rng), t(rng)
    # The part matching the type most often; any other parts sometimes (append_own
    # does not validate, and split_record must ignore them).
    for part in parts:
        if (part == rec.event_type and rng.random() < 0.9) or rng.random() < 0.15:
            _fill(rec, part, rng)
    return rec


def _fill(rec: pb.AuditRecord, part: str, rng: random.Random) -> None:
    t = _text
    if part == "model_call":
        m = rec.model_call
        m.provider, m.model, m.model_version = t(rng), t(rng), t(rng)
        m.prompt_template_id, m.prompt_version = t(rng), t(rng)
        for _ in range(rng.randint(0, 3)):
            m.parameters[t(rng)] = t(rng)
        m.input, m.output = t(rng, 40), t(rng, 40)
        if rng.random() < 0.6:
            m.confidence = rng.choice((0.0, -0.0, 1.0, rng.random(), 1e300, -5.5))
        for _ in range(rng.choice((0, 0, 1, 4))):
            m.logprobs.add(token=t(rng), logprob=rng.choice((0.0, -rng.random() * 20, 3.0)))
        m.usage.input_tokens = rng.randrange(2**32)
        m.usage.output_tokens = rng.choice((0, rng.randrange(2**32)))
        m.streamed = rng.random() < 0.5
        if rng.random() < 0.3:
            m.response_id = t(rng)  # v3: not in the v1 envelope the old split made
    elif part == "evaluation":
        e = rec.evaluation
        e.name, e.score_label, e.explanation, e.response_id = t(rng), t(rng), t(rng, 40), t(rng)
        if rng.random() < 0.7:
            e.score_value = rng.choice((0.0, -0.0, 1.0, rng.random(), 1e300, -5.5, 42.0))
    elif part == "review":
        v = rec.review
        v.reviewer_id, v.decision = t(rng), rng.choice(et.DECISIONS + ("", "maybe"))
        v.modified_output, v.diff = t(rng, 40), t(rng, 40)
        v.time_spent_ms = rng.choice((0, rng.randrange(2**64)))
        v.rationale.reason_code, v.rationale.policy_ref = t(rng), t(rng)
        v.rationale.text = t(rng, 40)
    elif part == "escalation":
        e = rec.escalation
        e.from_reviewer, e.to_reviewer, e.reason = t(rng), t(rng), t(rng)
    elif part == "resolution":
        rec.resolution.outcome, rec.resolution.final_decision = t(rng), t(rng)
    else:
        a = rec.data_access
        a.actor, a.resource, a.purpose = t(rng), t(rng), t(rng)


def test_split_record_equals_its_old_version_on_random_records():
    rng = random.Random(20240611)
    for _ in range(5000):
        rec = random_record(rng)
        received = rng.randrange(2**64)
        # As envelope v1 seals it (--envelope-version 1): exactly the old split.
        env, payloads = as_v1(*split_record(rec, "chain-1", received))
        assert env.pop("envelope_version") == 1
        ref_env, ref_payloads = split_record_reference(rec, "chain-1", received)
        assert list(env) == list(FIELD_NAMES_V1)
        assert env == ref_env
        assert [type(v) for v in env.values()] == [type(v) for v in ref_env.values()]
        assert payloads == ref_payloads


def test_split_record_of_each_type():
    rng = random.Random(7)
    seen = set()
    for _ in range(2000):
        rec = random_record(rng)
        env, payloads = as_v1(*split_record(rec, "c", 1))
        env.pop("envelope_version")
        assert (env, payloads) == split_record_reference(rec, "c", 1)
        seen.add(rec.event_type)
        if rec.event_type == "model_call" and rec.model_call.logprobs:
            text = dict(payloads)["logprobs"]
            assert json.loads(text) == [[lp.token, lp.logprob] for lp in rec.model_call.logprobs]
    assert seen >= set(OLD_TYPES)


# ------------------------------------------------- describe_event against its old version

def _model(rec: dict) -> str:
    model = rec.get("model") or ""
    if model and rec.get("prompt_version"):
        model += f" @{rec['prompt_version']}"
    return model


def _indent(label: str, text: str, width: int = 100) -> list[str]:
    # Since then ledger text is shown inert (aitrail.cli.output.safe): only LF and CRLF
    # break a line, every other control is shown escaped.
    lines = []
    for i, para in enumerate(text.replace("\r\n", "\n").split("\n")):
        wrapped = textwrap.wrap(safe(para), width - 14) or [""]
        for j, line in enumerate(wrapped):
            lead = f"    {label:<9} " if i == 0 and j == 0 else " " * 14
            lines.append(lead + line)
    return lines


def describe_event_reference(ev: dict) -> list[str]:
    """describe_event as it was before the table of event types (commit f948c26), with
    ledger text shown inert."""
    kind = ev["event_type"]
    head = f"{ev['time']}  #{ev['seq']:<6} {kind.upper().replace('_', ' ')}"
    body: list[str] = []
    if kind == "model_call":
        head += f"  {ev.get('provider') or ''} {_model(ev)}".rstrip()
        if ev.get("model_version"):
            head += f" (version {ev['model_version']})"
        if ev.get("confidence") is not None:
            head += f"  confidence {ev['confidence']:.2f}"
        for name in ("input", "output"):
            if ev.get(name):
                body += _indent(name + ":", ev[name])
        if ev.get("error_type"):
            body += _indent("error:", f"{ev['error_type']}: {ev.get('error_message', '')}")
    elif kind == "review":
        head += f"  {ev['reviewer_id']} decided {ev['decision'].upper()}"
        head += f" after {ev['time_spent_ms'] / 1000:.1f} s"
        why = ", ".join(x for x in (ev.get("reason_code"), ev.get("policy_ref") and
                                    f"policy {ev['policy_ref']}") if x)
        if why:
            body += _indent("reason:", why)
        if ev.get("rationale"):
            body += _indent("rationale:", ev["rationale"])
        if ev.get("modified_output"):
            body += _indent("new output:", ev["modified_output"])
        if ev.get("diff"):
            body += _indent("diff:", ev["diff"])
    elif kind == "escalation":
        head += f"  {ev['escalation_from']} -> {ev['escalation_to']}"
        if ev.get("escalation_reason"):
            body += _indent("reason:", ev["escalation_reason"])
    elif kind == "resolution":
        head += f"  {ev['resolution_outcome']}"
        if ev.get("final_decision"):
            body += _indent("final:", ev["final_decision"])
    elif kind == "data_access":
        head += f"  {ev['actor']} read {ev['resource']} ({ev['purpose']})"
    elif kind == "redaction":
        head += f"  {ev['actor']} erased payloads of {ev['resource']}"
        body += _indent("reason:", ev["purpose"])
    elif kind == "admin_action":
        head += f"  {ev['actor']}: {ev['purpose']} {ev['resource']}"
    elif kind == "log_review":
        head += f"  {ev['actor']} signed off {ev['resource']} as reviewed"
    if ev.get("attributes"):
        body += _indent("attributes:", ", ".join(f"{k}={v}" for k, v in
                                                 sorted(ev["attributes"].items())))
    ids = [f"{k}={ev[k]}" for k in ("request_id", "trace_id") if ev.get(k)]
    body.append("    " + safe("  ".join(ids + [f"record={ev['record_id']}"])))
    return [safe(head)] + body


def random_event(rng: random.Random) -> dict:
    """A timeline event as the collector's API returns it: envelope columns and
    payloads by name (payloads sometimes missing, as when erased or hidden)."""
    rec = random_record(rng)
    env, payloads = as_v1(*split_record(rec, "c", 5))
    ev = dict(env, seq=rng.randrange(10**7), time="2026-05-28T10:00:00.000000Z")
    ev.update(payloads)
    if rng.random() < 0.3:
        ev.pop(rng.choice(PAYLOAD_NAMES), None)
    for key in ("error_message", "request_id", "trace_id"):
        if rng.random() < 0.1:
            ev.pop(key, None)
    if rng.random() < 0.2:
        ev["text"] = "x " * rng.randint(0, 120)  # long lines: wrapping
        for name in ("input", "rationale", "escalation_reason", "purpose"):
            ev[name] = ev["text"]
    if ev["event_type"] == "redaction":  # the API reads a v1 redaction's reason so
        ev["erase_reason"] = ev["purpose"]
    return ev


def test_describe_event_equals_its_old_version_on_random_events():
    rng = random.Random(99)
    for _ in range(3000):
        ev = random_event(rng)
        assert describe_event(ev) == describe_event_reference(ev)


# --------------------------------------------- build_record's part fields from the table

class _Tagging:
    """A redactor that shows which redaction field name each value went through."""

    def apply(self, name: str, value: str) -> str:
        return f"<{name}:{value}>"


class _Config:
    service, service_version, environment, host = "svc", "1", "test", "h"


def _build_reference(kind: str, d: dict) -> pb.AuditRecord:
    """The escalation / resolution / data_access branches of build_record before the
    table (commit f948c26)."""
    r = _Tagging().apply
    rec = pb.AuditRecord()
    if kind == "escalation":
        rec.escalation.from_reviewer = r("reviewer_id", d["escalation_from"])
        rec.escalation.to_reviewer = r("reviewer_id", d["escalation_to"])
        rec.escalation.reason = r("escalation_reason", d.get("escalation_reason") or "")
    elif kind == "resolution":
        rec.resolution.outcome = d["resolution_outcome"]
        rec.resolution.final_decision = r("final_decision", d.get("final_decision") or "")
    elif kind == "data_access":
        rec.data_access.actor = r("actor", d["actor"])
        rec.data_access.resource = r("resource", d["resource"])
        rec.data_access.purpose = d["purpose"]
    return rec


@pytest.mark.parametrize("kind,draft", [
    ("escalation", {"escalation_from": "a", "escalation_to": "b", "escalation_reason": "why"}),
    ("escalation", {"escalation_from": "a", "escalation_to": "b", "escalation_reason": None}),
    ("escalation", {"escalation_from": "a", "escalation_to": "b"}),
    ("resolution", {"resolution_outcome": "done", "final_decision": "ok"}),
    ("resolution", {"resolution_outcome": "done"}),
    ("data_access", {"actor": "u", "resource": "r", "purpose": "p"}),
    ("task_created", {}),
    ("custom.x", {"actor": "u"}),
    ("redaction", {}),
])
def test_build_record_parts_equal_the_old_code(kind, draft):
    from aitrail.record.build import build_record
    d = dict(draft, record_id="id", event_type=kind, start=5)
    rec = build_record(d, _Config(), _Tagging())
    ref = _build_reference(kind, d)
    for part in et.PART_NAMES:
        assert getattr(rec, part) == getattr(ref, part), part
        assert rec.HasField(part) == ref.HasField(part), part


@pytest.mark.parametrize("kind,missing", [("escalation", "escalation_to"),
                                          ("resolution", "resolution_outcome"),
                                          ("data_access", "purpose")])
def test_build_record_still_needs_required_draft_keys(kind, missing):
    from aitrail.record.build import build_record
    full = {"escalation": {"escalation_from": "a", "escalation_to": "b"},
            "resolution": {"resolution_outcome": "done"},
            "data_access": {"actor": "u", "resource": "r", "purpose": "p"}}[kind]
    d = {k: v for k, v in full.items() if k != missing}
    with pytest.raises(KeyError):
        build_record(dict(d, record_id="id", event_type=kind, start=5), _Config(), _Tagging())


# ------------------------------------------ per-part validation against its old version

def _parts_reference(rec: pb.AuditRecord, limits: Any) -> None:
    """validate._parts (with _model_call and _review) before the table (commit f948c26)."""
    import math
    Invalid, check_len = validate.Invalid, validate._check_len
    kind = rec.event_type
    for part in ("model_call", "review", "escalation", "resolution", "data_access"):
        if rec.HasField(part) and part != kind and _carries(getattr(rec, part)):
            raise Invalid(f"{part} fields are set on a {kind!r} record")
    if kind == "model_call":
        m = rec.model_call
        if not m.model:
            raise Invalid("model_call needs a model name")
        for name in ("provider", "model", "model_version", "prompt_template_id",
                     "prompt_version"):
            check_len(f"model_call.{name}", getattr(m, name), limits.max_name_chars)
        if len(m.parameters) > limits.max_attributes:
            raise Invalid(f"{len(m.parameters)} parameters; the limit is {limits.max_attributes}")
        for key, value in m.parameters.items():
            check_len(f"parameter {key[:40]!r}", value, limits.max_attribute_chars)
        check_len("model_call.input", m.input, limits.max_text_chars)
        check_len("model_call.output", m.output, limits.max_text_chars)
        if m.HasField("confidence") and not (math.isfinite(m.confidence)
                                             and 0 <= m.confidence <= 1):
            raise Invalid(f"confidence {m.confidence!r} must be between 0 and 1")
        if len(m.logprobs) > limits.max_logprobs:
            raise Invalid(f"{len(m.logprobs)} logprobs; the limit is {limits.max_logprobs}")
        for lp in m.logprobs:
            if not math.isfinite(lp.logprob) or lp.logprob > 0:
                raise Invalid(f"logprob {lp.logprob!r} must be a finite number <= 0")
    elif kind == "review":
        v = rec.review
        if not v.reviewer_id:
            raise Invalid("review needs a reviewer_id")
        check_len("review.reviewer_id", v.reviewer_id, limits.max_id_chars)
        if v.decision not in et.DECISIONS:
            raise Invalid(f"review.decision {v.decision[:40]!r} must be one of "
                          f"{', '.join(et.DECISIONS)}")
        if v.decision == "modify" and not v.modified_output:
            raise Invalid("a 'modify' review needs modified_output")
        for name in ("modified_output", "diff"):
            check_len(f"review.{name}", getattr(v, name), limits.max_text_chars)
        check_len("review.rationale.text", v.rationale.text, limits.max_text_chars)
        check_len("review.rationale.reason_code", v.rationale.reason_code,
                  limits.max_name_chars)
        check_len("review.rationale.policy_ref", v.rationale.policy_ref,
                  limits.max_name_chars)
    elif kind == "escalation":
        e = rec.escalation
        if not e.from_reviewer or not e.to_reviewer:
            raise Invalid("escalation needs from_reviewer and to_reviewer")
        check_len("escalation.from_reviewer", e.from_reviewer, limits.max_id_chars)
        check_len("escalation.to_reviewer", e.to_reviewer, limits.max_id_chars)
        check_len("escalation.reason", e.reason, limits.max_text_chars)
    elif kind == "resolution":
        if not rec.resolution.outcome:
            raise Invalid("resolution needs an outcome")
        check_len("resolution.outcome", rec.resolution.outcome, limits.max_name_chars)
        check_len("resolution.final_decision", rec.resolution.final_decision,
                  limits.max_text_chars)
    elif kind == "data_access":
        a = rec.data_access
        if not (a.actor and a.resource and a.purpose):
            raise Invalid("data_access needs actor, resource and purpose")
        for name in ("actor", "resource", "purpose"):
            check_len(f"data_access.{name}", getattr(a, name), limits.max_name_chars)


def _reason(fn: Any, rec: pb.AuditRecord, limits: Any) -> Any:
    try:
        fn(rec, limits)
    except validate.Invalid as exc:
        return str(exc)
    return None


def _carries(message) -> bool:
    # A part present but empty carries nothing: the wire cannot tell it from an absent one.
    return any(fd.message_type is None or fd.is_repeated or _carries(value)
               for fd, value in message.ListFields())


def test_part_validation_equals_its_old_version_on_random_records():
    from aitrail_collector.config import Limits
    rng = random.Random(31337)
    reasons = set()
    for i in range(20000):
        limits = Limits(max_id_chars=rng.randint(3, 12), max_name_chars=rng.randint(3, 12),
                        max_text_chars=rng.randint(5, 40), max_attributes=rng.randint(1, 3),
                        max_attribute_chars=rng.randint(2, 12),
                        max_logprobs=rng.randint(1, 4))
        rec = random_record(rng)
        if rec.event_type in et.RESERVED_TYPES:
            continue  # refused before its parts are looked at (validate._identity)
        if rec.HasField("model_call"):  # v3's, checked by test_evaluation_validation
            rec.model_call.ClearField("response_id")
        if rng.random() < 0.5:  # parts of other types: mostly not, to reach the checks
            for part in OLD_PARTS:
                if part != rec.event_type:
                    rec.ClearField(part)
        got = _reason(validate._parts, rec, limits)
        assert got == _reason(_parts_reference, rec, limits), rec
        reasons.add(got)
    # every kind of refusal was reached
    assert len(reasons) > 40


def test_v2_seals_no_free_text_and_names_the_principal():
    """Envelope v2: the escalation reason, the final decision, the error message and an
    erasure's reason are payloads (erasable); the sender is sealed."""
    rec = pb.AuditRecord(record_id="r", event_type="escalation", start_time_unix_nano=1,
                         service="s")
    rec.escalation.from_reviewer, rec.escalation.to_reviewer = "a", "b"
    rec.escalation.reason = "customer Bob called twice"
    rec.error.type, rec.error.message = "Timeout", "user bob@example.com waited"
    env, payloads = as_v2(*split_record(rec, "c", 1, Sender("apikey", "0123abcd", "s")))
    assert env.pop("envelope_version") == 2 and list(env) == list(FIELD_NAMES_V2)
    assert "escalation_reason" not in env and "error_message" not in env
    assert dict(payloads) == {"escalation_reason": "customer Bob called twice",
                              "error_message": "user bob@example.com waited"}
    assert (env["principal_kind"], env["principal_id"]) == ("apikey", "0123abcd")
    res = pb.AuditRecord(record_id="r2", event_type="resolution", start_time_unix_nano=1,
                         service="s")
    res.resolution.outcome, res.resolution.final_decision = "refunded", "refund Bob $40"
    env, payloads = as_v2(*split_record(res, "c", 1))
    assert dict(payloads) == {"final_decision": "refund Bob $40"}
    assert env["principal_kind"] == "unauthenticated"
    red = pb.AuditRecord(record_id="r3", event_type="redaction", start_time_unix_nano=1,
                         service="aitrail-collector")
    red.data_access.actor, red.data_access.resource = "dpo", "task:T-1"
    red.data_access.purpose = "GDPR request REQ-7"
    env, payloads = as_v2(*split_record(red, "c", 1))
    assert env["purpose"] == "" and dict(payloads) == {"erase_reason": "GDPR request REQ-7"}


# ------------------------------------------------------- envelope v3: the evaluation type

def _evaluation(**fields: Any) -> pb.AuditRecord:
    rec = pb.AuditRecord(record_id="0190a5c6-7b1e-7c3d-8e9f-0123456789ab",
                         event_type="evaluation", start_time_unix_nano=1, service="s")
    for key, value in fields.items():
        setattr(rec.evaluation, key, value)
    return rec


def test_v3_seals_an_evaluation_and_a_model_calls_response_id():
    rec = _evaluation(name="relevance", score_value=-3.5, score_label="poor",
                      explanation="talks about Bob", response_id="chatcmpl-1")
    env, payloads = split_record(rec, "c", 1)
    assert env["envelope_version"] == 3
    assert (env["evaluation_name"], env["score_value"], env["score_label"],
            env["response_id"]) == ("relevance", -3.5, "poor", "chatcmpl-1")
    assert payloads == [("explanation", "talks about Bob")]
    assert split_record(_evaluation(name="x"), "c", 1)[0]["score_value"] is None
    call = pb.AuditRecord(record_id="m", event_type="model_call", start_time_unix_nano=1,
                          service="s")
    call.model_call.model, call.model_call.response_id = "gpt", "chatcmpl-2"
    env, _ = split_record(call, "c", 1)
    assert env["response_id"] == "chatcmpl-2" and env["evaluation_name"] == ""
    # An evaluation part on another type is not sealed (validate refuses it anyway).
    call.evaluation.name = "stray"
    assert split_record(call, "c", 1)[0]["evaluation_name"] == ""


@pytest.mark.parametrize("fields,reason", [
    ({}, "evaluation needs a name"),
    ({"score_value": 0.5}, "evaluation needs a name"),
    ({"name": "r", "score_value": float("nan")}, "evaluation.score_value nan must be a finite"
                                                 " number"),
    ({"name": "r", "score_value": float("-inf")}, "evaluation.score_value -inf must be a"
                                                  " finite number"),
    ({"name": "r" * 2000}, "evaluation.name is 2000 characters; the limit is 1024"),
    ({"name": "r", "score_value": -1e300, "score_label": "bad"}, None),  # any finite score
    ({"name": "r", "score_value": 7.0}, None),
    ({"name": "r"}, None),
    ({"name": "r", "response_id": "x" * 300}, "evaluation.response_id is 300 characters;"
                                              " the limit is 256"),
])
def test_evaluation_validation(fields, reason):
    from aitrail_collector.config import Limits
    assert validate.validate(_evaluation(**fields), 2, Limits()) == reason


def test_an_evaluation_part_on_another_type_is_refused():
    from aitrail_collector.config import Limits
    rec = pb.AuditRecord(record_id="0190a5c6-7b1e-7c3d-8e9f-0123456789ab",
                         event_type="review", start_time_unix_nano=1, service="s")
    rec.review.reviewer_id, rec.review.decision = "ann", "approve"
    rec.evaluation.score_label = "pass"
    assert (validate.validate(rec, 2, Limits())
            == "evaluation fields are set on a 'review' record")


def test_describe_an_evaluation():
    ev = {"event_type": "evaluation", "seq": 3, "time": "T", "record_id": "r",
          "evaluation_name": "relevance", "score_value": 0.82, "score_label": "pass",
          "explanation": "on topic", "response_id": "chatcmpl-1", "attributes": {}}
    assert describe_event(ev) == [
        "T  #3      EVALUATION  relevance: pass (0.82)",
        "    explanation: on topic", "    response id: chatcmpl-1", "    record=r"]
    ev.update(score_value=None, score_label="", explanation="", response_id="")
    assert describe_event(ev)[0] == "T  #3      EVALUATION  relevance"
    ev.update(score_value=-2.0)
    assert describe_event(ev)[0] == "T  #3      EVALUATION  relevance: (-2)"


def test_build_record_of_an_evaluation_and_a_response_id():
    from aitrail.record.build import build_record
    d = {"record_id": "id", "event_type": "evaluation", "start": 5,
         "evaluation_name": "relevance", "score_value": 3, "score_label": "ok",
         "explanation": "fine", "response_id": "resp-1"}
    rec = build_record(d, _Config(), _Tagging())
    e = rec.evaluation
    assert (e.name, e.score_value, e.score_label, e.explanation, e.response_id) == (
        "relevance", 3.0, "ok", "<explanation:fine>", "resp-1")
    rec = build_record(dict(d, score_value=None), _Config(), _Tagging())
    assert not rec.evaluation.HasField("score_value")
    with pytest.raises(KeyError):
        build_record({k: v for k, v in d.items() if k != "evaluation_name"}, _Config(),
                     _Tagging())
    call = build_record({"record_id": "id", "event_type": "model_call", "start": 5,
                         "model": "m", "response_id": "resp-2"}, _Config(), _Tagging())
    assert call.model_call.response_id == "resp-2"
