"""Signed checkpoints end to end: the collector's proofs, tampering after checkpoints,
proof bundles checked offline, retention and ``--from-checkpoint``.

Every store is a real collector subprocess on a real chDB directory; tampering is
done with the engine (tests/engine.py) or on the anchor files, as an attacker with
access to the database or the anchor would do it.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.error
from datetime import date, timedelta
from pathlib import Path

import pytest
from support import PY, CollectorProc, cli, engine, make_record, stub

from aitrail.v1 import audit_pb2 as pb
from aitrail.verify import merkle
from aitrail.verify.bundle import BundleError, verify_bundle
from aitrail.verify.checkpoint import (
    Checkpoint,
    SignedCheckpoint,
    generate_keypair,
    key_id,
    load_private_key,
    load_public_key,
    sign,
)

E, C = "aitrail.envelopes", "aitrail.checkpoints"
DAY_NS = 86_400 * 10**9


def _emit(collector: CollectorProc, n: int, start_ns: int | None = None, tag: str = "a") -> list:
    """n records in one batch (so seq follows the list); returns their ids."""
    recs = [make_record(task_id=f"T-{tag}-{i}", **{"resolution.final_decision": f"{tag}{i}"})
            for i in range(n)]
    if start_ns is not None:
        for i, r in enumerate(recs):
            r.start_time_unix_nano = start_ns + i
    resp = stub(collector.grpc).Export(pb.ExportRequest(records=recs), timeout=60)
    assert resp.accepted == n, resp
    return [r.record_id for r in recs]


def _verify(data_dir: Path, *extra: str) -> tuple[int, dict]:
    out = cli("verify", "--data-dir", str(data_dir), "--format", "json", *extra)
    assert out.returncode in (0, 1), out.stderr
    return out.returncode, json.loads(out.stdout)


def _kinds(report: dict) -> set[str]:
    return {f["kind"] for f in report["findings"]}


def _details(report: dict, kind: str) -> list[str]:
    return [f["detail"] for f in report["findings"] if f["kind"] == kind]


@pytest.fixture(scope="module")
def signed_template(tmp_path_factory):
    """A stopped collector's store: 3 batches of 6 records, a checkpoint after each
    (the collector is restarted in between), then its closing checkpoint. Built once
    (three collector runs); each test tampers with a copy of its own."""
    collector = CollectorProc(tmp_path_factory.mktemp("signed") / "store").start()
    try:
        for b in range(3):
            _emit(collector, 6, tag=f"b{b}")
            collector.stop()
            if b < 2:
                collector.start()
    finally:
        collector.stop()
    cps = engine(collector.data_dir, f"SELECT number, size FROM {C} ORDER BY number")[0]
    assert cps[-1][1] == 18 and [s for _, s in cps] == sorted(s for _, s in cps)
    return collector.data_dir


@pytest.fixture
def signed_store(signed_template, tmp_path):
    data = tmp_path / "store"
    shutil.copytree(signed_template, data, symlinks=True)  # the engine links relatively
    return data


@pytest.fixture
def signed_collector(signed_store):
    """A collector, not started, on the test's copy of the signed store."""
    proc = CollectorProc(signed_store)
    yield proc
    proc.stop()


# ---------------------------------------------------------------- proofs by the collector

def test_collector_proofs_verify_for_every_index_and_size_pair(collector):
    _emit(collector, 70)
    leaves = [bytes.fromhex(r["leaf_hash"]) for r in
              collector.get("/api/v1/records?limit=10000&sort=seq")["records"]]
    assert len(leaves) == 70
    for size in range(1, 71):
        root = merkle.root(leaves[:size])
        for index in range(size):
            p = collector.get(f"/api/v1/proofs/inclusion?index={index}&size={size}")
            assert p["root"] == root.hex() and p["leaf_hash"] == leaves[index].hex()
            merkle.verify_inclusion(leaves[index], index, size,
                                    [bytes.fromhex(h) for h in p["proof"]], root)
    for size2 in range(1, 41):
        for size1 in range(1, size2 + 1):
            p = collector.get(f"/api/v1/proofs/consistency?size1={size1}&size2={size2}")
            merkle.verify_consistency(size1, size2, [bytes.fromhex(h) for h in p["proof"]],
                                      merkle.root(leaves[:size1]), merkle.root(leaves[:size2]))
    # A proof for a tree the chain does not hold is refused, not invented.
    with pytest.raises(urllib.error.HTTPError) as err:
        collector.get("/api/v1/proofs/inclusion?index=0&size=100000")
    assert err.value.code == 404


# ---------------------------------------------------------------- cadence and anchor

def _poll(col: CollectorProc, done, timeout: float = 20.0) -> list[dict]:
    deadline = time.monotonic() + timeout
    while True:
        cps = col.get("/api/v1/checkpoints?limit=1000")["checkpoints"]
        if done(cps) or time.monotonic() > deadline:
            assert done(cps), cps
            return cps
        time.sleep(0.2)


def test_checkpoints_on_cadence_when_quiet_and_at_shutdown(tmp_path):
    col = CollectorProc(tmp_path / "store", "--checkpoint-latency", "0.3",
                        "--checkpoint-max-quiet", "1").start()
    try:
        _emit(col, 5)
        # The cadence signs the 5 records; then, with nothing arriving, at least one
        # more per max-quiet second. Polled: a loaded machine may delay the thread.
        first = _poll(col, lambda cps: cps[0]["size"] == 5)
        quiet = _poll(col, lambda cps: len(cps) > len(first) + 1)
        assert {c["size"] for c in quiet[:len(quiet) - len(first)]} == {5}
    finally:
        col.stop()
    db = engine(col.data_dir, f"SELECT number, size, text FROM {C} ORDER BY number")[0]
    assert db[-1][0] > quiet[0]["number"] and db[-1][1] == 5  # the closing checkpoint
    anchor_dir = col.data_dir / "anchor" / "main"
    files = sorted(anchor_dir.iterdir())
    assert [f.read_text() for f in files] == [t for _, _, t in db]
    key = load_public_key(col.data_dir / "signing-key.pub")
    for n, (number, size, text) in enumerate(db, start=1):
        signed = SignedCheckpoint.parse(text)
        assert (signed.checkpoint.number, signed.checkpoint.size) == (n, size)
        assert signed.checkpoint.key_id == key_id(key)
    code, report = _verify(col.data_dir)
    assert code == 0, report
    assert report["chains"][0]["checkpoints"]["anchored"] == len(db)


def test_untouched_signed_store_verifies_clean(signed_store):
    code, report = _verify(signed_store)
    assert code == 0 and report["findings"] == [], report
    cps = report["chains"][0]["checkpoints"]
    assert cps["checkpoints"] >= 4 and cps["last"]["size"] == 18
    text = cli("verify", "--data-dir", str(signed_store))
    assert text.returncode == 0 and "last #" in text.stdout and "at size 18" in text.stdout


# ---------------------------------------------------------------- tampering after checkpoints

def test_rewritten_history_with_recomputed_hashes_is_caught_by_the_checkpoints(signed_store):
    """An attacker who edits a record and recomputes its leaf and every later chain
    hash leaves a chain that links up; only the signed roots give it away."""
    from aitrail.verify.chain import Sealer
    from aitrail.verify.envelope import CURRENT_VERSION, FIELDS
    names = [f.name for f in FIELDS]  # the store's rows are all of the current version
    sel = ", ".join(f"toUnixTimestamp64Nano({n})" if f.kind == "time" else n
                    for n, f in zip(names, FIELDS))
    rows = engine(signed_store, f"SELECT seq, {sel} FROM {E} ORDER BY seq")[0]
    sealer = Sealer("main")
    updates = []
    for row in rows:
        env = dict(zip(names, row[1:]), envelope_version=CURRENT_VERSION)
        env["confidence"] = None
        if row[0] == 4:
            env["resolution_outcome"] = "approved everything"
        link = sealer.seal(env)
        if row[0] >= 4:
            updates.append(f"ALTER TABLE {E} UPDATE resolution_outcome ="
                           f" '{env['resolution_outcome']}',"
                           f" prev_hash = unhex('{link.prev_hash.hex()}'),"
                           f" leaf_hash = unhex('{link.leaf_hash.hex()}'),"
                           f" chain_hash = unhex('{link.chain_hash.hex()}')"
                           f" WHERE seq = {row[0]} SETTINGS mutations_sync = 1")
    engine(signed_store, *updates)
    code, report = _verify(signed_store)
    assert code == 1
    assert _kinds(report) == {"checkpoint_inconsistent"}, report["findings"]
    assert any("do not rebuild its signed root" in d
               for d in _details(report, "checkpoint_inconsistent"))


def _delete_row(data_dir: Path) -> None:
    engine(data_dir, f"ALTER TABLE {E} DELETE WHERE seq = 8 SETTINGS mutations_sync = 1")


def _insert_row(data_dir: Path) -> None:
    engine(data_dir, f"INSERT INTO {E} SELECT * REPLACE ('forged-id' AS record_id,"
                     f" 'approve' AS final_decision) FROM (SELECT * FROM {E} WHERE seq = 5)")


def _swap_rows(data_dir: Path) -> None:
    ids = dict(engine(data_dir, f"SELECT seq, record_id FROM {E} WHERE seq IN (3, 4)")[0])
    # seq is part of the sort key, so a swap is a re-insert plus a delete.
    engine(data_dir,
           f"INSERT INTO {E} SELECT * REPLACE (if(seq = 3, 4, 3) AS seq)"
           f" FROM (SELECT * FROM {E} WHERE seq IN (3, 4))",
           f"ALTER TABLE {E} DELETE WHERE (seq = 3 AND record_id = '{ids[3]}') OR "
           f"(seq = 4 AND record_id = '{ids[4]}') SETTINGS mutations_sync = 1")


@pytest.mark.parametrize("attack, named", [
    (_delete_row, {("missing", 8), ("checkpoint_inconsistent", 0)}),
    (_insert_row, {("inserted", 5)}),
    (_swap_rows, {("out_of_order", 3), ("out_of_order", 4), ("checkpoint_inconsistent", 0)}),
], ids=["delete", "insert", "reorder"])
def test_row_tampering_after_checkpoints_is_named(signed_store, attack, named):
    attack(signed_store)
    code, report = _verify(signed_store)
    assert code == 1
    assert named <= {(f["kind"], f["seq"]) for f in report["findings"]}, report["findings"]


def test_truncated_chain_is_named_and_the_collector_refuses_to_build_on_it(signed_store):
    engine(signed_store, f"ALTER TABLE {E} DELETE WHERE seq > 15 SETTINGS mutations_sync = 1")
    code, report = _verify(signed_store)
    assert code == 1
    missing = [f for f in report["findings"] if f["kind"] == "missing"]
    assert missing and missing[0]["seq"] == 16 and "16..18 were deleted" in missing[0]["detail"]
    out = subprocess.run([PY, "-m", "aitrail.cli", "collector", "--data-dir", str(signed_store),
                          "--grpc-listen", "127.0.0.1:0", "--http-listen", ""],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "was truncated" in out.stderr


def test_collector_refuses_to_sign_on_top_of_an_altered_newest_checkpoint(signed_store):
    newest = engine(signed_store, f"SELECT max(number) FROM {C}")[0][0][0]
    engine(signed_store, f"ALTER TABLE {C} UPDATE text = 'garbage' WHERE number = {newest}"
                         " SETTINGS mutations_sync = 1")
    out = subprocess.run([PY, "-m", "aitrail.cli", "collector", "--data-dir", str(signed_store),
                          "--grpc-listen", "127.0.0.1:0", "--http-listen", ""],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2, out.stderr
    assert f"newest stored checkpoint (#{newest}) does not parse" in out.stderr
    assert "Run `aitrail verify`" in out.stderr
    code, report = _verify(signed_store)
    assert code == 1
    assert f"checkpoint {newest}: the database copy does not parse" in " ".join(
        _details(report, "checkpoint_bad_signature")), report["findings"]


def test_checkpoint_deleted_from_the_database(signed_store):
    engine(signed_store, f"ALTER TABLE {C} DELETE WHERE number = 2 SETTINGS mutations_sync = 1")
    code, report = _verify(signed_store)
    assert code == 1 and _kinds(report) == {"checkpoint_missing"}
    assert _details(report, "checkpoint_missing") == [
        "checkpoint 2: in the anchor store but deleted from the database"]


def test_checkpoint_altered_in_the_anchor_directory(signed_store):
    path = signed_store / "anchor" / "main" / f"{2:012d}.checkpoint"
    path.chmod(0o644)
    path.write_text(path.read_text().replace("size ", "size 1", 1))
    code, report = _verify(signed_store)
    assert code == 1
    assert {"checkpoint_bad_signature", "checkpoint_differs_from_anchor"} <= _kinds(report)


def test_checkpoint_signed_with_another_key(signed_store):
    number, text = engine(signed_store, f"SELECT number, text FROM {C} WHERE number = 3")[0][0]
    cp = SignedCheckpoint.parse(text).checkpoint
    other = load_private_key(generate_keypair()[0])
    forged = Checkpoint(**{**cp.__dict__, "key_id": key_id(other.public_key())})
    forged_text = sign(forged, other).text().replace("'", "''")
    engine(signed_store, f"ALTER TABLE {C} UPDATE text = '{forged_text}' WHERE number = 3"
                         " SETTINGS mutations_sync = 1")
    code, report = _verify(signed_store)
    assert code == 1 and "checkpoint_bad_signature" in _kinds(report)
    assert any("expected key" in d for d in _details(report, "checkpoint_bad_signature"))
    # With the forger's own public key given, the genuine ones fail instead.
    pub = signed_store.parent / "other.pub"
    pub.write_bytes(generate_keypair()[1])
    code, report = _verify(signed_store, "--public-key", str(pub))
    assert code == 1 and len(_details(report, "checkpoint_bad_signature")) >= 3


def test_a_checkpoint_altered_in_the_database_does_not_hold_back_later_anchoring(
        signed_store, signed_collector):
    """At start the collector offers its newest checkpoints to the anchor again; one the
    database altered conflicts with the anchor's copy for good, so it is reported and
    passed over instead of blocking every checkpoint after it."""
    text = engine(signed_store, f"SELECT text FROM {C} WHERE number = 3")[0][0][0]
    cp = SignedCheckpoint.parse(text).checkpoint
    other = load_private_key(generate_keypair()[0])
    forged = sign(Checkpoint(**{**cp.__dict__, "key_id": key_id(other.public_key())}), other)
    forged_text = forged.text().replace("'", "''")
    engine(signed_store, f"ALTER TABLE {C} UPDATE text = '{forged_text}' WHERE number = 3"
                         " SETTINGS mutations_sync = 1")
    signed_collector.start()
    _emit(signed_collector, 2, tag="after")
    signed_collector.stop()
    newest = engine(signed_store, f"SELECT max(number) FROM {C}")[0][0][0]
    anchored = sorted(p.name for p in (signed_store / "anchor" / "main").iterdir())
    assert anchored[-1] == f"{newest:012d}.checkpoint", anchored
    assert (signed_store / "anchor" / "main" / "000000000003.checkpoint").read_text() == text
    assert ("checkpoint 3 of chain main differs from the anchor's copy"
            in signed_collector.log.read_text())
    code, report = _verify(signed_store)
    assert code == 1 and "checkpoint_bad_signature" in _kinds(report)


def test_fork_truncate_and_reappend_is_caught_by_the_anchor(signed_store, signed_collector):
    """Delete the newest records and the checkpoints that cover them from the database,
    so that the collector could seal different records in their place: the anchor still
    holds what was signed before, so the collector refuses to build on that database,
    and verify names the deleted records from the anchor's copies."""
    cps = engine(signed_store, f"SELECT number, size FROM {C} ORDER BY number")[0]
    keep = max(n for n, s in cps if s <= 12)
    engine(signed_store,
           f"ALTER TABLE {E} DELETE WHERE seq > 12 SETTINGS mutations_sync = 1",
           f"ALTER TABLE {C} DELETE WHERE number > {keep} SETTINGS mutations_sync = 1")
    with pytest.raises(RuntimeError, match="but the database's newest is"):
        signed_collector.start()
    code, report = _verify(signed_store)
    assert code == 1
    assert "checkpoint_missing" in _kinds(report)
    assert any("were deleted" in d for d in _details(report, "missing"))


# ---------------------------------------------------------------- proof bundles

def test_proof_bundle_verifies_offline_and_every_bit_flip_fails(collector, tmp_path):
    ids = _emit(collector, 9)
    bundle = tmp_path / "proof.json"
    out = cli("prove", ids[4], "--url", collector.url, "-o", str(bundle))
    assert out.returncode == 0, out.stderr
    pub = tmp_path / "collector.pub"
    shutil.copy(collector.data_dir / "signing-key.pub", pub)
    collector.stop()
    shutil.rmtree(collector.data_dir)  # no store anywhere: the bundle stands alone

    out = cli("verify-proof", str(bundle), "--public-key", str(pub))
    assert out.returncode == 0 and f"record {ids[4]} is record 5" in out.stdout
    raw = bundle.read_bytes()
    key = load_public_key(pub)
    for i in range(len(raw)):
        for bit in range(8):
            flipped = bytearray(raw)
            flipped[i] ^= 1 << bit
            with pytest.raises((BundleError, UnicodeDecodeError)):
                verify_bundle(bytes(flipped).decode("utf-8"), key)
    bad = tmp_path / "bad.json"
    bad.write_bytes(raw.replace(b'"seq": 5', b'"seq": 6'))
    out = cli("verify-proof", str(bad), "--public-key", str(pub))
    assert out.returncode == 1 and out.stdout.startswith("FAILED")
    other = tmp_path / "other.pub"
    other.write_bytes(generate_keypair()[1])
    out = cli("verify-proof", str(bundle), "--public-key", str(other))
    assert out.returncode == 1 and "expected key" in out.stdout


def test_prove_an_unknown_record_is_a_clear_error(collector):
    out = cli("prove", "no-such-record", "--url", collector.url)
    assert out.returncode == 2 and "no record 'no-such-record'" in out.stderr


# ---------------------------------------------------------------- retention

def test_from_checkpoint_verifies_what_retention_left(collector):
    old_day = time.time_ns() - 3 * DAY_NS
    _emit(collector, 7, start_ns=old_day, tag="old")
    collector.stop()   # closing checkpoint at size 7
    collector.start()
    _emit(collector, 5, tag="new")
    collector.stop()
    data = collector.data_dir
    number = engine(data, f"SELECT max(number) FROM {C} WHERE size = 7")[0][0][0]
    day = engine(data, "SELECT DISTINCT partition FROM system.parts WHERE database = 'aitrail'"
                       " AND table = 'envelopes' AND active ORDER BY partition")[0][0][0]
    engine(data, f"ALTER TABLE {E} DROP PARTITION '{day}'",
           f"ALTER TABLE aitrail.payloads DROP PARTITION '{day}'")

    code, report = _verify(data)
    assert code == 1 and "missing" in _kinds(report)
    code, report = _verify(data, "--from-checkpoint", str(number))
    assert code == 0, report["findings"]
    assert report["records"] == 5
    assert report["chains"][0]["checkpoints"]["from_checkpoint"] == number
    out = cli("verify", "--data-dir", str(data), "--from-checkpoint", "999")
    assert out.returncode == 2 and "no valid checkpoint 999" in out.stderr
    # The collector continues the tree from the checkpoint's frontier.
    collector.start()
    _emit(collector, 2, tag="after")
    collector.stop()
    code, report = _verify(data, "--from-checkpoint", str(number))
    assert code == 0 and report["records"] == 7


# ---------------------------------------------------------------- verifying a period

def _period(collector: CollectorProc, **params: str) -> dict:
    query = "&".join(f"{k}={v}" for k, v in params.items())
    return collector.get(f"/api/v1/verify?{query}")


def test_period_verification_starts_each_chain_at_its_own_checkpoint(tmp_path):
    """Checkpoint numbers are per chain: a period's start is found for each chain on its
    own (alpha's checkpoint 4 does not exist), from the signed times, and a checkpoint
    that no longer parses is reported, not taken as the start."""
    store = tmp_path / "store"
    for chain, runs in (("alpha", 1), ("beta", 3)):
        for run in range(runs):
            c = CollectorProc(store, "--chain-id", chain).start()
            _emit(c, 3, tag=f"{chain}{run}")
            c.stop()
    numbers = engine(store, f"SELECT chain_id, max(number) FROM {C} GROUP BY chain_id "
                            "ORDER BY chain_id")[0]
    assert numbers == [["alpha", 2], ["beta", 4]]
    tomorrow = (date.today() + timedelta(days=1)).isoformat()  # every checkpoint precedes it

    c = CollectorProc(store, "--chain-id", "alpha").start()
    try:
        report = _period(c, since=tomorrow)
        assert report["ok"], report["findings"]
        assert report["period"]["from_checkpoint"] == {"alpha": 2, "beta": 4}
        assert {ch["chain_id"]: ch["checkpoints"]["from_checkpoint"]
                for ch in report["chains"]} == {"alpha": 2, "beta": 4}
        whole = _period(c, since="2020-01-01")  # before every checkpoint: all of it
        assert whole["ok"] and whole["period"]["from_checkpoint"] == {}
        assert whole["records"] > report["records"]
    finally:
        c.stop()

    alpha = engine(store, f"SELECT max(number) FROM {C} WHERE chain_id = 'alpha'",
                   f"ALTER TABLE {C} UPDATE text = 'not a checkpoint' WHERE chain_id = 'beta'"
                   " AND number = 4 SETTINGS mutations_sync = 1")[0][0][0]  # 3: closed again
    c = CollectorProc(store, "--chain-id", "alpha").start()
    try:
        report = _period(c, since=tomorrow)
        assert not report["ok"]
        assert report["period"]["from_checkpoint"] == {"alpha": alpha, "beta": 3}
        assert any(f["chain_id"] == "beta" and f["kind"] == "checkpoint_bad_signature"
                   for f in report["findings"]), report["findings"]
    finally:
        c.stop()


def test_period_verification_refuses_bad_periods(collector):
    for params, status in ((dict(since="2026-13-01"), 422),
                           (dict(since="2026-05-02", until="2026-05-01"), 400),
                           (dict(since="2026-05-01", from_checkpoint="1"), 400)):
        query = "&".join(f"{k}={v}" for k, v in params.items())
        with pytest.raises(urllib.error.HTTPError) as err:
            collector.get(f"/api/v1/verify?{query}")
        assert err.value.code == status, params
        assert json.loads(err.value.read())["detail"]


def test_a_record_with_a_map_key_written_in_twice_gets_no_proof_from_the_collector(
        signed_store, signed_collector):
    # The collector's own answer (GET /records/{id}/proof, `aitrail prove --url`): a
    # bundle's maps are JSON objects, which would hold the sealed entry only, so no
    # bundle may present such a row as sealed. A 409 names the key; the others prove.
    engine(signed_store, f"ALTER TABLE {E} UPDATE commitments = mapConcat(map("
                         "'final_decision', repeat('f', 64)), commitments) WHERE seq = 4"
                         " SETTINGS mutations_sync = 1")
    (forged,), (clean,) = engine(signed_store, f"SELECT record_id FROM {E} WHERE seq IN (4, 5)"
                                 " ORDER BY seq")[0]
    collector = signed_collector.start()
    with pytest.raises(urllib.error.HTTPError) as refused:
        collector.get(f"/api/v1/records/{forged}/proof")
    assert refused.value.code == 409
    assert "'final_decision'" in json.loads(refused.value.read())["detail"]
    out = cli("prove", forged, "--url", collector.url)
    assert out.returncode != 0 and "'final_decision'" in out.stderr, (out.stdout, out.stderr)
    assert collector.get(f"/api/v1/records/{clean}/proof")["record_id"] == clean
