"""Property tests (hypothesis) of the validator and the query filters; no store, no sockets.

* validate() never raises on any AuditRecord; it answers None or a reason, and a
  record it lets through satisfies, checked here independently of validate's own
  helpers, every invariant the ledger relies on.
* A record built to be valid is always accepted.
* Filters.parse on arbitrary text raises FilterError or returns filters whose
  SQL never contains a user value: every value is a bound parameter.

What these tests found (a trailing newline accepted by "^...$" patterns, an
overflow on huge relative times) is pinned by regression tests at the end.
"""

from __future__ import annotations

import dataclasses
import math
import re
import uuid
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from aitrail.v1 import audit_pb2 as pb
from aitrail_collector.ingest.validate import Limits, validate
from aitrail_collector.store import queries as query
from aitrail_collector.store.queries import MAX_LIMIT, SORTABLE, FilterError, Filters

SETTINGS = settings(max_examples=200, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

NOW = 1_780_000_000 * 10**9  # a fixed "collector clock" (2026-05-28), for reproducibility
S = 10**9
MAX_U64 = 2**64 - 1
MAX_U32 = 2**32 - 1

PARTS = ("model_call", "review", "escalation", "resolution", "data_access", "evaluation")
KNOWN_TYPES = ("model_call", "review", "escalation", "resolution", "task_created",
               "data_access", "redaction", "evaluation")
DECISIONS = ("approve", "reject", "modify", "none")

# Written from the documented rules (proto comments, validate.py docstrings),
# deliberately not imported from validate.py.
UUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
EVENT_RE = re.compile(r"[a-z][a-z0-9_.]{0,63}")
HEX32_RE = re.compile(r"[0-9a-f]{32}")
HEX16_RE = re.compile(r"[0-9a-f]{16}")



# ---------------------------------------------------------------- strategies

INTERESTING_TEXT = ["", "a", " ", "\x00", "\n", "\r\n", "\t", "\u200b", "\ufeff", "é", "漢字",
                    "🙂", "\U0010ffff", "'; DROP TABLE aitrail.envelopes; --", "{task:String}",
                    "%s", "x" * 9, "x" * 13, "x" * 41, "y" * 300]


def texts(max_size: int = 50) -> st.SearchStrategy[str]:
    # hypothesis text: any code point but surrogates (protobuf strings are UTF-8),
    # control characters included.
    return st.one_of(st.text(max_size=max_size), st.sampled_from(INTERESTING_TEXT))


def _uuid_variants(u: uuid.UUID) -> list[str]:
    s = str(u)
    return [s, s.upper(), "{" + s + "}", "urn:uuid:" + s, u.hex, s + "\n", " " + s, s[:-1],
            s.replace("-", "_"), s[:8] + s[9:] + "0"]


record_ids = st.one_of(
    st.uuids().map(str),
    st.builds(_uuid_variants, st.uuids()).flatmap(st.sampled_from),
    texts(40),
    # 36 characters in UUID shape from a wider alphabet (unicode digits, upper case)
    st.text(alphabet="0123456789abcdefABCDEF٠١٢-_", min_size=36, max_size=36),
)

event_types = st.one_of(
    st.sampled_from(KNOWN_TYPES + ("custom.event", "x", "x" * 64, "x" * 65, "A", "9x", "_x",
                                   "model_call\n", "review\n", "redaction\n", "Review",
                                   " review", "review ")),
    st.from_regex(r"[a-z][a-z0-9_.]{0,63}", fullmatch=True),
    texts(70),
)


def hex_ids(n: int) -> st.SearchStrategy[str]:
    return st.one_of(
        st.just(""),
        st.integers(1, 16**n - 1).map(lambda v: f"{v:0{n}x}"),
        st.integers(0, 16**n - 1).map(lambda v: f"{v:0{n}X}"),
        st.sampled_from(["0" * n, "f" * n + "\n", "a" * (n - 1), "a" * (n + 1), "g" * n,
                         "1" * n + "\n"]),
        texts(n + 2),
    )


floats_any = st.floats(allow_nan=True, allow_infinity=True)


@st.composite
def limits_any(draw) -> Limits:
    """Default limits or small ones, so every length check is hit on both sides."""
    if draw(st.booleans()):
        return Limits()
    return Limits(max_record_bytes=draw(st.integers(40, 4000)),
                  max_id_chars=draw(st.integers(1, 12)),
                  max_name_chars=draw(st.integers(1, 16)),
                  max_text_chars=draw(st.integers(0, 45)),
                  max_attributes=draw(st.integers(0, 4)),
                  max_attribute_chars=draw(st.integers(0, 16)),
                  max_logprobs=draw(st.integers(0, 4)),
                  future_skew_s=draw(st.integers(0, 600)),
                  max_age_s=draw(st.integers(0, 40 * 86400)))


def times_for(limits: Limits) -> st.SearchStrategy[int]:
    lo, hi = NOW - limits.max_age_s * S, NOW + limits.future_skew_s * S
    return st.one_of(
        st.just(0),
        st.integers(0, MAX_U64),
        st.integers(max(0, lo - 10 * S), min(MAX_U64, hi + 10 * S)),
        st.sampled_from([lo - 1, lo, lo + 1, hi - 1, hi, hi + 1, NOW, 1, MAX_U64])
        .filter(lambda t: 0 <= t <= MAX_U64),
    )


# Fields a record may have "wild" (arbitrary) instead of well-formed. A record
# gets a few at most, so a good share of the records is accepted and the
# invariants of accepted records are really exercised, right at the edges.
WILD = ("record_id", "event_type", "task_id", "request_id", "trace_id", "span_id",
        "parent_span_id", "start", "end", "service", "system", "attributes", "error",
        "extra_part", "no_part", "part_fields", "part_required", "confidence", "logprobs",
        "decision", "parameters", "usage", "score")


class _Gen:
    """Draws one record: well-formed under ``limits`` except for the ``wild`` fields."""

    def __init__(self, draw, limits: Limits, wild: frozenset):
        self.draw, self.limits, self.wild = draw, limits, wild

    def pick(self, name: str, good: st.SearchStrategy, arbitrary: st.SearchStrategy):
        return self.draw(arbitrary if name in self.wild else good)

    def text(self, name: str, limit: int, *, required: bool = False, arbitrary_size: int = 0):
        good = st.text(min_size=1 if required else 0, max_size=min(limit, 30))
        return self.pick(name, good, texts(arbitrary_size or limit + 3))

    def record(self) -> pb.AuditRecord:
        draw, L = self.draw, self.limits
        kind = self.pick("event_type",
                         st.one_of(st.sampled_from([t for t in KNOWN_TYPES if t != "redaction"]),
                                   st.from_regex(r"[a-z][a-z0-9_.]{0,63}", fullmatch=True)
                                   .filter(lambda t: t != "redaction")),
                         event_types)
        rec = pb.AuditRecord(record_id=self.pick("record_id", st.uuids().map(str), record_ids),
                             event_type=kind)
        rec.task_id = self.text("task_id", L.max_id_chars)
        rec.request_id = self.text("request_id", L.max_id_chars)
        rec.trace_id = self.pick("trace_id", st.one_of(
            st.just(""), st.integers(1, 16**32 - 1).map(lambda v: f"{v:032x}")), hex_ids(32))
        good_span = st.one_of(st.just(""), st.integers(1, 16**16 - 1).map(lambda v: f"{v:016x}"))
        rec.span_id = self.pick("span_id", good_span if rec.trace_id else st.just(""),
                                hex_ids(16))
        rec.parent_span_id = self.pick("parent_span_id", good_span, hex_ids(16))
        lo, hi = max(1, NOW - L.max_age_s * S), NOW + L.future_skew_s * S
        rec.start_time_unix_nano = self.pick("start", st.integers(lo, hi), times_for(L))
        start = rec.start_time_unix_nano
        rec.end_time_unix_nano = self.pick(
            "end", st.one_of(st.just(0), st.integers(start, hi)) if start <= hi else st.just(0),
            st.one_of(times_for(L), st.just(start), st.just(max(0, start - 1))))
        rec.service = self.text("service", L.max_name_chars, required=True)
        for name in ("service_version", "environment", "host", "sdk_version"):
            setattr(rec, name, self.text("system", L.max_name_chars))
        rec.attributes.update(self.pick(
            "attributes",
            st.dictionaries(st.text(max_size=min(L.max_name_chars, 20)),
                            st.text(max_size=min(L.max_attribute_chars, 20)),
                            max_size=min(L.max_attributes, 6)),
            st.dictionaries(texts(L.max_name_chars + 2), texts(L.max_attribute_chars + 2),
                            max_size=L.max_attributes + 2)))
        if draw(st.booleans()) or "error" in self.wild:
            rec.error.type = self.text("error", L.max_name_chars)
            rec.error.message = self.text("error", L.max_text_chars)
        if kind in PARTS and "no_part" not in self.wild:
            self.part(rec, kind)
        if "extra_part" in self.wild:
            for part in draw(st.sets(st.sampled_from(PARTS), min_size=1, max_size=2)):
                self.part(rec, part)
        return rec

    def part(self, rec: pb.AuditRecord, part: str) -> None:
        draw, L = self.draw, self.limits

        def t(limit: int, required: bool = False) -> str:
            return self.text("part_fields", limit, required=required)

        def need(limit: int) -> str:  # a required field: empty only when that is the wild part
            if "part_required" in self.wild and draw(st.booleans()):
                return ""
            return t(limit, True)

        if part == "model_call":
            m = rec.model_call
            m.SetInParent()
            m.model = need(L.max_name_chars)
            for name in ("provider", "model_version", "prompt_template_id", "prompt_version"):
                setattr(m, name, t(L.max_name_chars))
            m.parameters.update(self.pick(
                "parameters",
                st.dictionaries(st.text(max_size=20), st.text(max_size=min(L.max_attribute_chars,
                                                                           20)),
                                max_size=min(L.max_attributes, 5)),
                st.dictionaries(texts(20), texts(L.max_attribute_chars + 2),
                                max_size=L.max_attributes + 2)))
            m.input, m.output = t(L.max_text_chars), t(L.max_text_chars)
            if draw(st.booleans()) or "confidence" in self.wild:
                m.confidence = self.pick("confidence", st.floats(0, 1), st.one_of(
                    floats_any, st.sampled_from([0.0, 1.0, -0.0, 1.0000001, -1e-300,
                                                 math.nextafter(1.0, 2.0)])))
            good_lp = st.lists(st.tuples(st.text(max_size=8),
                                         st.floats(max_value=0, allow_nan=False,
                                                   allow_infinity=False)),
                               max_size=min(L.max_logprobs, 5))
            wild_lp = st.lists(st.tuples(texts(8), st.one_of(floats_any, st.just(-0.0),
                                                             st.just(5e-324))),
                               max_size=L.max_logprobs + 2)
            for token, lp in self.pick("logprobs", good_lp, wild_lp):
                m.logprobs.add(token=token, logprob=lp)
            m.usage.input_tokens, m.usage.output_tokens = self.pick(
                "usage", st.tuples(st.integers(0, 10**6), st.integers(0, 10**6)),
                st.tuples(st.integers(0, MAX_U32), st.integers(0, MAX_U32)))
            m.streamed = draw(st.booleans())
            m.response_id = self.text("part_fields", L.max_id_chars)
        elif part == "evaluation":
            e = rec.evaluation
            e.SetInParent()
            e.name = need(L.max_name_chars)
            if draw(st.booleans()) or "score" in self.wild:
                e.score_value = self.pick("score", st.floats(allow_nan=False,
                                                             allow_infinity=False),
                                          st.one_of(floats_any, st.sampled_from(
                                              [-0.0, 5e-324, -1.7976931348623157e308])))
            e.score_label = t(L.max_name_chars)
            e.explanation = t(L.max_text_chars)
            e.response_id = t(L.max_id_chars)
        elif part == "review":
            v = rec.review
            v.SetInParent()
            v.reviewer_id = need(L.max_id_chars)
            # "modify" needs a modified_output, which a zero max_text_chars cannot hold.
            decisions = DECISIONS if L.max_text_chars else ("approve", "reject", "none")
            v.decision = self.pick("decision", st.sampled_from(decisions), st.one_of(
                st.sampled_from(DECISIONS + ("APPROVE", "maybe", "approve\n", "")), texts(10)))
            v.modified_output = (need(L.max_text_chars) if v.decision == "modify"
                                 else t(L.max_text_chars))
            v.diff = t(L.max_text_chars)
            v.time_spent_ms = draw(st.integers(0, MAX_U64))
            if draw(st.booleans()):
                v.rationale.reason_code = t(L.max_name_chars)
                v.rationale.policy_ref = t(L.max_name_chars)
                v.rationale.text = t(L.max_text_chars)
        elif part == "escalation":
            e = rec.escalation
            e.SetInParent()
            e.from_reviewer, e.to_reviewer = need(L.max_id_chars), need(L.max_id_chars)
            e.reason = t(L.max_text_chars)
        elif part == "resolution":
            rec.resolution.SetInParent()
            rec.resolution.outcome = need(L.max_name_chars)
            rec.resolution.final_decision = t(L.max_text_chars)
        elif part == "data_access":
            a = rec.data_access
            a.SetInParent()
            a.actor, a.resource, a.purpose = (need(L.max_name_chars) for _ in range(3))


@st.composite
def any_records(draw) -> tuple[pb.AuditRecord, Limits]:
    """Records with up to four wild fields (often none), under default or tiny limits."""
    limits = draw(limits_any())
    wild = frozenset(draw(st.sets(st.sampled_from(WILD), max_size=4)))
    return _Gen(draw, limits, wild).record(), limits


@st.composite
def valid_records(draw) -> tuple[pb.AuditRecord, Limits]:
    """Well-formed records: every rule respected, contents (unicode, control
    characters, edge times, edge numbers) still arbitrary."""
    limits = dataclasses.replace(draw(limits_any()), max_record_bytes=Limits().max_record_bytes)
    return _Gen(draw, limits, frozenset()).record(), limits


def _carries(message) -> bool:
    """Any field of the message, at any depth, holds a value that is not its default."""
    return any(fd.message_type is None or fd.is_repeated or _carries(value)
               for fd, value in message.ListFields())


FIRST_FIELD = {"model_call": "model", "review": "reviewer_id", "escalation": "from_reviewer",
               "resolution": "outcome", "data_access": "actor", "evaluation": "name"}


# ---------------------------------------------------------------- the invariants

def violations(rec: pb.AuditRecord, now: int, limits: Limits) -> list[tuple[str, str]]:
    """What the ledger relies on of a sealed record, as (tag, detail) for each breach."""
    out: list[tuple[str, str]] = []

    def need(ok: object, tag: str, detail: str = "") -> None:
        if not ok:
            out.append((tag, detail))

    def pattern(name: str, value: str, regex: re.Pattern) -> bool:
        if regex.fullmatch(value):
            return True
        if value.endswith("\n") and regex.fullmatch(value[:-1]):
            out.append((f"{name}:trailing-newline", repr(value)))
        else:
            out.append((name, repr(value)))
        return False

    def length(name: str, value: str, limit: int) -> None:
        need(len(value) <= limit, f"length:{name}", f"{len(value)} > {limit}")

    need(rec.ByteSize() <= limits.max_record_bytes, "record_bytes")
    need(UUID_RE.fullmatch(rec.record_id), "record_id", repr(rec.record_id))
    kind = rec.event_type
    pattern("event_type", kind, EVENT_RE)
    need(kind != "redaction", "event_type:reserved")
    for name in ("task_id", "request_id"):
        length(name, getattr(rec, name), limits.max_id_chars)
    if rec.trace_id and pattern("trace_id", rec.trace_id, HEX32_RE):
        need(int(rec.trace_id, 16) != 0, "trace_id:zero")
    for name in ("span_id", "parent_span_id"):
        value = getattr(rec, name)
        if value and pattern(name, value, HEX16_RE):
            need(int(value, 16) != 0, f"{name}:zero")
    need(not rec.span_id or rec.trace_id, "span_without_trace")

    start, end = rec.start_time_unix_nano, rec.end_time_unix_nano
    need(start != 0, "start_time:missing")
    need(now - limits.max_age_s * S <= start <= now + limits.future_skew_s * S,
         "start_time:window", f"{(start - now) / S:+.3f} s from now")
    need(end == 0 or start <= end <= now + limits.future_skew_s * S, "end_time",
         f"start {start}, end {end}")

    need(rec.service, "service:empty")
    for name in ("service", "service_version", "environment", "host", "sdk_version"):
        length(name, getattr(rec, name), limits.max_name_chars)
    need(len(rec.attributes) <= limits.max_attributes, "attributes:count")
    for key, value in rec.attributes.items():
        length("attribute key", key, limits.max_name_chars)
        length("attribute value", value, limits.max_attribute_chars)
    length("error.type", rec.error.type, limits.max_name_chars)
    length("error.message", rec.error.message, limits.max_text_chars)

    for part in PARTS:
        # A part of another type counts when it carries a value (an empty one is what
        # the wire format cannot tell from an absent one).
        need(not _carries(getattr(rec, part)) or part == kind, "part:mismatch",
             f"{part} on {kind!r}")
    if kind == "model_call":
        m = rec.model_call
        need(m.model, "model_call.model:empty")
        for name in ("provider", "model", "model_version", "prompt_template_id",
                     "prompt_version"):
            length(f"model_call.{name}", getattr(m, name), limits.max_name_chars)
        need(len(m.parameters) <= limits.max_attributes, "parameters:count")
        for value in m.parameters.values():
            length("parameter value", value, limits.max_attribute_chars)
        length("model_call.input", m.input, limits.max_text_chars)
        length("model_call.output", m.output, limits.max_text_chars)
        if m.HasField("confidence"):
            need(math.isfinite(m.confidence) and 0.0 <= m.confidence <= 1.0, "confidence",
                 repr(m.confidence))
        need(len(m.logprobs) <= limits.max_logprobs, "logprobs:count")
        for lp in m.logprobs:
            need(math.isfinite(lp.logprob) and lp.logprob <= 0, "logprob", repr(lp.logprob))
        length("model_call.response_id", m.response_id, limits.max_id_chars)
    elif kind == "evaluation":
        e = rec.evaluation
        need(e.name, "evaluation.name:empty")
        length("evaluation.name", e.name, limits.max_name_chars)
        if e.HasField("score_value"):  # any finite number: evaluators' scales differ
            need(math.isfinite(e.score_value), "score_value", repr(e.score_value))
        length("evaluation.score_label", e.score_label, limits.max_name_chars)
        length("evaluation.explanation", e.explanation, limits.max_text_chars)
        length("evaluation.response_id", e.response_id, limits.max_id_chars)
    elif kind == "review":
        v = rec.review
        need(v.reviewer_id, "review.reviewer_id:empty")
        length("review.reviewer_id", v.reviewer_id, limits.max_id_chars)
        need(v.decision in DECISIONS, "review.decision", repr(v.decision))
        need(v.decision != "modify" or v.modified_output, "review.modify_without_output")
        for name in ("modified_output", "diff"):
            length(f"review.{name}", getattr(v, name), limits.max_text_chars)
        length("rationale.text", v.rationale.text, limits.max_text_chars)
        length("rationale.reason_code", v.rationale.reason_code, limits.max_name_chars)
        length("rationale.policy_ref", v.rationale.policy_ref, limits.max_name_chars)
    elif kind == "escalation":
        e = rec.escalation
        need(e.from_reviewer and e.to_reviewer, "escalation:reviewers")
        length("escalation.from_reviewer", e.from_reviewer, limits.max_id_chars)
        length("escalation.to_reviewer", e.to_reviewer, limits.max_id_chars)
        length("escalation.reason", e.reason, limits.max_text_chars)
    elif kind == "resolution":
        need(rec.resolution.outcome, "resolution.outcome:empty")
        length("resolution.outcome", rec.resolution.outcome, limits.max_name_chars)
        length("resolution.final_decision", rec.resolution.final_decision,
               limits.max_text_chars)
    elif kind == "data_access":
        a = rec.data_access
        need(a.actor and a.resource and a.purpose, "data_access:fields")
        for name in ("actor", "resource", "purpose"):
            length(f"data_access.{name}", getattr(a, name), limits.max_name_chars)
    return out


# ---------------------------------------------------------------- validator properties

def example_each(values):
    """@example for each of ``values``: edge cases checked on every run, not by luck."""
    def wrap(test):
        for value in reversed(values):
            test = example(value)(test)
        return test
    return wrap


def _rec(**fields) -> pb.AuditRecord:
    base = dict(record_id=str(uuid.uuid4()), event_type="task_created",
                start_time_unix_nano=NOW, service="s")
    base.update(fields)
    return pb.AuditRecord(**base)



_EDGE_CASES = [
    {"event_type": "model_call\n"}, {"event_type": "redaction\n"}, {"event_type": "review\n"},
    {"event_type": "Review"}, {"event_type": "x" * 65}, {"trace_id": "a" * 32 + "\n"},
    {"trace_id": "A" * 32}, {"trace_id": "a" * 32, "span_id": "b" * 16 + "\n"},
    {"parent_span_id": "c" * 16 + "\n"}, {"record_id": str(uuid.UUID(int=1)).upper()},
    {"record_id": "{" + str(uuid.UUID(int=1)) + "}"}, {"record_id": str(uuid.UUID(int=1)) + "\n"},
    {"record_id": uuid.UUID(int=1).hex}, {"record_id": "urn:uuid:" + str(uuid.UUID(int=1))},
    {"start_time_unix_nano": NOW + 300 * S}, {"start_time_unix_nano": NOW + 300 * S + 1},
    {"start_time_unix_nano": NOW - 30 * 86400 * S},
    {"start_time_unix_nano": NOW - 30 * 86400 * S - 1},
    {"end_time_unix_nano": NOW - 1}, {"end_time_unix_nano": MAX_U64}, {"service": ""},
    {"event_type": "review", "review": pb.Review(reviewer_id="r", decision="approve\n")},
    {"event_type": "review", "review": pb.Review(reviewer_id="r", decision="modify")},
    {"event_type": "model_call", "model_call": pb.ModelCall(model="m", confidence=math.nan)},
    {"event_type": "model_call", "model_call": pb.ModelCall(model="m", confidence=-0.0)},
    {"event_type": "model_call", "model_call": pb.ModelCall(model="m", confidence=math.inf)},
    {"event_type": "model_call", "model_call": pb.ModelCall(
        model="m", logprobs=[pb.TokenLogprob(token="t", logprob=-math.inf)])},
    {"event_type": "model_call", "model_call": pb.ModelCall(
        model="m", logprobs=[pb.TokenLogprob(token="t", logprob=5e-324)])},
    {"event_type": "task_created", "escalation": pb.Escalation(from_reviewer="a",
                                                                to_reviewer="b")},
    {"event_type": "evaluation", "evaluation": pb.Evaluation(name="r", score_value=math.nan)},
    {"event_type": "evaluation", "evaluation": pb.Evaluation(name="r", score_value=-math.inf)},
    {"event_type": "evaluation", "evaluation": pb.Evaluation(name="r", score_value=-1e308)},
    {"event_type": "evaluation", "evaluation": pb.Evaluation(score_value=0.5)},
    {"event_type": "model_call", "evaluation": pb.Evaluation(name="r"),
     "model_call": pb.ModelCall(model="m")},
]


@SETTINGS
@given(any_records())
@example_each([(_rec(**fields), Limits()) for fields in _EDGE_CASES])
def test_validate_never_raises_and_what_it_accepts_is_sound(case):
    rec, limits = case
    reason = validate(rec, NOW, limits)  # must not raise, whatever the record
    if reason is not None:
        assert isinstance(reason, str) and reason.strip(), repr(reason)
        return
    breaches = violations(rec, NOW, limits)
    assert not breaches, f"accepted a record that breaks {breaches}:\n{rec}"


@SETTINGS
@given(valid_records())
def test_a_valid_record_is_always_accepted(case):
    rec, limits = case
    assert violations(rec, NOW, limits) == []  # the strategy itself is sound
    assert validate(rec, NOW, limits) is None


@SETTINGS
@given(valid_records(), st.data())
def test_one_broken_rule_is_enough_to_refuse(case, data):
    """A valid record with one required thing broken is refused, with a reason."""
    rec, limits = case
    lo, hi = NOW - limits.max_age_s * S, NOW + limits.future_skew_s * S
    breakers = {
        "record_id upper": lambda r: setattr(r, "record_id", r.record_id.upper())
        if any(c in "abcdef" for c in r.record_id) else setattr(r, "record_id", "x"),
        "record_id empty": lambda r: setattr(r, "record_id", ""),
        "no service": lambda r: setattr(r, "service", ""),
        "no start": lambda r: setattr(r, "start_time_unix_nano", 0),
        "too old": lambda r: setattr(r, "start_time_unix_nano", lo - 1),
        "future": lambda r: setattr(r, "start_time_unix_nano", hi + 1),
        "end in the future": lambda r: setattr(r, "end_time_unix_nano", hi + 1),
        "end first": lambda r: setattr(r, "end_time_unix_nano", r.start_time_unix_nano - 1),
        "reserved type": lambda r: setattr(r, "event_type", "redaction"),
        "zero trace": lambda r: setattr(r, "trace_id", "0" * 32),
        "span alone": lambda r: (r.ClearField("trace_id"), setattr(r, "span_id", "1" * 16)),
        "foreign part": lambda r: next(setattr(getattr(r, p), FIRST_FIELD[p], "x")
                                       for p in PARTS if p != r.event_type),
        "too many attributes": lambda r: r.attributes.update(
            {str(i): "" for i in range(limits.max_attributes + 1)}),
        "long task id": lambda r: setattr(r, "task_id", "t" * (limits.max_id_chars + 1)),
        "long service": lambda r: setattr(r, "service", "s" * (limits.max_name_chars + 1)),
        "long error": lambda r: setattr(r.error, "message", "e" * (limits.max_text_chars + 1)),
    }
    name = data.draw(st.sampled_from(sorted(breakers)), label="breaker")
    breakers[name](rec)
    reason = validate(rec, NOW, limits)
    assert isinstance(reason, str) and reason, (name, rec)


# ---------------------------------------------------------------- query filters

_SINCE_LIKE = st.one_of(
    texts(30),
    st.sampled_from(["now", "NOW", " now ", "0s", "30m", "24h", "7d", "1w", "2026-11-28",
                     "2026-11-28T09:30:00Z", "2026-11-28T09:30:00+05:30", "0001-01-01",
                     "9999-12-31T23:59:59.999999", "2026-02-30", "Z", "T", "-1d", "1 d",
                     "1y", "٣d"]),
    st.from_regex(r"\d{1,12}\s?[smhdw]", fullmatch=True),
    st.datetimes(timezones=st.one_of(st.none(), st.timezones())).map(datetime.isoformat),
)
_INT_LIKE = st.one_of(texts(12), st.integers(-10, 10**13).map(str),
                      st.sampled_from(["", "all", "0", "1", str(MAX_LIMIT),
                                       str(MAX_LIMIT + 1), "-1", " 5 ", "1e3", "٣", "1_0"]))
_OPTIONAL = st.one_of(st.none(), texts(30))
_TYPES = st.lists(st.one_of(texts(20), st.sampled_from(KNOWN_TYPES),
                            st.from_regex(r"[a-z][a-z0-9_.]{0,10}", fullmatch=True)),
                  max_size=4)

filter_args = st.fixed_dictionaries({}, optional={
    "task": _OPTIONAL, "reviewer": _OPTIONAL, "request_id": _OPTIONAL,
    "trace_id": st.one_of(_OPTIONAL, hex_ids(32)), "record_id": _OPTIONAL,
    "types": _TYPES, "since": st.one_of(st.none(), _SINCE_LIKE),
    "until": st.one_of(st.none(), _SINCE_LIKE), "limit": _INT_LIKE, "offset": _INT_LIKE,
    "sort": st.one_of(st.sampled_from(SORTABLE), texts(15)),
    "order": st.one_of(st.sampled_from(["asc", "desc", "ASC", ""]), texts(6)),
})

_PLACEHOLDER = re.compile(r"\{(\w+):[^{}]+\}")
_FIXED = datetime(2026, 1, 1, tzinfo=timezone.utc)


def _shape_twin(f: Filters) -> Filters:
    """The same filters with every value replaced by a fixed one."""
    return Filters(task="T" if f.task is not None else None,
                   reviewer="R" if f.reviewer is not None else None,
                   request_id="Q" if f.request_id is not None else None,
                   trace_id="1" * 32 if f.trace_id is not None else None,
                   record_id="I" if f.record_id is not None else None,
                   types=("t",) if f.types else (),
                   since=_FIXED if f.since is not None else None,
                   until=_FIXED + timedelta(1) if f.until is not None else None,
                   limit=1 if f.limit is not None else None, offset=0, sort="seq", order="asc",
                   activity=f.activity)  # which reads to show: a choice, not a value


# Every clause where() can produce, with fixed values: a user value that occurs
# in the SQL is only acceptable when it is a piece of this fixed text.
_ALL_CLAUSES = _shape_twin(Filters(task="", reviewer="", request_id="", trace_id="",
                                   record_id="", types=("x",), since=_FIXED,
                                   until=_FIXED, activity="hide")).where()[0]

@SETTINGS
@given(filter_args)
@example_each([{"since": "1000000d"}, {"until": "99999999999d"}, {"since": "0001-01-01"},
               {"since": "9999-12-31T23:59:59.999999-23:59"}, {"since": "now", "until": "7d"},
               {"task": "{task:String}", "reviewer": "' OR 1=1 --"}, {"types": ["review\n"]},
               {"trace_id": "A" * 32}, {"trace_id": "a" * 32 + "\n"}, {"limit": "all"},
               {"limit": "0", "offset": ""}, {"sort": "seq; DROP TABLE x"}, {"order": "DESC"},
               {"types": ["", "review", ""]}, {"record_id": "start_time"}])
def test_filters_parse_refuses_clearly_or_binds_every_value(args):
    try:
        f = Filters.parse(**args)
    except FilterError as exc:
        assert isinstance(exc, ValueError)
        assert str(exc).strip()
        return

    sql, params = f.where()
    # The SQL text depends only on which filters are set, never on their values.
    assert sql == _shape_twin(f).where()[0]
    assert set(_PLACEHOLDER.findall(sql)) == set(params)
    assert not re.sub(_PLACEHOLDER, "", sql).count("{")  # nothing else looks like a parameter

    user_strings = [args.get(k) for k in ("task", "reviewer", "request_id", "trace_id",
                                          "record_id")] + list(args.get("types") or ())
    user_strings += [args.get(k) for k in ("since", "until", "limit", "offset")]
    for value in user_strings:
        if isinstance(value, str) and value:
            assert value not in sql or value in _ALL_CLAUSES, (value, sql)

    # ... and the values are all there, unchanged, as parameters.
    for key in ("task", "reviewer", "request_id", "record_id"):
        if args.get(key):
            assert params[key] == args[key]
        else:
            assert key not in params
    if args.get("trace_id"):
        assert params["trace_id"] == args["trace_id"].lower()
    wanted_types = [t for t in args.get("types") or () if t]
    assert params.get("types", []) == wanted_types
    for key in ("since", "until"):
        if args.get(key):
            assert isinstance(params[key], int)
        else:
            assert key not in params

    # The full SELECT: ORDER BY takes the sort key and direction from whitelists only;
    # limit and offset are bound too.
    select, sparams = query._select(f)
    # The engine settings a search adds are constants (query._settings), never values.
    select, _, settings = select.partition(" SETTINGS ")
    assert re.fullmatch(r"((use_skip_indexes|optimize_use_projections) = 0(, |$))*", settings)
    assert f.sort in SORTABLE and f.order in ("asc", "desc")
    direction = f.order.upper()
    assert f" ORDER BY {f.sort} {direction}, seq {direction}" in select
    if f.limit is not None:
        assert 1 <= sparams["limit"] <= MAX_LIMIT and sparams["offset"] >= 0
        assert select.endswith(" LIMIT {limit:UInt64} OFFSET {offset:UInt64}")
    else:
        assert "LIMIT" not in select
    assert set(_PLACEHOLDER.findall(select)) == set(sparams)
    f.describe()  # must not raise either


# ---------------------------------------------------------------- regressions found by these tests

@pytest.mark.parametrize("event_type", ["model_call\n", "redaction\n", "review\n"])
def test_event_type_with_trailing_newline_is_refused(event_type):
    assert validate(_rec(event_type=event_type), NOW, Limits()) is not None


@pytest.mark.parametrize("fields", [{"trace_id": "a" * 32 + "\n"},
                                    {"trace_id": "a" * 32, "span_id": "b" * 16 + "\n"},
                                    {"parent_span_id": "c" * 16 + "\n"}])
def test_ids_with_trailing_newline_are_refused(fields):
    assert validate(_rec(**fields), NOW, Limits()) is not None


@pytest.mark.parametrize("since", ["1000000d", "99999999999d", "999999999999999999999s"])
def test_huge_relative_time_is_a_filter_error(since):
    with pytest.raises(FilterError):
        Filters.parse(since=since)
