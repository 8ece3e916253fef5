"""Tampering done with the engine directly on the stored rows: verify names each record."""

import json

import pytest

from support import cli, engine

E = "aitrail.envelopes"


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
    assert text.returncode == 0 and text.stdout.startswith("OK: 8 records")


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
