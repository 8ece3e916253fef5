"""The engine's canonical envelope bytes (store/verify_sql.py) are exactly the reference's.

Rows go into a scratch embedded store in this process; the engine computes their
canonical bytes and per-row checks, and they are held against the committed
known-answer vectors and against ``canonical_bytes`` on random envelopes. The store
is closed at the end of the module: chDB holds one engine path per process at a time.
"""

from __future__ import annotations

import io
import json
import math
import random
import zipfile
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from aitrail.verify.envelope import (
    ROW_ENCODERS,
    STORED_FIELDS,
    VERSION_FIELDS,
    canonical_bytes,
    empty_envelope,
)
from aitrail.verify.hashes import ZERO_HASH, chain_hash, leaf_hash
from aitrail_collector.audit.verify import reference_summary, verify_store
from aitrail_collector.errors import StoreError
from aitrail_collector.ledger.group_commit import stored_row
from aitrail_collector.store import verify_sql
from aitrail_collector.store.client import Store

VECTORS = json.loads((Path(__file__).resolve().parents[1] / "testdata" / "envelopes.json")
                     .read_text(encoding="utf-8"))["cases"]
U64_MAX = 2**64 - 1


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    s = Store(f"chdb://{tmp_path_factory.mktemp('verify-sql')}/data")
    s.ensure_schema()
    # The vectors' times are mostly in 1970: the retention TTL would drop them.
    s.query("ALTER TABLE aitrail.envelopes REMOVE TTL")
    yield s
    s.close()


def _fresh(store: Store) -> None:
    store.query("TRUNCATE TABLE aitrail.envelopes")


def _store_envelopes(store: Store, envelopes: list[dict]) -> list[bytes]:
    """Seal ``envelopes`` into one chain (seq 1..n) and insert them; their reference bytes."""
    rows, expected, prev = [], [], ZERO_HASH
    for seq, env in enumerate(envelopes, 1):
        env = dict(env)
        env.setdefault("envelope_version", 1)
        data = canonical_bytes(env)
        leaf = leaf_hash(data)
        chained = chain_hash(prev, leaf)
        rows.append(stored_row(seq, env, prev, leaf, chained))
        expected.append(data)
        prev = chained
    store.insert(rows, [])
    return expected


def _rows(store: Store, chain_id: str) -> dict[int, tuple]:
    """The chain's rows as the reference verifier reads them, by seq."""
    return {row[0]: row for block in store.chain_blocks(chain_id) for row in zip(*block)}


_ALPHABET = ["", "a", "Z", "é", "ü", "日本", "😀", "\x00", "\u2028", " ", "key", "Key", "k2"]


def _text(rng: random.Random) -> str:
    return "".join(rng.choice(_ALPHABET) for _ in range(rng.randrange(0, 5)))


def _value(rng: random.Random, kind: str):
    if kind in ("str", "lstr"):
        return _text(rng)
    if kind == "u64":
        return rng.choice([0, 1, 255, 256, 2**32, U64_MAX, rng.randrange(U64_MAX)])
    if kind == "time":
        # A few days only (start_time partitions the table); 0 and odd nanoseconds.
        return rng.choice([0, 1, 1_700_000_000_123_456_789,
                           1_700_000_000 * 10**9 + rng.randrange(86_400 * 10**9), 2**62 + 7])
    if kind == "f64?":
        return rng.choice([None, 0.0, -0.0, 1.0, 0.5, 0.1, 1e-300, -2.5, rng.random()])
    return {_text(rng) + str(i): _text(rng) for i in range(rng.randrange(0, 5))}


def _random_envelope(rng: random.Random, version: int) -> dict:
    env = empty_envelope(version)
    for f in VERSION_FIELDS[version]:
        env[f.name] = _value(rng, f.kind)
    env["envelope_version"] = version
    return env


def _storable(case: dict) -> bool:
    # DateTime64(9) holds signed 64-bit ns: a time at or past 2**63 ns (u64 range the
    # encoding allows) cannot be a stored row, so the engine never meets it.
    return all(case["envelope"][f.name] < 2**63 for f in STORED_FIELDS if f.kind == "time"
               and f.name in case["envelope"])


def test_engine_bytes_match_the_committed_vectors(store):
    _fresh(store)
    cases = [c for c in VECTORS if _storable(c)]
    assert {c["name"] for c in VECTORS} - {c["name"] for c in cases} == {"max_u64", "json_a"}
    store.insert([stored_row(seq, {"envelope_version": 1, **case["envelope"]},
                             bytes.fromhex(case["prev_chain_hash"]),
                             bytes.fromhex(case["leaf_hash"]), bytes.fromhex(case["chain_hash"]))
                  for seq, case in enumerate(cases, 1)], [])
    got = dict(verify_sql.canonical_of_rows(store))
    assert {1, 2, 3} <= {c["envelope"].get("envelope_version", 1) for c in cases}
    for seq, case in enumerate(cases, 1):
        assert got[seq].hex() == case["canonical_hex"], case["name"]
    # The reference verifier's encoders, on the rows as the store hands them over.
    rows = {chain: _rows(store, chain) for chain in {c["envelope"]["chain_id"] for c in cases}}
    for seq, case in enumerate(cases, 1):
        row = rows[case["envelope"]["chain_id"]][seq]
        assert ROW_ENCODERS[row[1]](row).hex() == case["canonical_hex"], case["name"]
    # Every vector's hash columns pass the engine's per-row checks.
    for chain in {c["envelope"]["chain_id"] for c in cases}:
        summary = verify_sql.summarize(store, chain, 1, ZERO_HASH)
        assert summary.failing_seqs == [], chain
        assert reference_summary(store, chain, 1, ZERO_HASH) == summary, chain


@pytest.mark.parametrize("version", sorted(VERSION_FIELDS))
def test_engine_bytes_match_canonical_bytes_on_random_envelopes(store, version):
    _fresh(store)
    rng = random.Random(12 + version)
    envelopes = [_random_envelope(rng, version) for _ in range(400)]
    for env in envelopes:
        env["chain_id"] = "c"
    envelopes[0]["confidence"], envelopes[1]["confidence"] = None, 0.25
    for f in VERSION_FIELDS[version]:
        if f.kind == "u64":
            envelopes[2][f.name] = U64_MAX
    expected = _store_envelopes(store, envelopes)
    got = verify_sql.canonical_of_rows(store)
    assert [data for _, data in got] == expected
    summary = verify_sql.summarize(store, "c", 1, ZERO_HASH)
    assert (summary.records, summary.head_seq, summary.failing_seqs, summary.intact) == (
        400, 400, [], True)
    rows = _rows(store, "c")
    assert [ROW_ENCODERS[version](rows[seq]) for seq in range(1, 401)] == expected
    assert reference_summary(store, "c", 1, ZERO_HASH) == summary


def test_rows_that_fail_are_the_only_ones_returned(store):
    _fresh(store)
    envs = [dict(empty_envelope(v), chain_id="c", record_id=f"r{i}", confidence=0.5)
            for i, v in enumerate([1, 2, 1, 2, 1, 2, 1], 1)]
    _store_envelopes(store, envs)
    stray = next(f.name for f in STORED_FIELDS
                 if f.name not in {g.name for g in VERSION_FIELDS[2]} and f.kind == "str")
    store.query("ALTER TABLE aitrail.envelopes UPDATE confidence = nan WHERE seq = 2"
                " SETTINGS mutations_sync = 1")
    store.query("ALTER TABLE aitrail.envelopes UPDATE confidence = inf WHERE seq = 3"
                " SETTINGS mutations_sync = 1")
    store.query(f"ALTER TABLE aitrail.envelopes UPDATE {stray} = 'x' WHERE seq = 4"
                " SETTINGS mutations_sync = 1")
    store.query("ALTER TABLE aitrail.envelopes UPDATE request_id = 'R2' WHERE seq = 5"
                " SETTINGS mutations_sync = 1")
    summary = verify_sql.summarize(store, "c", 1, ZERO_HASH)
    assert summary.failing_seqs == [2, 3, 4, 5] and summary.intact
    assert reference_summary(store, "c", 1, ZERO_HASH) == summary  # the reference path's pass
    assert math.isnan(next(verify_sql.rows_at(store, "c", [2]))[1]["confidence"])
    store.query("ALTER TABLE aitrail.envelopes DELETE WHERE seq = 6 SETTINGS mutations_sync = 1")
    summary = verify_sql.summarize(store, "c", 1, ZERO_HASH)
    assert (summary.records, summary.head_seq, summary.intact) == (6, 7, False)
    assert reference_summary(store, "c", 1, ZERO_HASH) == summary
    # The engine path hands exactly these rows to the reference: the same report.
    fast, reference = verify_store(store, fast=True), verify_store(store, fast=False)
    assert (fast.pop("path"), reference.pop("path")) == ("engine", "reference")
    fast.pop("seconds"), reference.pop("seconds")
    assert fast == reference
    assert {(f["kind"], f["seq"]) for f in fast["findings"]} == {
        ("modified", 2), ("modified", 3), ("modified", 4), ("modified", 5), ("missing", 6)}


def test_v3_evaluation_rows_and_their_tampering_agree_with_the_reference(store):
    """v1, v2 and v3 rows in one chain (v3: evaluations and a model call's response id);
    an edited score, a NaN score, an edited evaluation name, a v3 column written into a
    v2 row: the engine fails exactly those rows, and its report is the reference's."""
    _fresh(store)
    evaluation = dict(empty_envelope(3), event_type="evaluation", evaluation_name="relevance",
                      score_value=0.82, score_label="pass", response_id="chatcmpl-1")
    envs = [dict(empty_envelope(v), chain_id="c", record_id=f"r{i}")
            for i, v in enumerate([1, 2, 3, 3, 3, 2, 3], 1)]
    for i in (2, 3, 4):
        envs[i].update(evaluation, chain_id="c", record_id=f"r{i + 1}")
    envs[6].update(event_type="model_call", model="gpt-4o", response_id="chatcmpl-1")
    _store_envelopes(store, envs)
    assert verify_sql.summarize(store, "c", 1, ZERO_HASH).failing_seqs == []
    for sql in ("score_value = -0.82 WHERE seq = 3", "score_value = nan WHERE seq = 4",
                "evaluation_name = 'faithfulness' WHERE seq = 5",
                "score_label = 'pass' WHERE seq = 6"):
        store.query(f"ALTER TABLE aitrail.envelopes UPDATE {sql} SETTINGS mutations_sync = 1")
    summary = verify_sql.summarize(store, "c", 1, ZERO_HASH)
    assert summary.failing_seqs == [3, 4, 5, 6] and summary.intact
    assert reference_summary(store, "c", 1, ZERO_HASH) == summary
    fast, reference = verify_store(store, fast=True), verify_store(store, fast=False)
    assert (fast.pop("path"), reference.pop("path")) == ("engine", "reference")
    fast.pop("seconds"), reference.pop("seconds")
    assert fast == reference
    assert {(f["kind"], f["seq"]) for f in fast["findings"]} == {
        ("modified", 3), ("modified", 4), ("modified", 5), ("modified", 6)}


def test_the_audit_gets_every_leaf_and_chain_hash_in_seq_order(store):
    _fresh(store)
    _store_envelopes(store, [dict(empty_envelope(2), chain_id="c", record_id=f"r{i}")
                             for i in range(5)])
    got = [(leaves[i:i + 32], chains[i:i + 32])
           for leaves, chains in verify_sql.hash_blobs(store, "c", 2)
           for i in range(0, len(leaves), 32)]
    want = [(link.leaf_hash, link.chain_hash) for link in store.links("c", 2)]
    assert got == want and len(got) == 4


class _PiecesStore:
    """A stand-in for the store's raw stream alone: the engine's bytes cut at any point,
    as a server's chunks are (the real engine, tested above, sends whole blocks)."""

    def __init__(self, data: bytes, cuts: list[int]):
        self.pieces = [data[a:b] for a, b in zip([0] + cuts, cuts + [len(data)])]

    def stream_raw(self, sql, params, fmt):
        assert fmt == "RawBLOB"
        yield from self.pieces


def test_hash_blobs_joins_a_row_cut_across_two_pieces():
    rng = random.Random(5)
    rows = [(rng.randbytes(32), rng.randbytes(32)) for _ in range(9)]
    data = b"".join(a + b for a, b in rows)
    for cuts in ([], [64], [10, 70, 200], [1, 2, 3, 575]):
        got = list(verify_sql.hash_blobs(_PiecesStore(data, cuts), "c", 1))
        assert b"".join(a for a, _ in got) == b"".join(a for a, _ in rows), cuts
        assert b"".join(b for _, b in got) == b"".join(b for _, b in rows), cuts
    with pytest.raises(StoreError, match="ended inside a row"):
        list(verify_sql.hash_blobs(_PiecesStore(data[:-5], [100]), "c", 1))


def test_the_path_is_chosen_by_argument_environment_and_engine(store, monkeypatch):
    _fresh(store)
    _store_envelopes(store, [dict(empty_envelope(2), chain_id="c", record_id="r")])
    assert verify_store(store)["path"] == "engine"
    monkeypatch.setenv("AITRAIL_VERIFY_REFERENCE", "1")
    assert verify_store(store)["path"] == "reference"
    assert verify_store(store, fast=True)["path"] == "engine"
    monkeypatch.delenv("AITRAIL_VERIFY_REFERENCE")
    monkeypatch.setattr(verify_sql, "engine_can_verify", lambda s: False)
    report = verify_store(store, fast=True)
    assert report["path"] == "reference" and report["ok"] and report["records"] == 1


def test_a_clickhouse_server_is_never_trusted_to_verify_its_own_rows():
    """DESIGN.md: a server stores the ledger but never computes what is checked."""
    class Remote:
        embedded = False
        dsn = "http://clickhouse.example:8123"

        def query(self, *a, **k):  # pragma: no cover - must not be asked
            raise AssertionError("the server was asked to verify itself")
    assert verify_sql.engine_can_verify(Remote()) is False


E = "aitrail.envelopes"
_SYNC = " SETTINGS mutations_sync = 1"
# Tamperings of the links alone: every row still passes its own checks (chain_hash =
# SHA-256(prev_hash || leaf_hash)), so only the link check can tell. (stretch start,
# intact), and the SQL that does it to the chain of 8.
LINK_TAMPERINGS = {
    "untouched": (1, True, []),
    "gap": (1, False, [f"ALTER TABLE {E} DELETE WHERE seq = 4" + _SYNC]),
    "first_row_gone": (1, False, [f"ALTER TABLE {E} DELETE WHERE seq = 1" + _SYNC]),
    "head_gone": (1, True, [f"ALTER TABLE {E} DELETE WHERE seq = 8" + _SYNC]),
    "duplicate": (1, False, [f"INSERT INTO {E} SELECT * FROM {E} WHERE seq = 4"]),
    "duplicate_and_gap": (1, False, [f"INSERT INTO {E} SELECT * FROM {E} WHERE seq = 4",
                                     f"ALTER TABLE {E} DELETE WHERE seq = 6" + _SYNC]),
    "moved_past_head": (1, False, [  # (seq is in the sort key: no UPDATE of it)
        f"INSERT INTO {E} SELECT * REPLACE (9 AS seq) FROM {E} WHERE seq = 4",
        f"ALTER TABLE {E} DELETE WHERE seq = 4" + _SYNC]),
    "swapped": (1, False, [  # the rows of seqs 3 and 4 (r2, r3) trade places
        f"INSERT INTO {E} SELECT * REPLACE (7 - seq AS seq) FROM {E} WHERE seq IN (3, 4)",
        f"ALTER TABLE {E} DELETE WHERE (seq, record_id) IN ((3, 'r2'), (4, 'r3'))" + _SYNC]),
    "relinked": (1, False, [f"ALTER TABLE {E} UPDATE prev_hash = unhex(repeat('ab', 32)),"
                            " chain_hash = SHA256(concat(unhex(repeat('ab', 32)), leaf_hash))"
                            " WHERE seq = 4" + _SYNC]),
    "appended": (1, True, [f"INSERT INTO {E} SELECT * REPLACE (9 AS seq, chain_hash AS"
                           " prev_hash, SHA256(concat(chain_hash, leaf_hash)) AS chain_hash)"
                           f" FROM {E} WHERE seq = 8"]),
    "from_checkpoint": (4, True, []),
    "from_checkpoint_gap": (4, False, [f"ALTER TABLE {E} DELETE WHERE seq = 5" + _SYNC]),
    "before_checkpoint_gap": (4, True, [f"ALTER TABLE {E} DELETE WHERE seq = 2" + _SYNC]),
}


@pytest.mark.parametrize("name", list(LINK_TAMPERINGS))
def test_the_engines_link_check_agrees_with_the_references(store, name):
    start, intact, tamper = LINK_TAMPERINGS[name]
    _fresh(store)
    _store_envelopes(store, [dict(empty_envelope(2), chain_id="c", record_id=f"r{i}")
                             for i in range(8)])
    start_hash = ZERO_HASH if start == 1 else bytes(store.query(
        f"SELECT chain_hash FROM {E} WHERE seq = {{s:UInt64}}", {"s": start - 1}
    ).result_rows[0][0])
    for sql in tamper:
        store.query(sql)
    reference = reference_summary(store, "c", start, start_hash)
    assert reference.intact is intact and reference.failing_seqs == []
    assert verify_sql.summarize(store, "c", start, start_hash) == reference
    if start > 1:  # the same stretch from a start hash that is not the checkpoint's
        assert not verify_sql.summarize(store, "c", start, bytes(32)).intact


def test_the_reference_reads_rows_only_up_to_the_head_its_links_found(store):
    """Links first, then the rows up to that head: a record appended in between (a
    collector writing to a server during verification) is neither counted nor checked."""
    _fresh(store)
    _store_envelopes(store, [dict(empty_envelope(3), chain_id="c", record_id=f"r{i}")
                             for i in range(5)])
    assert sorted(r[0] for b in store.chain_blocks("c", 2, 4) for r in zip(*b)) == [2, 3, 4]
    assert [list(b[0]) for b in store.link_blocks("c", 3)] == [[3, 4, 5]]
    assert reference_summary(store, "c", 1, ZERO_HASH) == verify_sql.summarize(
        store, "c", 1, ZERO_HASH)


def _sealed_with_commitments(store: Store) -> list[dict]:
    """Four v3 records in chain "c" whose commitments hold final_decision; the second's
    map then gets a forged final_decision written in before the sealed one (as
    ``mapConcat`` does): SQL's ``commitments['final_decision']`` reads the forged one."""
    _fresh(store)
    envs = [dict(empty_envelope(3), chain_id="c", record_id=f"r{i}",
                 commitments={"final_decision": "a" * 64, "input": f"{i}" * 64})
            for i in range(1, 5)]
    _store_envelopes(store, envs)
    store.query("ALTER TABLE aitrail.envelopes UPDATE commitments = mapConcat("
                "map('final_decision', repeat('f', 64)), commitments) WHERE seq = 2"
                " SETTINGS mutations_sync = 1")
    read = store.query("SELECT commitments['final_decision'] FROM aitrail.envelopes"
                       " WHERE seq = 2").result_rows
    assert read == [("f" * 64,)]
    return envs


def test_a_map_key_written_in_twice_fails_the_reference_checks_of_a_server_store(
        store, monkeypatch):
    """The reference reads each map as its stored entries, so its own checks (no SQL
    check of the keys, which a server is never trusted with) find the row, and name the
    repeated key; the engine path says the same."""
    _sealed_with_commitments(store)
    assert reference_summary(store, "c", 1, ZERO_HASH).failing_seqs == [2]
    assert verify_sql.summarize(store, "c", 1, ZERO_HASH).failing_seqs == [2]
    reports = {"engine": verify_store(store, fast=True),
               "reference": verify_store(store, fast=False)}
    monkeypatch.setattr(verify_sql, "engine_can_verify", lambda s: False)  # a server's rows
    reports["server"] = verify_store(store)
    assert [r.pop("path") for r in reports.values()] == ["engine", "reference", "reference"]
    for r in reports.values():
        r.pop("seconds")
    assert reports["engine"] == reports["reference"] == reports["server"]
    # (the payload rows were never stored here: payload findings aside)
    (finding,) = [f for f in reports["server"]["findings"] if not f["kind"].startswith("payload")]
    assert (finding["kind"], finding["seq"], finding["record_id"]) == ("modified", 2, "r2")
    assert "commitments holds the key 'final_decision' 2 times" in finding["detail"]


def _sign_chain(store: Store, chain_id: str):
    """One signed checkpoint over the whole chain, stored as a collector stores it; the key."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from aitrail.verify.checkpoint import Checkpoint, key_id, sign
    from aitrail.verify.merkle import CompactRange
    key = Ed25519PrivateKey.generate()
    links = store.links(chain_id)
    tree = CompactRange()
    for link in links:
        tree.append(link.leaf_hash)
    cp = Checkpoint(origin=chain_id, number=1, size=tree.size, root=tree.root(),
                    chain_hash=links[-1].chain_hash, time_ns=1, prev=ZERO_HASH,
                    key_id=key_id(key.public_key()))
    store.insert_checkpoint(chain_id, 1, cp.size, cp.time_ns, sign(cp, key).text(),
                            tree.hashes)
    return key


def test_a_record_with_a_map_key_written_in_twice_gets_no_bundle_and_fails_the_console(store):
    """A bundle never shows such a row as verified: the proof of the record is refused
    with the reason, and the console's "Verify this task" says failed (the others of the
    task verify)."""
    from aitrail.errors import AitrailError
    from aitrail_collector.audit import proofs
    from aitrail_collector.web.console import trust
    _sealed_with_commitments(store)
    store.query("TRUNCATE TABLE aitrail.checkpoints")
    key = _sign_chain(store, "c")
    try:
        with pytest.raises(AitrailError, match="commitments holds the key 'final_decision'"):
            proofs.record_bundle(store, None, "r2")
        assert proofs.record_bundle(store, None, "r3")
        events = [{"record_id": f"r{s}", "chain_id": "c", "seq": s} for s in (1, 2, 3)]
        check = trust.verify_task(store, key.public_key(), events)
        assert check["results"]["r1"] == check["results"]["r3"] == ("verified", "")
        kind, reason = check["results"]["r2"]
        assert kind == "failed" and "'final_decision'" in reason, reason
        assert (check["verified"], check["failed"]) == (2, 1)
        # The task's proof archive holds the other two, and its README names the third.
        pem = key.public_key().public_bytes(serialization.Encoding.PEM,
                                            serialization.PublicFormat.SubjectPublicKeyInfo)
        data, _, members = trust.proof_archive(store, pem, "T", "auditor", events)
        assert members == 2
        readme = zipfile.ZipFile(io.BytesIO(data)).read("README.txt").decode()
        assert "FAILED: changed after sealing" in readme
        assert "r2: " in readme and "'final_decision'" in readme, readme
    finally:
        store.query("TRUNCATE TABLE aitrail.checkpoints")
