"""A timeline reads its payloads at once with its records (store/queries.py,
_task_payload_rows), by the same filter, and shows what the read by key shows: the
sealed content, a forged content as tampered, a stray row ignored; a record whose rows
that read missed (they landed after it began) is read again by key, never shown as
erased. One scratch embedded store, sealed through the real ledger."""

from __future__ import annotations

import time
from dataclasses import replace

import pytest
from support import make_record

from aitrail_collector.ledger.group_commit import Ledger
from aitrail_collector.store import queries as query
from aitrail_collector.store.client import Store


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    s = Store(f"chdb://{tmp_path_factory.mktemp('timeline-payloads')}/data")
    s.ensure_schema()
    t0 = time.time_ns() - 10**9
    records = [
        make_record("model_call", task_id="T-7", **{"model_call.input": "Ticket: charged twice",
                                                    "model_call.output": "billing"}),
        make_record("review", task_id="T-7", **{"review.reviewer_id": "rev-a",
                                                "review.decision": "modify",
                                                "review.modified_output": "refund",
                                                "review.rationale.text": "double charge"}),
        make_record("model_call", task_id="T-8", **{"model_call.input": "forge me",
                                                    "model_call.output": "x"}),
    ]
    for n, rec in enumerate(records):
        rec.start_time_unix_nano = rec.end_time_unix_nano = t0 + n * 1000
    assert Ledger(s, "main").append(records).accepted == len(records)
    yield s
    s.close()


def _by_key(store, task: str) -> list[dict]:
    """The same records read the other way: a limit makes the read not a whole
    task's, so its payloads are read by key after the records."""
    return query.search(store, replace(query.timeline_filters(task), limit=1000))


def test_a_timeline_reads_its_payloads_with_its_records_and_shows_the_sealed_text(
        store, monkeypatch):
    calls = []
    by_task = query._task_payload_rows
    monkeypatch.setattr(query, "_task_payload_rows",
                        lambda s, f: calls.append(f.task) or by_task(s, f))
    monkeypatch.setattr(store, "payload_rows", lambda *a, **k: pytest.fail("read by key"))
    events = query.timeline(store, "T-7")
    assert calls == ["T-7"]
    assert [(e["event_type"], e["input"], e["output"]) for e in events] == [
        ("model_call", "Ticket: charged twice", "billing"), ("review", "", "")]
    assert (events[1]["rationale"], events[1]["modified_output"]) == ("double charge", "refund")
    monkeypatch.undo()
    assert events == _by_key(store, "T-7")


def test_a_record_whose_rows_the_task_read_missed_is_read_again_by_key(store, monkeypatch):
    monkeypatch.setattr(query, "_task_payload_rows", lambda s, f: [])
    events = query.timeline(store, "T-7")
    assert events[0]["input"] == "Ticket: charged twice"
    assert events[1]["rationale"] == "double charge"
    assert query.ERASED not in [v for e in events for v in e.values()]


def test_a_stray_row_is_ignored_and_a_row_that_does_not_match_reads_as_tampered(
        store, monkeypatch):
    (rid,) = [e["record_id"] for e in query.timeline(store, "T-8")]
    by_task = query._task_payload_rows
    # A row of a record that is not on the timeline (another task's, say).
    monkeypatch.setattr(query, "_task_payload_rows", lambda s, f: by_task(s, f) + [
        ("not-a-record", "input", "00" * 16, "stray")])
    assert query.timeline(store, "T-8")[0]["input"] == "forge me"
    store.client.command("ALTER TABLE aitrail.payloads UPDATE content = 'forged'"
                         " WHERE record_id = {r:String} AND name = 'input'"
                         " SETTINGS mutations_sync = 2", parameters={"r": rid})
    events = query.timeline(store, "T-8")
    assert (events[0]["input"], events[0]["output"]) == (query.TAMPERED, "x")
    monkeypatch.undo()
    assert events == _by_key(store, "T-8")
