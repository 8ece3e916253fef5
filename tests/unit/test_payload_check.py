"""The payload check (ledger/erasure.check_payloads): the engine path, which hashes
every payload row in the embedded engine and hands Python only the records with an
unmatched commitment, reports exactly what the pure-Python reference reports, on
clean and on tampered payload tables (content, salt, rows deleted or added, erased).

Each test seals a few records into a chain of its own, in one scratch embedded store
in this process (closed at the end of the module: one engine path per process).
"""

from __future__ import annotations

import time

import pytest

from aitrail.record.ids import uuid7
from aitrail.v1 import audit_pb2 as pb
from aitrail_collector.audit.verify import verify_store
from aitrail_collector.ledger import erasure
from aitrail_collector.ledger.erasure import (
    ERASURE_INCOMPLETE,
    PAYLOAD_MISSING,
    PAYLOAD_MODIFIED,
    check_payloads,
)
from aitrail_collector.ledger.group_commit import Ledger
from aitrail_collector.store import payloads, verify_sql
from aitrail_collector.store.client import Store

P = "aitrail.payloads"


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    s = Store(f"chdb://{tmp_path_factory.mktemp('payload-check')}/data")
    s.ensure_schema()
    yield s
    s.close()


_chains = iter(range(1_000_000))


def _seal(store: Store, n: int = 3) -> tuple[str, Ledger, list[str]]:
    """A fresh chain of ``n`` model calls with input and output payloads; its id, its
    ledger and the record ids."""
    chain = f"c{next(_chains)}"
    ledger = Ledger(store, chain)
    now = time.time_ns()
    records = []
    for i in range(n):
        rec = pb.AuditRecord(record_id=uuid7(), event_type="model_call", task_id=f"T{i}",
                             start_time_unix_nano=now, end_time_unix_nano=now + 1,
                             service="svc")
        rec.model_call.provider, rec.model_call.model = "openai", "gpt-4o"
        rec.model_call.input, rec.model_call.output = f"question {i}", f"answer {i} ü"
        records.append(rec)
    result = ledger.append(records)
    assert result.accepted == n, result
    return chain, ledger, [r.record_id for r in records]


def _sql(store: Store, *statements: str) -> None:
    for sql in statements:
        store.query(sql + (" SETTINGS mutations_sync = 2" if sql.startswith("ALTER") else ""))


def _both(store: Store, chain: str) -> tuple[list[dict], list[dict]]:
    """The findings (as dicts) and erased list, after asserting both paths agree."""
    fast_found, fast_gone = check_payloads(store, chain, engine=True)
    ref_found, ref_gone = check_payloads(store, chain, engine=False)
    fast = [f.as_dict() for f in fast_found]
    assert fast == [f.as_dict() for f in ref_found]
    assert fast_gone == ref_gone
    return fast, fast_gone


def _kinds(found: list[dict]) -> list[tuple[str, str]]:
    return [(f["kind"], f["record_id"]) for f in found]


def test_untouched_payloads_pass_on_both_paths(store):
    chain, _, _ = _seal(store)
    assert _both(store, chain) == ([], [])


def test_changed_content_is_modified_on_both_paths(store):
    chain, _, ids = _seal(store)
    _sql(store, f"ALTER TABLE {P} UPDATE content = 'harmless' WHERE record_id = '{ids[1]}'"
                " AND name = 'output'")
    found, _ = _both(store, chain)
    assert _kinds(found) == [(PAYLOAD_MODIFIED, ids[1])]
    assert "'output'" in found[0]["detail"]


@pytest.mark.parametrize("salt", ["'00'", "'zz'", "upper(salt)", "concat(salt, '0')"])
def test_changed_salt_is_judged_alike_on_both_paths(store, salt):
    chain, _, ids = _seal(store)
    _sql(store, f"ALTER TABLE {P} UPDATE salt = {salt} WHERE record_id = '{ids[0]}'")
    found, _ = _both(store, chain)
    # Upper-case hex is the same salt to bytes.fromhex; every other change breaks both.
    expected = [] if salt == "upper(salt)" else [(PAYLOAD_MODIFIED, ids[0])] * 2
    assert _kinds(found) == expected


@pytest.mark.parametrize("sealed", ["upper(v)", "concat(v, '00')", "substring(v, 3)"])
def test_a_sealed_commitment_rewritten_is_judged_alike_on_both_paths(store, sealed):
    # The engine compares digest bytes, the reference the hex text: upper-case hex of
    # the right digest must fail both (the reference never matches it), as must any
    # other length.
    chain, _, ids = _seal(store)
    _sql(store, f"ALTER TABLE aitrail.envelopes UPDATE commitments = "
                f"mapApply((k, v) -> (k, {sealed}), commitments) WHERE record_id = '{ids[2]}'")
    found, _ = _both(store, chain)
    assert _kinds(found) == [(PAYLOAD_MODIFIED, ids[2])] * 2


def test_deleted_row_is_missing_on_both_paths(store):
    chain, _, ids = _seal(store)
    _sql(store, f"ALTER TABLE {P} DELETE WHERE record_id = '{ids[2]}' AND name = 'input'")
    found, gone = _both(store, chain)
    assert _kinds(found) == [(PAYLOAD_MISSING, ids[2])] and gone == []


def test_added_rows_are_judged_alike_on_both_paths(store):
    chain, _, ids = _seal(store)
    copy = "record_id, name, start_time, salt, content"
    _sql(store,
         # beside a matching row: an orphan of a retried write, ignored
         f"INSERT INTO {P} (chain_id, {copy}) SELECT chain_id, record_id, name, start_time,"
         f" salt, 'orphan' FROM {P} WHERE record_id = '{ids[0]}' AND name = 'input'",
         # a name no commitment seals: ignored
         f"INSERT INTO {P} (chain_id, {copy}) SELECT chain_id, record_id, 'extra', start_time,"
         f" salt, content FROM {P} WHERE record_id = '{ids[1]}' AND name = 'input'",
         # a forged row in place of a deleted one: modified
         f"INSERT INTO {P} (chain_id, {copy}) SELECT chain_id, record_id, name, start_time,"
         f" salt, 'forged' FROM {P} WHERE record_id = '{ids[2]}' AND name = 'output'")
    _sql(store, f"ALTER TABLE {P} DELETE WHERE record_id = '{ids[2]}' AND name = 'output'"
                " AND content != 'forged'")
    found, _ = _both(store, chain)
    assert _kinds(found) == [(PAYLOAD_MODIFIED, ids[2])]


def test_a_row_moved_to_another_record_is_judged_alike_on_both_paths(store):
    chain, _, ids = _seal(store)
    _sql(store, f"INSERT INTO {P} (chain_id, record_id, name, start_time, salt, content)"
                f" SELECT chain_id, '{ids[1]}', name, start_time, salt, content"
                f" FROM {P} WHERE record_id = '{ids[0]}' AND name = 'input'",
         f"ALTER TABLE {P} DELETE WHERE (record_id = '{ids[0]}' AND name = 'input') OR"
         f" (record_id = '{ids[1]}' AND name = 'input' AND content = 'question 1')")
    found, _ = _both(store, chain)
    assert _kinds(found) == [(PAYLOAD_MISSING, ids[0]), (PAYLOAD_MODIFIED, ids[1])]


def test_erased_payloads_are_listed_not_failed_on_both_paths(store):
    chain, ledger, ids = _seal(store)
    erasure.erase(store, lambda c: ledger, record_id=ids[1], reason="ticket 7", actor="dpo")
    found, gone = _both(store, chain)
    assert found == []
    assert [(e["record_id"], e["payloads"], e["reason"]) for e in gone] == [
        (ids[1], ["input", "output"], "ticket 7")]


def test_an_erased_payload_stored_again_is_incomplete_on_both_paths(store):
    chain, ledger, ids = _seal(store)
    _sql(store, f"CREATE TABLE aitrail.kept_{chain} AS {P}",
         f"INSERT INTO aitrail.kept_{chain} SELECT * FROM {P} WHERE record_id = '{ids[0]}'")
    erasure.erase(store, lambda c: ledger, record_id=ids[0], reason="ticket 8", actor="dpo")
    _sql(store, f"INSERT INTO {P} SELECT * FROM aitrail.kept_{chain} WHERE name = 'input'")
    found, gone = _both(store, chain)
    assert _kinds(found) == [(ERASURE_INCOMPLETE, ids[0])]
    assert [(e["record_id"], e["payloads"]) for e in gone] == [(ids[0], ["output"])]


def test_a_store_the_engine_may_not_verify_has_its_payloads_hashed_here(store, monkeypatch):
    """DESIGN.md: a ClickHouse server never computes a hash the verifier vouches for."""
    chain, _, ids = _seal(store)
    _sql(store, f"ALTER TABLE {P} UPDATE content = 'harmless' WHERE record_id = '{ids[0]}'"
                " AND name = 'input'")

    def refuse(*args, **kwargs):
        raise AssertionError("the engine was asked to hash the payloads")
    monkeypatch.setattr(verify_sql, "engine_can_verify", lambda s: False)
    monkeypatch.setattr(payloads, "unmatched_records", refuse)
    report = verify_store(store, chains=[chain])
    assert report["path"] == "reference"
    assert [(f["kind"], f["record_id"]) for f in report["findings"]] == [
        (PAYLOAD_MODIFIED, ids[0])]
