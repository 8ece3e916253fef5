"""A store made by the previous version's DDL (tests/testdata/store-ddl-issue11.sql:
LZ4 everywhere, ORDER BY (chain_id, event_type, start_time, seq), a stored
payloads.commitment column, no projections) is opened by this version: the schema is
migrated with metadata changes only, and the store still verifies and answers queries,
old rows and new rows alike."""

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


def _as_old_store(data_dir: Path) -> None:
    """Rebuild the tables of a (stopped) store with the previous version's DDL, rows
    unchanged; the old payload table stores each row's commitment (the sealed one)."""
    text = "\n".join(line for line in OLD_DDL.splitlines() if not line.startswith("--"))
    old = [s.strip() for s in text.split(";") if s.strip()]
    engine(data_dir,
           "RENAME TABLE aitrail.envelopes TO aitrail.env_new, aitrail.payloads TO aitrail.pay_new",
           *old,
           "INSERT INTO aitrail.envelopes SELECT * FROM aitrail.env_new",
           "INSERT INTO aitrail.payloads (chain_id, record_id, name, start_time, salt, content,"
           " commitment) SELECT p.chain_id, p.record_id, p.name, p.start_time, p.salt, p.content,"
           " e.commitments[p.name] FROM aitrail.pay_new AS p JOIN aitrail.env_new AS e"
           " ON e.record_id = p.record_id",
           "DROP TABLE aitrail.env_new", "DROP TABLE aitrail.pay_new")
    ddl = engine(data_dir, "SHOW CREATE TABLE aitrail.payloads",
                 "SHOW CREATE TABLE aitrail.envelopes")
    assert "EPHEMERAL" not in ddl[0][0][0] and "PROJECTION" not in ddl[1][0][0]
    assert "ORDER BY (chain_id, event_type, start_time, seq)" in ddl[1][0][0]


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
    proc = CollectorProc(data_dir).start()
    try:
        _send(proc, _ticket("T-old", "rev-ann"))
    finally:
        proc.stop()
    _as_old_store(data_dir)
    assert not _verify(data_dir)["findings"]  # the old store verifies as it is

    proc = CollectorProc(data_dir).start()  # ensure_schema migrates
    try:
        _send(proc, _ticket("T-new", "rev-ann"))
        for task in ("T-old", "T-new"):
            events = _timeline(proc.url, task)
            assert [e["event_type"] for e in events] == ["model_call", "review", "resolution"]
            assert events[0]["input"] == f"ticket {task}"  # payloads read and checked
            assert events[1]["rationale"] == f"why {task}"
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
