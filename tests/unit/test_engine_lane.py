"""The engine lane of ingest (ledger/engine_lane.py, store/ingest_sql.py) against the
reference lane (validate, split_record and the Sealer, record by record).

* The engine's suspects include every record ``validate`` or the API key's scope
  refuses, on arbitrary records under arbitrary limits (hypothesis): the engine may
  ask the reference about a good record, never let a bad one through unasked.
* The same groups of requests, through both lanes into two embedded stores, give the
  same answers (accepted, duplicates, each rejection and its reason) and the same
  stored records, payloads included, and both stores verify.

Both use the real embedded engine in this process; each module closes its stores.
"""

from __future__ import annotations

import dataclasses
import os
import random
import uuid

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_properties import NOW, WILD, _Gen, limits_any

from aitrail.v1 import audit_pb2 as pb
from aitrail.verify.envelope import STORED_FIELD_NAMES
from aitrail_collector.audit.verify import verify_store
from aitrail_collector.config import Limits
from aitrail_collector.ingest.validate import validate
from aitrail_collector.ledger import engine_lane
from aitrail_collector.ledger.group_commit import Ledger, Sender
from aitrail_collector.store.client import Store
from aitrail_collector.store.ingest_sql import Call, EngineIngest
from aitrail_collector.store.schema import DB, ENVELOPE_SELECT, split_row

KEYED = Sender("apikey", "key-1", service="svc", task_prefixes=("T-", "ops/"))


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    s = Store(f"chdb://{tmp_path_factory.mktemp('engine-lane')}/data")
    s.ensure_schema()
    yield s
    s.close()


def _fresh(store: Store) -> None:
    for table in ("envelopes", "payloads", "checkpoints"):
        store.query(f"TRUNCATE TABLE {DB}.{table}")


# ------------------------------------------------------------------ the suspects

@st.composite
def batches(draw):
    limits = draw(limits_any())
    records = []
    for _ in range(draw(st.integers(1, 25))):
        wild = frozenset(draw(st.sets(st.sampled_from(WILD), max_size=3)))
        records.append(_Gen(draw, limits, wild).record())
    senders = draw(st.lists(st.sampled_from([Sender(), KEYED, Sender("mtls", "CN=x")]),
                            min_size=1, max_size=3))
    return limits, records, senders


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                 HealthCheck.function_scoped_fixture])
@given(case=batches())
def test_every_record_the_reference_refuses_is_a_suspect(store, tmp_path, case):
    limits, records, senders = case
    lane = EngineIngest(store, "main", limits, str(tmp_path))
    # The records dealt out to the calls round robin, one file per call.
    calls = [records[k::len(senders)] for k in range(len(senders))]
    try:
        for k, recs in enumerate(calls, start=1):
            raw = pb.ExportRequest(records=recs).SerializeToString()
            with open(lane.records_file(k), "wb") as fh:
                fh.write(engine_lane._varint(len(raw)) + raw)
        lane.stage([Call(len(r), s.kind, s.id, s.service or "", s.task_prefixes, 10**9)
                    for r, s in zip(calls, senders)], NOW, NOW)
        flagged = {n for n, suspect, _ in lane.flagged() if suspect}
    finally:
        lane.clear()
    for k, (recs, sender) in enumerate(zip(calls, senders), start=1):
        for i, rec in enumerate(recs):
            reason = validate(rec, NOW, limits) or sender.refuses(rec)
            if reason is not None:
                assert (k << 32 | i) in flagged, (reason, rec)


def test_ordinary_records_are_not_suspects(store, tmp_path):
    """The engine asks the reference about the odd record, not the common one."""
    lane = EngineIngest(store, "main", Limits(), str(tmp_path))
    recs = [_ordinary(random.Random(i), i) for i in range(300)]
    raw = pb.ExportRequest(records=recs).SerializeToString()
    try:
        with open(lane.records_file(1), "wb") as fh:
            fh.write(engine_lane._varint(len(raw)) + raw)
        lane.stage([Call(len(recs), "unauthenticated", "")], NOW, NOW)
        flagged = lane.flagged()
    finally:
        lane.clear()
    assert [(n & 0xFFFFFFFF) for n, suspect, _ in flagged if suspect] == []
    with_logprobs = {i for i, r in enumerate(recs) if r.model_call.logprobs}
    assert {(n & 0xFFFFFFFF) for n, _, lp in flagged if lp} == with_logprobs


def _ordinary(rng: random.Random, i: int) -> pb.AuditRecord:
    kind = rng.choice(["model_call", "review", "escalation", "resolution", "data_access",
                       "task_created", "custom.step", "evaluation"])
    rec = pb.AuditRecord(record_id=str(uuid.UUID(int=rng.getrandbits(128))), event_type=kind, task_id=f"T-{i % 40:04d}",
                         request_id=f"req-{i}", trace_id=f"{rng.getrandbits(128) | 1:032x}",
                         span_id=f"{rng.getrandbits(64) | 1:016x}", start_time_unix_nano=NOW - i * 10**9,
                         end_time_unix_nano=NOW - i * 10**9 + 5 * 10**8, service="svc",
                         service_version="1.2", environment="prod", host="h1",
                         sdk_version="0.3.0")
    rec.attributes["region"] = rng.choice(["eu", "us", "é漢"])
    if kind == "model_call":
        m = rec.model_call
        m.provider, m.model, m.prompt_version = "openai", "gpt-4o", "v3"
        m.parameters["temperature"] = "0.2"
        m.input, m.output = "question " * rng.randint(0, 30), "answer é 🙂 " * rng.randint(1, 9)
        if rng.random() < 0.5:
            m.confidence = rng.random()
        if rng.random() < 0.2:
            for _ in range(rng.randint(1, 4)):
                m.logprobs.add(token=rng.choice(["a", "\"q\"", "\\", "é"]),
                               logprob=-rng.random() * 3)
        m.usage.input_tokens, m.usage.output_tokens = rng.randrange(5000), rng.randrange(900)
        m.streamed = rng.random() < 0.3
        if rng.random() < 0.5:
            m.response_id = f"chatcmpl-{i}"
    elif kind == "evaluation":
        e = rec.evaluation
        e.name, e.score_label = rng.choice(["relevance", "toxicity", "é 漢"]), "pass"
        if rng.random() < 0.7:
            e.score_value = rng.choice([0.0, -0.0, 0.82, -3.5, 1e300, rng.random() * 100])
        if rng.random() < 0.6:
            e.explanation = "on topic é 🙂 " * rng.randint(1, 5)
        e.response_id = f"chatcmpl-{i}" if rng.random() < 0.8 else ""
    elif kind == "review":
        v = rec.review
        v.reviewer_id, v.decision = f"rev-{i % 7}", rng.choice(["approve", "reject", "modify"])
        v.modified_output = "fixed output" if v.decision == "modify" else ""
        v.time_spent_ms = rng.randrange(10**6)
        v.rationale.reason_code, v.rationale.text = "POLICY_3", "because\nof this"
    elif kind == "escalation":
        rec.escalation.from_reviewer, rec.escalation.to_reviewer = "rev-1", "lead-2"
        rec.escalation.reason = "unsure"
    elif kind == "resolution":
        rec.resolution.outcome, rec.resolution.final_decision = "closed", "refund"
    elif kind == "data_access":
        a = rec.data_access
        a.actor, a.resource, a.purpose = "analyst-1", "task:T-1", "audit"
    if rng.random() < 0.1:
        rec.error.type, rec.error.message = "TimeoutError", "timed out after 30 s"
    return rec


# ------------------------------------------------------------------ both lanes

def _stored(store: Store) -> tuple[list[dict], dict]:
    """Every stored envelope (by seq) without what differs by design between two
    stores (the time received, the salted commitments, the hashes over them), and
    every payload by (record_id, name)."""
    rows = []
    for row in store.query(f"SELECT {ENVELOPE_SELECT} FROM {DB}.envelopes ORDER BY seq"
                           ).result_rows:
        seq, env, *_ = split_row(row)
        env["seq"] = seq
        env.pop("received_time_ns", None)
        env.pop("received_time", None)
        env["commitments"] = sorted(env["commitments"])
        rows.append(env)
    payloads = {(r, n): c for r, n, c in store.query(
        f"SELECT record_id, name, content FROM {DB}.payloads").result_rows}
    return rows, payloads


def _groups(rng: random.Random, limits: Limits) -> list[list[tuple[list, Sender]]]:
    """Groups of calls: ordinary records, some made bad, repeats within a call, across
    calls and of records already stored, and calls under a scoped API key."""
    seen: list[pb.AuditRecord] = []
    groups = []
    for g in range(6):
        group = []
        for c in range(rng.randint(1, 4)):
            recs = []
            for i in range(rng.randint(0, 40)):
                roll = rng.random()
                if seen and roll < 0.1:
                    rec = rng.choice(seen)            # a retry
                else:
                    rec = _ordinary(rng, g * 1000 + c * 100 + i)
                    if roll > 0.8:
                        _spoil(rng, rec, limits)
                    if rng.random() < 0.3:
                        rec.service, rec.task_id = "svc", rng.choice(["T-1", "ops/x", "X-9"])
                recs.append(rec)
                seen.append(rec)
            group.append((recs, KEYED if rng.random() < 0.3 else Sender("mtls", f"CN=c{c}")))
        groups.append(group)
    return groups


def _spoil(rng: random.Random, rec: pb.AuditRecord, limits: Limits) -> None:
    how = rng.randrange(15)
    if how == 0:
        rec.record_id = rec.record_id.upper()
    elif how == 1:
        rec.event_type = "redaction"
    elif how == 2:
        rec.task_id = "t" * (limits.max_id_chars + 1)
    elif how == 3:
        rec.trace_id = "0" * 32
    elif how == 4:
        rec.start_time_unix_nano = NOW + (limits.future_skew_s + 5) * 10**9
    elif how == 5:
        rec.service = " Aitrail-Collector"
    elif how == 6:
        rec.model_call.confidence = float("nan")
    elif how == 7:
        rec.review.decision = "maybe"
    elif how == 8:
        rec.attributes.update({f"k{i}": "v" for i in range(limits.max_attributes + 1)})
    elif how == 9:
        rec.error.message = "e" * (limits.max_text_chars + 1)
    elif how == 10:
        rec.escalation.SetInParent()   # present but empty: carries nothing, not refused
    elif how == 11:
        rec.evaluation.score_value = rng.choice([float("nan"), float("inf"), -float("inf")])
    elif how == 12:
        rec.evaluation.name = ""       # an evaluation needs one; on another type, nothing
    elif how == 13:
        rec.model_call.response_id = "r" * (limits.max_id_chars + 1)
    else:
        rec.span_id, rec.trace_id = "1" * 16, ""


def test_both_lanes_answer_and_store_the_same(store, tmp_path):
    limits = dataclasses.replace(Limits(), max_id_chars=40, max_attributes=4,
                                 max_text_chars=600)
    results = {}
    stored = {}
    for engine in (True, False):
        _fresh(store)
        ledger = Ledger(store, "main", limits, engine=engine, engine_min_records=0)
        assert ledger.uses_engine == engine
        ledger.clock = lambda: NOW
        try:
            answers = []
            for group in _groups(random.Random(7), limits):
                calls = [(pb.ExportRequest(records=r).SerializeToString(),
                          pb.ExportRequest(records=r), s) for r, s in group]
                answers.append([(a.accepted, a.duplicates, a.rejected, a.head_seq)
                                for a in ledger.append_group(calls)])
        finally:
            ledger.close()
        results[engine] = answers
        stored[engine] = _stored(store)
        report = verify_store(store)
        assert report["ok"], report["findings"][:3]
    assert results[True] == results[False]
    flat = [a for group in results[True] for a in group]
    assert sum(a[0] for a in flat) > 100 and sum(a[1] for a in flat) > 5
    assert sum(len(a[2]) for a in flat) > 10
    assert stored[True] == stored[False]
    assert set(STORED_FIELD_NAMES) - {"received_time"} <= set(stored[True][0][0])
    # Evaluations were among them, with and without a score, and their explanations.
    evaluations = [e for e in stored[True][0] if e["event_type"] == "evaluation"]
    assert len(evaluations) > 10 and all(e["evaluation_name"] for e in evaluations)
    assert {e["score_value"] is None for e in evaluations} == {True, False}
    assert any(name == "explanation" for _, name in stored[True][1])
    assert any(e["response_id"] for e in stored[True][0] if e["event_type"] == "model_call")


def test_a_killed_collectors_group_files_are_removed(store, tmp_path):
    """A SIGKILLed collector leaves its tmpfs directory (records' content) behind; the
    next collector on the machine removes it, and leaves the living ones alone."""
    import subprocess
    import sys
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    lane = engine_lane.EngineLane(store, "main", Limits())
    base = os.path.dirname(lane.work_dir)
    stale = os.path.join(base, f"aitrail-ingest-{dead.pid}-x")
    living = os.path.join(base, f"aitrail-ingest-{os.getpid()}-y")
    os.makedirs(os.path.join(stale, "requests"))
    os.makedirs(living)
    try:
        other = engine_lane.EngineLane(store, "main", Limits())
        other.close()
        assert not os.path.exists(stale)
        assert os.path.isdir(living) and os.path.isdir(lane.work_dir)
    finally:
        lane.close()
        os.rmdir(living)
    assert not os.path.exists(lane.work_dir)


def test_a_swept_work_directory_is_made_again(store):
    """tmpfs cleaners may remove the lane's directory under a running collector: the next
    group makes it again instead of failing every call from then on."""
    import shutil
    _fresh(store)
    ledger = Ledger(store, "main", engine_min_records=0)
    ledger.clock = lambda: NOW
    rec = _ordinary(random.Random(3), 0)
    try:
        lane = ledger.engine
        assert lane is not None
        shutil.rmtree(lane.work_dir)
        raw = pb.ExportRequest(records=[rec]).SerializeToString()
        [result] = ledger.append_group([(raw, pb.ExportRequest.FromString(raw), Sender())])
        assert (result.accepted, result.rejected) == (1, [])
    finally:
        ledger.close()


def test_a_request_the_engine_cannot_read_is_sealed_by_the_reference(store):
    """upb takes a field sent with the wrong wire type as an unknown field (the record
    stays valid); the engine's Protobuf reader refuses the whole file. Its group, and
    the calls that happened to share it, must not fail (their clients would retry
    forever): the reference lane seals that group."""
    _fresh(store)
    ledger = Ledger(store, "main", engine_min_records=0)
    ledger.clock = lambda: NOW
    rng = random.Random(11)
    odd, plain = _ordinary(rng, 1), _ordinary(rng, 2)
    odd_bytes = odd.SerializeToString() + bytes([3 << 3 | 0, 5])  # task_id as a varint
    raw_odd = b"\x0a" + engine_lane._varint(len(odd_bytes)) + odd_bytes
    raw_plain = pb.ExportRequest(records=[plain]).SerializeToString()
    try:
        results = ledger.append_group([
            (raw_plain, pb.ExportRequest.FromString(raw_plain), Sender()),
            (raw_odd, pb.ExportRequest.FromString(raw_odd), Sender())])
    finally:
        ledger.close()
    assert [(r.accepted, r.duplicates, r.rejected) for r in results] == [(1, 0, []), (1, 0, [])]
    rows = store.query(f"SELECT record_id, task_id FROM {DB}.envelopes ORDER BY seq").result_rows
    assert rows == [(plain.record_id, plain.task_id), (odd.record_id, odd.task_id)]
    assert verify_store(store)["ok"]


def test_small_groups_take_the_reference_lane_large_ones_the_engine(store):
    """The engine's cost per group is fixed and large: a group under the threshold is
    sealed record by record, a group at it by the engine; both give the same answers."""
    _fresh(store)
    ledger = Ledger(store, "main", engine_min_records=30)
    ledger.clock = lambda: NOW
    rng = random.Random(5)
    used = []
    real = ledger._commit_engine
    ledger._commit_engine = lambda group, sealing: (used.append(len(group)), real(group, sealing))[1]
    try:
        small = [_ordinary(rng, i) for i in range(10)]
        large = [_ordinary(rng, 100 + i) for i in range(30)]
        answers = []
        for recs in (small, large):
            raw = pb.ExportRequest(records=recs).SerializeToString()
            [r] = ledger.append_group([(raw, pb.ExportRequest.FromString(raw), Sender())])
            answers.append((r.accepted, r.rejected))
    finally:
        ledger.close()
    assert used == [1]  # the large group only
    assert answers == [(10, []), (30, [])]
    assert verify_store(store)["ok"]


def test_a_foreign_part_with_only_a_nested_message_is_judged_without_error():
    """validate's 'carries a value' walk over a foreign part: a nested message (usage,
    rationale) is looked into, not taken for a value, and never raises."""
    rec = _ordinary(random.Random(2), 0)
    rec.event_type = "task_created"
    rec.ClearField("model_call")
    rec.review.rationale.SetInParent()            # present, empty: carries nothing
    assert validate(rec, NOW, Limits()) is None
    rec.model_call.usage.input_tokens = 3         # a value, two levels down
    assert validate(rec, NOW, Limits()) == "model_call fields are set on a 'task_created' record"


@pytest.mark.parametrize("version", [1, 2])
def test_an_older_envelope_version_refuses_what_only_v3_can_seal(store, version):
    """--envelope-version 1 or 2 has no column for an evaluation or a model call's
    response id: such a record is refused with the reason, never sealed without them."""
    _fresh(store)
    ledger = Ledger(store, "main", Limits(), envelope_version=version)
    assert not ledger.uses_engine  # older versions are sealed by the reference lane
    ledger.clock = lambda: NOW
    def record(kind: str) -> pb.AuditRecord:
        return pb.AuditRecord(record_id=str(uuid.uuid4()), event_type=kind, task_id="T-1",
                              start_time_unix_nano=NOW, service="svc")
    plain, with_id, evaluation = record("model_call"), record("model_call"), record("evaluation")
    plain.model_call.model = "m"
    with_id.model_call.model, with_id.model_call.response_id = "m", "chatcmpl-1"
    evaluation.evaluation.name = "relevance"
    try:
        result = ledger.append([plain, with_id, evaluation], Sender())
    finally:
        ledger.close()
    assert result.accepted == 1
    assert [(i, reason) for i, _, reason in result.rejected] == [
        (1, "model_call.response_id needs envelope v3 (this collector seals an older "
            "version)"),
        (2, "evaluation records need envelope v3 (this collector seals an older version)")]
    assert verify_store(store)["ok"]
    rows = _stored(store)[0]
    assert [r["envelope_version"] for r in rows] == [version]
