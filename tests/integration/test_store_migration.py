"""A store made by the previous version's DDL (tests/testdata/store-ddl-issue11.sql:
LZ4 everywhere, ORDER BY (chain_id, event_type, start_time, seq), a stored
payloads.commitment column, no projections, and no envelope v3 columns: its rows are
v2) is opened by this version: the schema is migrated with metadata changes only, and
the store still verifies and answers queries, old rows and new (v3) rows alike."""

from __future__ import annotations

import json
from pathlib import Path

from support import CollectorProc, cli, engine, make_record, stub

OLD_DDL = (Path(__file__).resolve().parents[1] / "testdata" / "store-ddl-issue11.sql"
           ).read_text(encoding="utf-8")


def _ticket(task: str, who: str) -> list:
    return [make_record("model_call", task_id=task, **{"model_call.input": f"ticket {task}",
                                                       "model_call.output": "billing"}),
            make_record("review", task_id=task, **{
                "review.reviewer_id": who, "review.decision": "modify",
                "review.modified_output": "refund", "review.rationale.text": f"why {task}"}),
            make_record("resolution", task_id=task)]


def _send(proc: CollectorProc, records: list) -> None:
    from aitrail.v1 import audit_pb2 as pb
    reply = stub(proc.grpc).Export(pb.ExportRequest(records=records), timeout=30)
    assert reply.accepted == len(records) and not reply.rejected, reply


# The columns envelope v3 added (aitrail.verify.envelope.V3_COLUMNS): not in the old DDL.
V3_COLUMNS = ("response_id", "evaluation_name", "score_value", "score_label")


def _as_old_store(data_dir: Path) -> None:
    """Rebuild the tables of a (stopped) store with the previous version's DDL, rows
    unchanged (sealed as v2: the old DDL has no v3 column); the old payload table
    stores each row's commitment (the sealed one)."""
    text = "\n".join(line for line in OLD_DDL.splitlines() if not line.startswith("--"))
    old = [s.strip() for s in text.split(";") if s.strip()]
    engine(data_dir,
           "RENAME TABLE aitrail.envelopes TO aitrail.env_new, aitrail.payloads TO aitrail.pay_new",
           *old,
           "INSERT INTO aitrail.envelopes SELECT * EXCEPT (" + ", ".join(V3_COLUMNS) + ")"
           " FROM aitrail.env_new",
           "INSERT INTO aitrail.payloads (chain_id, record_id, name, start_time, salt, content,"
           " commitment) SELECT p.chain_id, p.record_id, p.name, p.start_time, p.salt, p.content,"
           " e.commitments[p.name] FROM aitrail.pay_new AS p JOIN aitrail.env_new AS e"
           " ON e.record_id = p.record_id",
           "DROP TABLE aitrail.env_new", "DROP TABLE aitrail.pay_new")
    ddl = engine(data_dir, "SHOW CREATE TABLE aitrail.payloads",
                 "SHOW CREATE TABLE aitrail.envelopes")
    assert "EPHEMERAL" not in ddl[0][0][0] and "PROJECTION" not in ddl[1][0][0]
    assert "compress_block_size" not in ddl[1][0][0]
    assert "ORDER BY (chain_id, event_type, start_time, seq)" in ddl[1][0][0]
    assert not any(f"`{c}`" in ddl[1][0][0] for c in V3_COLUMNS)


def _verify(data_dir: Path) -> dict:
    out = cli("verify", "--data-dir", str(data_dir), "--format", "json")
    assert out.returncode == 0, out.stdout + out.stderr
    return json.loads(out.stdout)


def _timeline(url: str, task: str) -> list[dict]:
    out = cli("timeline", task, "--url", url, "--format", "json")
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_a_store_made_by_the_previous_ddl_migrates_verifies_and_answers(tmp_path):
    data_dir = tmp_path / "data"
    proc = CollectorProc(data_dir, "--envelope-version", "2").start()  # as the old one did
    try:
        _send(proc, _ticket("T-old", "rev-ann"))
    finally:
        proc.stop()
    _as_old_store(data_dir)
    assert not _verify(data_dir)["findings"]  # the old store verifies as it is

    proc = CollectorProc(data_dir).start()  # ensure_schema migrates
    try:
        ticket = _ticket("T-new", "rev-ann")
        evaluation = make_record("evaluation", task_id="T-new", **{
            "evaluation.name": "relevance", "evaluation.score_value": 0.5,
            "evaluation.score_label": "partly", "evaluation.explanation": "half of it",
            "evaluation.response_id": "chatcmpl-1"})
        _send(proc, ticket + [evaluation])
        for task in ("T-old", "T-new"):
            events = _timeline(proc.url, task)
            assert [e["event_type"] for e in events][:3] == ["model_call", "review",
                                                             "resolution"]
            assert events[0]["input"] == f"ticket {task}"  # payloads read and checked
            assert events[1]["rationale"] == f"why {task}"
            assert {e["envelope_version"] for e in events} == {2 if task == "T-old" else 3}
            # The old rows read the v3 columns at their zero value.
            assert all(e["response_id"] == "" and e["score_value"] is None
                       for e in events if e["event_type"] != "evaluation")
        sealed = _timeline(proc.url, "T-new")[3]
        assert (sealed["evaluation_name"], sealed["score_value"], sealed["score_label"],
                sealed["explanation"], sealed["response_id"]) == (
            "relevance", 0.5, "partly", "half of it", "chatcmpl-1")
        found = json.loads(cli("query", "--url", proc.url, "--reviewer", "rev-ann",
                               "--format", "json").stdout)["records"]
        assert sorted(r["task_id"] for r in found) == ["T-new", "T-old"]
    finally:
        proc.stop()
    report = _verify(data_dir)
    assert not report["findings"], report["findings"]

    ddl = engine(data_dir, "SHOW CREATE TABLE aitrail.payloads",
                 "SHOW CREATE TABLE aitrail.envelopes",
                 "SELECT count() FROM system.mutations WHERE database = 'aitrail'")
    assert "`commitment` String EPHEMERAL" in ddl[0][0][0]
    assert "PROJECTION p_record" in ddl[1][0][0] and "CODEC(ZSTD(3))" in ddl[1][0][0]
    # New parts are written in the small compressed blocks the point reads want.
    assert "min_compress_block_size = 4096, max_compress_block_size = 16384" in ddl[1][0][0]
    # The sorting key cannot change; the migration rewrote no part (no mutation).
    assert "ORDER BY (chain_id, event_type, start_time, seq)" in ddl[1][0][0]
    assert ddl[2] == [[0]]


def test_payload_rows_are_judged_by_their_hash_against_the_sealed_commitment(tmp_path):
    """The payload table stores no commitment of its own: a reader hashes each row's
    salt || content against the envelope's sealed commitment. An extra row beside the
    matching one (an orphan of a retried write) changes nothing; once no row of that
    name matches, the search and the engine-rendered export both say tampered."""
    data_dir = tmp_path / "data"
    proc = CollectorProc(data_dir).start()
    try:
        _send(proc, _ticket("T-1", "rev-ann"))
    finally:
        proc.stop()
    engine(data_dir, "INSERT INTO aitrail.payloads (chain_id, record_id, name, start_time,"
           " salt, content) SELECT chain_id, record_id, name, start_time,"
           " '00112233445566778899aabbccddeeff', 'an orphan' FROM aitrail.payloads"
           " WHERE name = 'rationale'")

    def seen() -> tuple[str, str]:
        events = json.loads(cli("timeline", "T-1", "--data-dir", str(data_dir),
                                "--format", "json").stdout)
        out = cli("export", "--data-dir", str(data_dir), "--task", "T-1")
        assert out.returncode == 0, out.stderr
        review = next(line for line in out.stdout.splitlines() if ",review," in line)
        return events[1]["rationale"], review

    rationale, line = seen()
    assert rationale == "why T-1" and "why T-1" in line and "an orphan" not in line
    engine(data_dir, "ALTER TABLE aitrail.payloads UPDATE content = 'edited' WHERE"
           " content = 'why T-1' SETTINGS mutations_sync = 2")
    rationale, line = seen()
    tampered = "[payload does not match its sealed commitment]"
    assert rationale == tampered and tampered in line and "edited" not in line
