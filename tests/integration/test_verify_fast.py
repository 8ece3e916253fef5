"""The engine path of verification (store/verify_sql.py) and the reference path give the
same report, on a real store from a collector (every event type, envelope v1, v2 and v3
rows) left untouched and after each kind of tampering the other suites make."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from support import PY, CollectorProc, cli, engine, make_record, stub

from aitrail.v1 import audit_pb2 as pb

E = "aitrail.envelopes"


def _records(tag: str) -> list:
    call = make_record("model_call", task_id=f"T-{tag}-1", **{
        "model_call.model": "m-é", "model_call.provider": "p", "model_call.confidence": 0.25,
        "model_call.input": "prompt", "model_call.output": "out", "error.type": "Timeout",
        "error.message": f"{tag} error"})
    call.model_call.parameters.update({"temperature": "0.2", "b": "", "é": "日本", "A": "1"})
    call.model_call.usage.input_tokens = 2**32 - 1
    call.attributes.update({"k": "v", "": "empty key"})
    review = make_record("review", task_id=f"T-{tag}-1", **{
        "review.reviewer_id": "rev", "review.decision": "modify", "review.time_spent_ms": 1200,
        "review.modified_output": "better", "review.rationale.reason_code": "R1"})
    esc = make_record("escalation", task_id=f"T-{tag}-2", **{
        "escalation.from_reviewer": "a", "escalation.to_reviewer": "b",
        "escalation.reason": f"{tag} why"})
    res = make_record("resolution", task_id=f"T-{tag}-2", **{
        "resolution.outcome": "refunded", "resolution.final_decision": f"{tag} final"})
    created = make_record("task_created", task_id=f"T-{tag}-3")
    access = make_record("data_access", task_id=f"T-{tag}-3", **{
        "data_access.actor": "auditor", "data_access.resource": "r", "data_access.purpose": "p"})
    plain = make_record("model_call", task_id=f"T-{tag}-4", **{"model_call.model": "m"})
    if tag != "v3":  # older versions have no column for what follows
        return [call, review, esc, res, created, access, plain]
    call.model_call.response_id = "chatcmpl-v3"
    evaluation = make_record("evaluation", task_id=f"T-{tag}-1", **{
        "evaluation.name": "relevance", "evaluation.score_value": -12.5,
        "evaluation.score_label": "off", "evaluation.explanation": f"{tag} why",
        "evaluation.response_id": "chatcmpl-v3"})
    label_only = make_record("evaluation", task_id=f"T-{tag}-4", **{
        "evaluation.name": "toxicity", "evaluation.score_label": "none"})
    return [call, review, esc, res, created, access, plain, evaluation, label_only]


@pytest.fixture(scope="module")
def base_store(tmp_path_factory):
    """A stopped store: v1 rows, then v2 rows, then an erasure (a redaction record), then
    v3 rows (evaluations among them)."""
    data = tmp_path_factory.mktemp("fast") / "store"
    for version in (1, 2, 3):
        proc = CollectorProc(data, "--envelope-version", str(version)).start()
        try:
            for rec in _records(f"v{version}"):  # one batch each: seq follows the list
                assert stub(proc.grpc).Export(pb.ExportRequest(records=[rec]),
                                              timeout=60).accepted == 1
            if version == 2:
                out = cli("erase", "--task", "T-v2-2", "--reason", "request REQ-1",
                          "--url", proc.url)
                assert out.returncode == 0, out.stderr
        finally:
            proc.stop()
    versions = engine(data, f"SELECT envelope_version, count() FROM {E} GROUP BY 1 ORDER BY 1")[0]
    assert [v for v, _ in versions] == [1, 2, 3], versions
    return data


def _verify(data_dir: Path, reference: bool) -> dict:
    env = dict(os.environ)
    env.pop("AITRAIL_VERIFY_REFERENCE", None)
    if reference:
        env["AITRAIL_VERIFY_REFERENCE"] = "1"
    out = subprocess.run([PY, "-m", "aitrail.cli", "verify", "--data-dir", str(data_dir),
                          "--format", "json"], capture_output=True, text=True, timeout=120,
                         env=env)
    assert out.returncode in (0, 1), out.stderr
    report = json.loads(out.stdout)
    assert report["ok"] == (out.returncode == 0)
    assert report.pop("path") == ("reference" if reference else "engine")
    report.pop("seconds")
    return report


def _seq_of(data_dir: Path, where: str) -> int:
    return int(engine(data_dir, f"SELECT min(seq) FROM {E} WHERE {where}")[0][0][0])


def _edit_fields(d: Path) -> None:
    v1 = _seq_of(d, "envelope_version = 1 AND event_type = 'resolution'")
    v2 = _seq_of(d, "envelope_version = 2 AND event_type = 'model_call'")
    engine(d, f"ALTER TABLE {E} UPDATE final_decision = 'approve all' WHERE seq = {v1}"
              " SETTINGS mutations_sync = 1",
           f"ALTER TABLE {E} UPDATE parameters = mapUpdate(parameters, map('z', '9'))"
           f" WHERE seq = {v2} SETTINGS mutations_sync = 1")


def _delete_row(d: Path) -> None:
    engine(d, f"ALTER TABLE {E} DELETE WHERE seq = 5 SETTINGS mutations_sync = 1")


def _insert_row(d: Path) -> None:
    engine(d, f"INSERT INTO {E} SELECT * REPLACE ('01900000-0000-7000-8000-000000000001' AS"
              f" record_id, 'forged' AS resolution_outcome) FROM (SELECT * FROM {E} WHERE seq = 9)")


def _swap_rows(d: Path) -> None:
    ids = dict(engine(d, f"SELECT seq, record_id FROM {E} WHERE seq IN (3, 4)")[0])
    engine(d, f"INSERT INTO {E} SELECT * REPLACE (if(seq = 3, 4, 3) AS seq)"
              f" FROM (SELECT * FROM {E} WHERE seq IN (3, 4))",
           f"ALTER TABLE {E} DELETE WHERE (seq = 3 AND record_id = '{ids[3]}') OR "
           f"(seq = 4 AND record_id = '{ids[4]}') SETTINGS mutations_sync = 1")


def _not_encodable(d: Path) -> None:
    engine(d, f"ALTER TABLE {E} UPDATE confidence = nan WHERE seq = 1 SETTINGS mutations_sync = 2",
           f"ALTER TABLE {E} UPDATE confidence = -inf WHERE seq = 10 SETTINGS mutations_sync = 2")


def _other_version_column(d: Path) -> None:
    v1 = _seq_of(d, "envelope_version = 1")
    v2 = _seq_of(d, "envelope_version = 2 AND event_type = 'escalation'")
    engine(d, f"ALTER TABLE {E} UPDATE principal_id = 'x' WHERE seq = {v1}"
              " SETTINGS mutations_sync = 1",
           f"ALTER TABLE {E} UPDATE escalation_reason = 'x' WHERE seq = {v2}"
              " SETTINGS mutations_sync = 1")


def _edit_evaluation(d: Path) -> None:
    """A v3 evaluation's score and another's name edited; a v3 column written into a v2
    row (which does not seal it)."""
    scored = _seq_of(d, "envelope_version = 3 AND event_type = 'evaluation'")
    named = _seq_of(d, "envelope_version = 3 AND event_type = 'evaluation' AND"
                       " isNull(score_value)")
    v2 = _seq_of(d, "envelope_version = 2 AND event_type = 'model_call'")
    engine(d, f"ALTER TABLE {E} UPDATE score_value = 12.5 WHERE seq = {scored}"
              " SETTINGS mutations_sync = 1",
           f"ALTER TABLE {E} UPDATE evaluation_name = 'harmless' WHERE seq = {named}"
              " SETTINGS mutations_sync = 1",
           f"ALTER TABLE {E} UPDATE response_id = 'x' WHERE seq = {v2}"
              " SETTINGS mutations_sync = 1")


def _rewrite_history(d: Path) -> None:
    """Edit a v2 record and recompute its leaf and every later chain hash (v2 and v3
    rows): the chain links up, and only the signed checkpoints give it away."""
    from aitrail.verify.chain import Sealer
    from aitrail.verify.envelope import STORED_FIELDS, VERSION_FIELDS
    first = _seq_of(d, "envelope_version = 2")
    sel = ", ".join(f"toUnixTimestamp64Nano({f.name})" if f.kind == "time" else f.name
                    for f in STORED_FIELDS)
    (head,), = engine(d, f"SELECT hex(chain_hash) FROM {E} WHERE seq = {first - 1}")[0]
    rows = engine(d, f"SELECT seq, envelope_version, {sel} FROM {E} WHERE seq >= {first}"
                     " ORDER BY seq")[0]
    sealer = Sealer("main", first - 1, bytes.fromhex(head))
    updates = []
    for row in rows:
        stored = dict(zip([f.name for f in STORED_FIELDS], row[2:]))
        env = {f.name: stored[f.name] for f in VERSION_FIELDS[row[1]]}
        env["envelope_version"] = row[1]
        if row[0] == first + 3:
            env["host"] = "rewritten"
        link = sealer.seal(env)
        updates.append(f"ALTER TABLE {E} UPDATE host = '{env['host']}',"
                       f" prev_hash = unhex('{link.prev_hash.hex()}'),"
                       f" leaf_hash = unhex('{link.leaf_hash.hex()}'),"
                       f" chain_hash = unhex('{link.chain_hash.hex()}')"
                       f" WHERE seq = {row[0]} SETTINGS mutations_sync = 1")
    engine(d, *updates)


def _map_key_twice(d: Path) -> None:
    """A forged final_decision written in before the sealed one (a dict read of the map
    keeps the sealed entry, SQL's commitments['final_decision'] the forged)."""
    v2 = _seq_of(d, "envelope_version = 2 AND mapContains(commitments, 'final_decision')")
    engine(d, f"ALTER TABLE {E} UPDATE commitments = mapConcat(map('final_decision',"
              f" repeat('f', 64)), commitments) WHERE seq = {v2} SETTINGS mutations_sync = 1")


TAMPERINGS = {"untouched": None, "edited": _edit_fields, "deleted": _delete_row,
              "inserted": _insert_row, "swapped": _swap_rows, "nan": _not_encodable,
              "other_version": _other_version_column, "rewritten": _rewrite_history,
              "evaluation": _edit_evaluation, "map_key_twice": _map_key_twice}


@pytest.mark.parametrize("name", list(TAMPERINGS))
def test_engine_and_reference_give_the_same_report(base_store, tmp_path, name):
    data = tmp_path / "store"
    shutil.copytree(base_store, data, symlinks=True)  # the engine links relatively
    tamper = TAMPERINGS[name]
    if tamper is not None:
        tamper(data)
    fast, reference = _verify(data, reference=False), _verify(data, reference=True)
    assert fast == reference
    assert fast["ok"] == (tamper is None), fast["findings"]
    assert fast["erased"] and fast["records"] >= 14
    if name == "rewritten":
        assert {f["kind"] for f in fast["findings"]} == {"checkpoint_inconsistent"}
    elif tamper is not None:
        assert any(not f["kind"].startswith("checkpoint_") for f in fast["findings"])
