"""What each event type means: the one table of event types.

The proto (proto/aitrail/v1/audit.proto) stays the wire schema. This table says
what its parts *mean*: for each field of a part, the sealed envelope column it
becomes (a name in ``aitrail.verify.envelope.FIELDS``) or the payload it
becomes (a name in ``envelope.PAYLOAD_NAMES``), which configured length limit
the collector applies to it, whether the part needs it, and its label in
person-readable output. Derived from it:

* the envelope split (``aitrail_collector.ledger.group_commit.split_record``),
* per-part validation (``aitrail_collector.ingest.validate``),
* the CLI timeline text (``aitrail.cli.output.describe_event``),
* the search / CSV columns (``aitrail.record.csv_format.RESULT_COLUMNS``),
* the known types listed by the console, and parts of ``record.build_record``.

Fields are listed in the order the collector checks them; the order of the
envelope columns, payloads and CSV columns each part contributes follows it.
tests/unit/test_event_types.py holds the table equal to the generated proto
descriptor, so the two cannot drift.

Special cases, each handled in one place, by ``Value`` or ``Rule``:

* ``Value.OPTIONAL_F64`` (confidence): absent in the envelope (None) unless set;
* ``Value.BOOL`` (streamed): sealed as the integer 0 or 1;
* ``Value.LOGPROBS``: the payload text is the JSON ``[[token, logprob], ...]``;
* ``Rule.UNIT_INTERVAL`` (confidence): a finite number within 0..1;
* ``Rule.FINITE`` (an evaluation's score_value): any finite number (scales differ);
* ``Rule.LOGPROBS``: at most ``max_logprobs`` of them, each finite and <= 0;
* ``Rule.DECISION``: one of ``DECISIONS``, and ``modify`` needs modified_output;
* the record's end_time defaults to its start_time (split_record).
"""

from __future__ import annotations

import enum
import json
import re
from dataclasses import dataclass
from operator import attrgetter
from typing import Any, Callable, Mapping, Optional


class Limit(enum.Enum):
    """Which configured length limit applies (the names of collector ``Limits``)."""
    ID = "max_id_chars"                # ids: reviewers, actors, tasks
    NAME = "max_name_chars"            # names, versions, codes
    TEXT = "max_text_chars"            # free text and payloads
    ATTRIBUTE = "max_attribute_chars"  # a map: at most max_attributes entries, each value
    #                                    at most max_attribute_chars (keys unchecked)


class Value(enum.Enum):
    """How a proto value becomes an envelope value or payload text."""
    TEXT = "text"                  # string, as is
    UINT = "uint"                  # unsigned integer, as is
    BOOL = "bool"                  # sealed as int: 1 or 0
    OPTIONAL_F64 = "optional_f64"  # proto3 optional double; None when not set
    MAP = "map"                    # map<string, string>, sealed as a dict
    LOGPROBS = "logprobs"          # repeated TokenLogprob; payload JSON [[token, logprob], ...]


class Rule(enum.Enum):
    """A check beyond required-ness and length; validate.py implements each once."""
    UNIT_INTERVAL = "unit_interval"  # finite, 0 <= x <= 1
    FINITE = "finite"                # finite (not NaN, not infinite), any sign and size
    LOGPROBS = "logprobs"            # count <= max_logprobs; each finite and <= 0
    DECISION = "decision"            # one of DECISIONS; 'modify' needs modified_output


@dataclass(frozen=True)
class PartField:
    """One field of a proto part and what it means."""
    path: str                        # within the part, e.g. "usage.input_tokens"
    label: str                       # human label (the CLI timeline's, for payloads)
    column: Optional[str] = None     # the envelope column it is sealed as
    payload: Optional[str] = None    # or: the payload it is held apart as
    value: Value = Value.TEXT
    limit: Optional[Limit] = None    # length limit the collector applies, if any
    required: bool = False           # the part is refused without it
    rule: Optional[Rule] = None
    redact: Optional[str] = None     # the SDK redaction field name applied to it
    v1_column: bool = False          # a payload that envelope v1 sealed as a column

    @property
    def key(self) -> str:
        """Its name in an envelope row, a search result and an SDK draft."""
        name = self.column or self.payload
        assert name is not None, self.path
        return name


@dataclass(frozen=True)
class Part:
    """A proto message of AuditRecord that carries one event type's fields."""
    name: str                        # AuditRecord field name, e.g. "model_call"
    fields: tuple[PartField, ...]
    missing: str = ""                # refusal when a required field is empty

    @property
    def required(self) -> tuple[PartField, ...]:
        return tuple(f for f in self.fields if f.required)

    def field(self, path: str) -> PartField:
        for f in self.fields:
            if f.path == path:
                return f
        raise KeyError(path)

    def by_key(self, key: str) -> PartField:
        """The field sealed as envelope column or payload ``key``."""
        for f in self.fields:
            if f.key == key:
                return f
        raise KeyError(key)


@dataclass(frozen=True)
class Detail:
    """A line of the CLI timeline body: a part field, shown when not empty."""
    path: str
    label: Optional[str] = None      # else the field's label
    always: bool = False             # shown even when empty


@dataclass(frozen=True)
class EventType:
    name: str
    part: Optional[str] = None       # the AuditRecord part it carries, if any
    reserved: bool = False           # written by the collector only
    layout: Optional[Part] = None    # what its part's fields mean, when not the part's own
    summary: str = ""                # CLI headline after the type, format() of the record
    details: tuple[Detail, ...] = ()


DECISIONS: tuple[str, ...] = ("approve", "reject", "modify", "none")

# Custom event types (no part) are allowed when they match this.
EVENT_TYPE_PATTERN = re.compile(r"[a-z][a-z0-9_.]{0,63}")

_T, _I, _N, _A = Limit.TEXT, Limit.ID, Limit.NAME, Limit.ATTRIBUTE

PARTS: tuple[Part, ...] = (
    Part("model_call", missing="model_call needs a model name", fields=(
        PartField("provider", "provider", column="provider", limit=_N),
        PartField("model", "model", column="model", limit=_N, required=True),
        PartField("model_version", "model version", column="model_version", limit=_N),
        PartField("prompt_template_id", "prompt template", column="prompt_template_id",
                  limit=_N),
        PartField("prompt_version", "prompt version", column="prompt_version", limit=_N),
        PartField("parameters", "parameter", column="parameters", value=Value.MAP, limit=_A),
        PartField("input", "input", payload="input", limit=_T, redact="input"),
        PartField("output", "output", payload="output", limit=_T, redact="output"),
        PartField("confidence", "confidence", column="confidence", value=Value.OPTIONAL_F64,
                  rule=Rule.UNIT_INTERVAL),
        PartField("logprobs", "logprobs", payload="logprobs", value=Value.LOGPROBS,
                  rule=Rule.LOGPROBS, redact="logprobs"),
        PartField("usage.input_tokens", "input tokens", column="input_tokens",
                  value=Value.UINT),
        PartField("usage.output_tokens", "output tokens", column="output_tokens",
                  value=Value.UINT),
        PartField("streamed", "streamed", column="streamed", value=Value.BOOL),
        PartField("response_id", "response id", column="response_id", limit=_I),
    )),
    Part("review", missing="review needs a reviewer_id", fields=(
        PartField("reviewer_id", "reviewer", column="reviewer_id", limit=_I, required=True,
                  redact="reviewer_id"),
        PartField("decision", "decision", column="decision", rule=Rule.DECISION),
        PartField("modified_output", "new output", payload="modified_output", limit=_T,
                  redact="modified_output"),
        PartField("diff", "diff", payload="diff", limit=_T, redact="diff"),
        PartField("time_spent_ms", "time spent", column="time_spent_ms", value=Value.UINT),
        PartField("rationale.text", "rationale", payload="rationale", limit=_T,
                  redact="rationale"),
        PartField("rationale.reason_code", "reason", column="reason_code", limit=_N),
        PartField("rationale.policy_ref", "policy", column="policy_ref", limit=_N),
    )),
    Part("escalation", missing="escalation needs from_reviewer and to_reviewer", fields=(
        PartField("from_reviewer", "from", column="escalation_from", limit=_I, required=True,
                  redact="reviewer_id"),
        PartField("to_reviewer", "to", column="escalation_to", limit=_I, required=True,
                  redact="reviewer_id"),
        PartField("reason", "reason", payload="escalation_reason", limit=_T,
                  redact="escalation_reason", v1_column=True),
    )),
    Part("resolution", missing="resolution needs an outcome", fields=(
        PartField("outcome", "outcome", column="resolution_outcome", limit=_N, required=True),
        PartField("final_decision", "final", payload="final_decision", limit=_T,
                  redact="final_decision", v1_column=True),
    )),
    Part("data_access", missing="data_access needs actor, resource and purpose", fields=(
        PartField("actor", "actor", column="actor", limit=_N, required=True, redact="actor"),
        PartField("resource", "resource", column="resource", limit=_N, required=True,
                  redact="resource"),
        PartField("purpose", "purpose", column="purpose", limit=_N, required=True),
    )),
    # From envelope v3 on. An OpenTelemetry gen_ai.evaluation.result event, or
    # aitrail.evaluate(): the score is on the evaluator's own scale, so any finite number.
    Part("evaluation", missing="evaluation needs a name", fields=(
        PartField("name", "evaluation", column="evaluation_name", limit=_N, required=True),
        PartField("score_value", "score", column="score_value", value=Value.OPTIONAL_F64,
                  rule=Rule.FINITE),
        PartField("score_label", "label", column="score_label", limit=_N),
        PartField("explanation", "explanation", payload="explanation", limit=_T,
                  redact="explanation"),
        PartField("response_id", "response id", column="response_id", limit=_I),
    )),
)

# A redaction (made by the collector only, ledger/erasure.py) travels in the
# data_access part: who asked, what, and why; the reason is free text, so from
# envelope v2 on it is a payload (erasable), not the envelope's purpose.
REDACTION_LAYOUT = Part("data_access", fields=(
    PartField("actor", "actor", column="actor", limit=_N, required=True),
    PartField("resource", "resource", column="resource", limit=_N, required=True),
    PartField("purpose", "reason", payload="erase_reason", limit=_N, required=True),
))

# Set on a record of any event type (a failed call, ...), not matched to event_type.
ERROR_PART = Part("error", fields=(
    PartField("type", "error", column="error_type", limit=_N),
    PartField("message", "error message", payload="error_message", limit=_T,
              redact="error_message", v1_column=True),
))

EVENT_TYPES: tuple[EventType, ...] = (
    # model_call, review and evaluation headlines have conditional pieces: cli/output.py
    # builds them.
    EventType("model_call", part="model_call",
              details=(Detail("input"), Detail("output"), Detail("response_id"))),
    EventType("review", part="review",
              details=(Detail("rationale.text"), Detail("modified_output"), Detail("diff"))),
    # An evaluation of a model response (the headline: "relevance: pass (0.82)").
    EventType("evaluation", part="evaluation",
              details=(Detail("explanation"), Detail("response_id"))),
    EventType("escalation", part="escalation", summary="{escalation_from} -> {escalation_to}",
              details=(Detail("reason"),)),
    EventType("resolution", part="resolution", summary="{resolution_outcome}",
              details=(Detail("final_decision"),)),
    EventType("task_created"),
    EventType("data_access", part="data_access", summary="{actor} read {resource} ({purpose})"),
    # Made by the collector only (ledger/erasure.py): who asked, what and why travel in
    # the data_access part, what was erased in attributes.
    EventType("redaction", part="data_access", reserved=True, layout=REDACTION_LAYOUT,
              summary="{actor} erased payloads of {resource}",
              details=(Detail("purpose", "reason", always=True),)),
    # Made by the collector only (ledger/admin_log.py): an admin's change to users, tokens
    # or API keys; the admin in actor, what was done in purpose, its target in resource.
    EventType("admin_action", part="data_access", reserved=True,
              summary="{actor}: {purpose} {resource}"),
    # Made by the collector only (ledger/review_log.py): a SOC 2 log review sign-off;
    # the reviewer in actor, the period in resource (``period:2026-W48``), the note in
    # attributes.
    EventType("log_review", part="data_access", reserved=True,
              summary="{actor} signed off {resource} as reviewed"),
)

BY_NAME: Mapping[str, EventType] = {t.name: t for t in EVENT_TYPES}
PARTS_BY_NAME: Mapping[str, Part] = {p.name: p for p in PARTS + (ERROR_PART,)}

KNOWN_TYPES: tuple[str, ...] = tuple(t.name for t in EVENT_TYPES)
RESERVED_TYPES: tuple[str, ...] = tuple(t.name for t in EVENT_TYPES if t.reserved)

# The service of every record the collector makes itself (data_access records of
# reads, redactions). Refused in client records and API keys (is_collector_service),
# so it alone tells the collector's own data_access records from a client's.
COLLECTOR_SERVICE = "aitrail-collector"


def is_collector_service(service: str) -> bool:
    """``service`` names the collector, or is a look-alike of it (case, blanks)."""
    return service.strip().casefold() == COLLECTOR_SERVICE
PART_NAMES: tuple[str, ...] = tuple(p.name for p in PARTS)

# Top-level AuditRecord fields sealed as they are: proto name -> envelope column.
# end_time defaults to start_time, in split_record.
RECORD_COLUMNS: tuple[tuple[str, str], ...] = (
    ("record_id", "record_id"), ("event_type", "event_type"), ("task_id", "task_id"),
    ("request_id", "request_id"), ("trace_id", "trace_id"), ("span_id", "span_id"),
    ("parent_span_id", "parent_span_id"), ("start_time_unix_nano", "start_time"),
    ("end_time_unix_nano", "end_time"), ("service", "service"),
    ("service_version", "service_version"), ("environment", "environment"),
    ("host", "host"), ("sdk_version", "sdk_version"),
)


def part_of(event_type: str) -> Optional[Part]:
    """What the part an event type carries means; None for task_created and custom
    types."""
    t = BY_NAME.get(event_type)
    if t is None or t.part is None:
        return None
    return t.layout or PARTS_BY_NAME[t.part]


def _all_parts() -> tuple[Part, ...]:
    return PARTS + (ERROR_PART, REDACTION_LAYOUT)


def payload_names() -> tuple[str, ...]:
    """Every payload, in table order (equal to envelope.PAYLOAD_NAMES)."""
    seen: list[str] = []
    for p in _all_parts():
        seen += [f.payload for f in p.fields if f.payload and f.payload not in seen]
    return tuple(seen)


# ------------------------------------------------------------ proto -> envelope values

Reader = Callable[[Any], Any]


def _itself(m: Any) -> Any:
    return m


def _optional(parent: Optional[str], leaf: str) -> Reader:
    get_parent: Reader = attrgetter(parent) if parent else _itself

    def read(m: Any) -> Any:
        holder = get_parent(m)
        return getattr(holder, leaf) if holder.HasField(leaf) else None
    return read


def _logprobs_json(m: Any, get: Reader) -> str:
    items = get(m)
    if not items:
        return ""
    return json.dumps([[lp.token, lp.logprob] for lp in items], ensure_ascii=False)


def reader(f: PartField) -> Reader:
    """A function from the part message to the field's envelope value or payload text."""
    get: Reader = attrgetter(f.path)
    if f.value is Value.OPTIONAL_F64:
        parent, _, leaf = f.path.rpartition(".")
        return _optional(parent or None, leaf)
    if f.value is Value.BOOL:
        return lambda m: int(get(m))
    if f.value is Value.MAP:
        return lambda m: dict(get(m))
    if f.value is Value.LOGPROBS:
        return lambda m: _logprobs_json(m, get)
    return get


def _tuple_getter(paths: tuple[str, ...]) -> Callable[[Any], tuple[Any, ...]]:
    if not paths:
        return lambda m: ()
    if len(paths) == 1:
        one = attrgetter(paths[0])
        return lambda m: (one(m),)
    many: Callable[[Any], tuple[Any, ...]] = attrgetter(*paths)
    return many


@dataclass(frozen=True)
class SplitPlan:
    """How to read one part into envelope columns and payloads.

    Columns sealed as they are (text, integers) are read by one getter; the others
    (``Value.OPTIONAL_F64``, ``BOOL``, ``MAP``) each by its reader. Sealing reads
    every record through this, so it is kept cheap.
    """
    part: str
    plain_columns: tuple[str, ...]
    read_plain: Callable[[Any], tuple[Any, ...]]
    columns: tuple[tuple[str, Reader], ...]
    payloads: tuple[tuple[str, Reader], ...]


def split_plan(part: Part) -> SplitPlan:
    plain = tuple(f for f in part.fields
                  if f.column and f.value in (Value.TEXT, Value.UINT))
    return SplitPlan(
        part.name,
        tuple(f.key for f in plain),
        _tuple_getter(tuple(f.path for f in plain)),
        tuple((f.column, reader(f)) for f in part.fields if f.column and f not in plain),
        tuple((f.payload, reader(f)) for f in part.fields if f.payload))


RECORD_PLAN: SplitPlan = SplitPlan(
    "", tuple(c for _, c in RECORD_COLUMNS),
    _tuple_getter(tuple(n for n, _ in RECORD_COLUMNS)), (), ())

SPLIT_PLANS: Mapping[str, SplitPlan] = {
    t.name: split_plan(t.layout or PARTS_BY_NAME[t.part]) for t in EVENT_TYPES
    if t.part is not None}
ERROR_PLAN: SplitPlan = split_plan(ERROR_PART)


# ------------------------------------------------------------------------- CSV columns

# Where a search result / CSV row starts: where and when, then who sent it.
_LEAD_COLUMNS: tuple[str, ...] = (
    "time", "end_time", "received_time", "seq", "chain_id", "record_id", "event_type",
    "task_id", "request_id", "trace_id", "span_id", "parent_span_id", "service",
    "service_version", "environment", "host",
)
HASH_COLUMNS: tuple[str, ...] = ("leaf_hash", "chain_hash")
PRINCIPAL_COLUMNS: tuple[str, ...] = ("principal_kind", "principal_id")


def result_columns() -> tuple[str, ...]:
    """The columns of a search result / CSV export: the lead columns, every part's
    scalar columns (in table order, the error part last), attributes, the parts'
    map columns, the payloads and the hashes."""
    parts = PARTS + (ERROR_PART,)
    # A payload that v1 sealed as a column keeps that column's place (one column for
    # both versions); the principal (v2) follows who sent the record.
    # A column two parts share (response_id: model_call's, evaluation's) is one column.
    scalar = tuple(dict.fromkeys(f.key for p in parts for f in p.fields
                                 if (f.column or f.v1_column) and f.value is not Value.MAP))
    maps = tuple(f.column for p in parts for f in p.fields
                 if f.column and f.value is Value.MAP)
    payloads = tuple(n for n in payload_names() if n not in scalar)
    return (_LEAD_COLUMNS + PRINCIPAL_COLUMNS + scalar + ("attributes",) + maps + payloads
            + HASH_COLUMNS)
