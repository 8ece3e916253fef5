"""Tampering done with the engine directly on the stored rows: verify names each record."""

import json
from datetime import date, timedelta

import pytest
from support import CollectorProc, cli, engine, make_record, stub, verdict

from aitrail.v1 import audit_pb2 as pb

E, C = "aitrail.envelopes", "aitrail.checkpoints"


@pytest.fixture
def sealed_store(sdk, collector):
    """A stopped collector's store holding 8 sealed records; returns (dir, {seq: record_id})."""
    for i in range(8):
        with sdk.task(f"T-{i}"):
            sdk.resolve(resolution="closed", final_decision=f"decision {i}")
        sdk.flush(30)  # one batch per record, so seq follows i
    collector.stop()
    rows = engine(collector.data_dir, f"SELECT seq, record_id FROM {E} ORDER BY seq")[0]
    assert [r[0] for r in rows] == list(range(1, 9))
    return collector.data_dir, {seq: rid for seq, rid in rows}


def _verify(data_dir):
    """Verify's exit code and its record-level findings. The checkpoints' own findings
    (the stored records no longer rebuild a signed root) are covered by
    test_checkpoints.py; here each must come with a record finding."""
    out = cli("verify", "--data-dir", str(data_dir), "--format", "json")
    assert out.returncode in (0, 1), out.stderr
    report = json.loads(out.stdout)
    assert report["ok"] == (out.returncode == 0)
    records = {(f["kind"], f["seq"], f["record_id"]) for f in report["findings"]
               if not f["kind"].startswith("checkpoint_")}
    assert records or not report["findings"], report["findings"]
    return out.returncode, records


def test_untouched_store_verifies_clean(sealed_store):
    data_dir, _ = sealed_store
    assert _verify(data_dir) == (0, set())
    text = cli("verify", "--data-dir", str(data_dir))
    assert text.returncode == 0 and verdict(text.stdout).startswith("OK: 8 records")


def test_changed_field_is_found_as_modified(sealed_store):
    data_dir, ids = sealed_store
    engine(data_dir, f"ALTER TABLE {E} UPDATE final_decision = 'approve all' WHERE seq = 3"
                     " SETTINGS mutations_sync = 1")
    assert _verify(data_dir) == (1, {("modified", 3, ids[3])})
    text = cli("verify", "--data-dir", str(data_dir))
    assert text.returncode == 1 and ids[3] in text.stdout and "modified" in text.stdout


def test_deleted_row_is_found_as_missing(sealed_store):
    data_dir, _ = sealed_store
    engine(data_dir, f"ALTER TABLE {E} DELETE WHERE seq = 5 SETTINGS mutations_sync = 1")
    code, findings = _verify(data_dir)
    assert code == 1 and findings == {("missing", 5, "")}


def test_forged_row_is_found_as_inserted(sealed_store):
    data_dir, _ = sealed_store
    forged = "01900000-0000-7000-8000-000000000001"
    engine(data_dir, f"INSERT INTO {E} SELECT * REPLACE ('{forged}' AS record_id,"
                     f" 'forged' AS final_decision) FROM (SELECT * FROM {E} WHERE seq = 4)")
    code, findings = _verify(data_dir)
    assert code == 1
    assert ("inserted", 4, forged) in findings
    assert all(rid == forged for _, _, rid in findings)


def test_swapped_rows_are_found_out_of_order(sealed_store):
    data_dir, ids = sealed_store
    # seq is part of the sort key, so a swap is a re-insert plus a delete.
    engine(data_dir,
           f"INSERT INTO {E} SELECT * REPLACE (if(seq = 3, 4, 3) AS seq)"
           f" FROM (SELECT * FROM {E} WHERE seq IN (3, 4))",
           f"ALTER TABLE {E} DELETE WHERE (seq = 3 AND record_id = '{ids[3]}') OR "
           f"(seq = 4 AND record_id = '{ids[4]}') SETTINGS mutations_sync = 1")
    rows = engine(data_dir, f"SELECT seq, record_id FROM {E} WHERE seq IN (3, 4) ORDER BY seq")[0]
    assert rows == [[3, ids[4]], [4, ids[3]]]
    assert _verify(data_dir) == (1, {("out_of_order", 3, ids[4]), ("out_of_order", 4, ids[3])})


def _record_findings(report):
    return {(f["kind"], f["chain_id"], f["seq"], f["record_id"]) for f in report["findings"]
            if not f["kind"].startswith("checkpoint_")}


def test_a_row_that_cannot_be_encoded_is_modified_everywhere(sealed_store):
    """confidence edited to NaN or infinity cannot be encoded canonically: that is
    tampering (exit 1, a modified finding naming chain, seq and record), not a usage
    error, in the CLI, the HTTP API and period verification alike."""
    data_dir, ids = sealed_store
    engine(data_dir, f"ALTER TABLE {E} UPDATE confidence = nan WHERE seq = 3"
                     " SETTINGS mutations_sync = 2",
           f"ALTER TABLE {E} UPDATE confidence = inf WHERE seq = 5 SETTINGS mutations_sync = 2")
    assert _verify(data_dir) == (1, {("modified", 3, ids[3]), ("modified", 5, ids[5])})
    text = cli("verify", "--data-dir", str(data_dir))
    assert text.returncode == 1, text.stderr
    for seq in (3, 5):
        assert f"modified     chain=main seq={seq} record={ids[seq]}: envelope fields cannot be " \
               "encoded canonically" in text.stdout, text.stdout
    assert "changed after sealing" in text.stdout

    c = CollectorProc(data_dir).start()
    try:
        report = c.get("/api/v1/verify")  # urllib raises on a 400
        assert report["ok"] is False
        assert _record_findings(report) == {("modified", "main", 3, ids[3]),
                                            ("modified", "main", 5, ids[5])}
        # Two records sealed after the newest checkpoint; no closing checkpoint.
        recs = [make_record(task_id=f"T-late-{i}") for i in range(2)]
        assert stub(c.grpc).Export(pb.ExportRequest(records=recs), timeout=60).accepted == 2
    finally:
        c.kill()
    (start, size), = engine(data_dir, f"SELECT max(number), argMax(size, number) FROM {C}")[0]
    assert size == 8  # the newest checkpoint precedes the two late records
    late = engine(data_dir, f"SELECT record_id FROM {E} WHERE seq = 10",
                  f"ALTER TABLE {E} UPDATE confidence = nan WHERE seq = 10"
                  " SETTINGS mutations_sync = 2")[0][0][0]
    assert late == recs[1].record_id
    # A collector of another chain serves the API: it signs nothing for "main", whose
    # newest checkpoint stays the one before the two late records (a collector of
    # "main" would sign one over them at start).
    c = CollectorProc(data_dir, "--chain-id", "other").start()
    try:
        tomorrow = (date.today() + timedelta(days=1)).isoformat()
        report = c.get(f"/api/v1/verify?since={tomorrow}")
        assert report["period"]["from_checkpoint"]["main"] == start, report["period"]
        assert report["ok"] is False
        assert _record_findings(report) == {("modified", "main", 10, late)}
        detail = next(f["detail"] for f in report["findings"] if f["kind"] == "modified")
        assert "cannot be encoded canonically" in detail
    finally:
        c.stop()


@pytest.mark.parametrize("reference", [False, True])
def test_a_map_key_written_in_twice_is_modified(sealed_store, monkeypatch, reference):
    # A map holds a key twice only if someone wrote it in: the sealer's maps come from
    # protobuf maps. A driver reading the map into a dict keeps the last entry, the
    # sealed one, so the hash matched; SQL's commitments['final_decision'] reads the
    # first, the forged one.
    data_dir, ids = sealed_store
    if reference:
        monkeypatch.setenv("AITRAIL_VERIFY_REFERENCE", "1")
    engine(data_dir, f"ALTER TABLE {E} UPDATE commitments = mapConcat(map('final_decision',"
                     " repeat('f', 64)), commitments) WHERE seq = 4 SETTINGS mutations_sync = 1")
    first = engine(data_dir, f"SELECT commitments['final_decision'] FROM {E} WHERE seq = 4")
    assert first[0][0][0] == "f" * 64  # what a reader by key now sees
    assert _verify(data_dir) == (1, {("modified", 4, ids[4])})
    report = json.loads(cli("verify", "--data-dir", str(data_dir), "--format", "json").stdout)
    assert any("commitments holds the key 'final_decision' 2 times" in f["detail"]
               for f in report["findings"] if f["seq"] == 4), report["findings"]
    # No proof bundle shows the row as sealed (its map, a JSON object, would hold the
    # sealed entry only): `aitrail prove` refuses, naming the key.
    out = cli("prove", ids[4], "--data-dir", str(data_dir))
    assert out.returncode != 0 and "'final_decision'" in out.stderr, (out.stdout, out.stderr)
    assert cli("prove", ids[3], "--data-dir", str(data_dir)).returncode == 0
