"""The people table (store/schema.py, people_ddl): a reviewer search read from it gives
the same records and totals as the same search of the envelopes; the materialized view
fills it in the ledger's own insert; a store made before it gets it filled at the next
ensure_schema; a day that differs from the envelopes (rows lost or stray) is derived
again at start-up. Also the timeline's task models taken from its own rows equal the
engine's join, and a newest-first page read through recent windows is the whole
period's. One scratch embedded store, sealed through the real ledger."""

from __future__ import annotations

import time

import pytest
from support import make_record

from aitrail_collector.ledger.group_commit import Ledger
from aitrail_collector.store import queries as query
from aitrail_collector.store import schema
from aitrail_collector.store.client import Store

DAY_NS = 86_400 * 10**9


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    s = Store(f"chdb://{tmp_path_factory.mktemp('people')}/data")
    s.ensure_schema()
    ledger = Ledger(s, "main")
    now = time.time_ns()
    records = []
    for n in range(12):  # rev-a over 12 days, every other one a reject
        records.append(make_record("review", task_id=f"T-{n}", **{
            "review.reviewer_id": "rev-a", "review.decision": "reject" if n % 2 else "approve"}))
        records[-1].start_time_unix_nano = now - (12 - n) * DAY_NS
    extra = [
        make_record("model_call", task_id="T-x", **{"model_call.model": "m1",
                                                    "model_call.prompt_version": "v1"}),
        make_record("review", task_id="T-x", **{"review.reviewer_id": "Rev-A2",
                                                "review.decision": "reject"}),
        make_record("escalation", task_id="T-x", **{"escalation.from_reviewer": "rev-a",
                                                    "escalation.to_reviewer": "rev-b",
                                                    "escalation.reason": "limit"}),
        # Someone escalating to themselves: named twice, listed once.
        make_record("escalation", task_id="T-y", **{"escalation.from_reviewer": "rev-c",
                                                    "escalation.to_reviewer": "rev-c",
                                                    "escalation.reason": "again"}),
        make_record("model_call", task_id="T-x", **{"model_call.model": "m2",
                                                    "model_call.prompt_version": "v2"}),
        make_record("review", task_id="T-x", **{"review.reviewer_id": "rev-a",
                                                "review.decision": "approve"}),
        make_record("resolution", task_id="T-x"),
    ]
    for n, rec in enumerate(extra):
        rec.start_time_unix_nano = now - 3600 * 10**9 + n * 1000
    assert ledger.append(records + extra).accepted == len(records) + len(extra)
    yield s
    s.close()


SEARCHES = [
    {"reviewer": "rev-a"},
    {"reviewer": "rev-a", "order": "desc", "limit": "5"},
    {"reviewer": "rev-a", "order": "desc", "limit": "3", "offset": "2"},
    {"reviewer": "rev-a", "since": "5d"},
    {"reviewer": "rev-a", "since": "20d", "until": "2d", "sort": "decision"},
    {"reviewer": "rev-a", "type": ["escalation"]},
    {"reviewer": "rev-b"},
    {"reviewer": "rev-c"},
    {"reviewer": "nobody"},
    {"reviewer": " REV-A", "prefix": True},
    {"reviewer": "rev-a", "prefix": True, "order": "desc", "limit": "4"},
    {"reviewer": "rev-", "prefix": True, "task": "T-x"},
]


def _answers(store: Store, params: dict, people: bool) -> tuple[list, int, str]:
    args = {k: v for k, v in params.items() if k != "type"}
    f = query.Filters.parse(types=params.get("type", ()), **args)
    store._people = people
    try:
        return query.search(store, f), query.count(store, f), query._select(f, people)[0]
    finally:
        store._people = None


@pytest.mark.parametrize("params", SEARCHES, ids=lambda p: ",".join(f"{k}={v}" for k, v in p.items()))
def test_a_reviewer_search_from_the_people_table_is_the_search_of_the_envelopes(store, params):
    found, total, sql = _answers(store, params, people=True)
    assert "FROM aitrail.people" in sql
    assert (found, total) == _answers(store, params, people=False)[:2]


def test_the_people_table_holds_each_named_person_once_per_record(store):
    assert store.has_people()
    assert [r["event_type"] for r in _answers(store, {"reviewer": "rev-c"}, True)[0]] == [
        "escalation"]
    assert _answers(store, {"reviewer": "rev-a"}, True)[1] == 14  # 13 reviews, 1 escalation
    assert _answers(store, {"reviewer": "rev-a", "prefix": True}, True)[1] == 15  # + Rev-A2


def test_a_day_that_differs_from_the_envelopes_is_derived_again(store):
    before = _answers(store, {"reviewer": "rev-a"}, True)[:2]
    day = store.query("SELECT toString(toDate(min(start_time))) FROM aitrail.people").result_rows[0][0]
    # A crash between the insert's two writes: the day's index rows lost; and a stray one.
    store.client.command("DELETE FROM aitrail.people WHERE toDate(start_time) = {d:Date}",
                         parameters={"d": day})
    store.client.command("INSERT INTO aitrail.people (person, seq, chain_id, start_time)"
                         " VALUES ('rev-a', 999, 'main', now64(9))")
    assert _answers(store, {"reviewer": "rev-a"}, True)[:2] != before
    today = store.query("SELECT toString(today())").result_rows[0][0]
    assert schema.repair_people(store.client) == sorted({day, today})
    assert _answers(store, {"reviewer": "rev-a"}, True)[:2] == before
    assert schema.repair_people(store.client) == []


def test_a_store_made_before_the_people_table_gets_it_filled(store):
    before = _answers(store, {"reviewer": "rev-a", "prefix": True}, True)[:2]
    store.client.command("DROP TABLE aitrail.people_mv")
    store.client.command("DROP TABLE aitrail.people")
    fresh = Store(store.dsn)  # the CLI opening such a store directly: searched as before
    assert not fresh.has_people()
    f = query.Filters.parse(reviewer="rev-a", prefix=True)
    assert "aitrail.people " not in query._select(f, fresh.has_people())[0]
    assert (query.search(fresh, f), query.count(fresh, f)) == before
    store.ensure_schema()
    assert Store(store.dsn).has_people()
    assert _answers(store, {"reviewer": "rev-a", "prefix": True}, True)[:2] == before


def test_a_timelines_task_models_from_its_own_rows_equal_the_engines_join(store):
    f = query.timeline_filters("T-x")
    rows = store.query(*query._select(f)).result_rows
    starts = [r[query._START] for r in rows]
    own, joined = ([query._row_to_record(r) for r in rows] for _ in range(2))
    query._attach_task_models(store, own, starts, whole=True)
    query._attach_task_models(store, joined, starts, whole=False)
    assert query._whole_tasks(f)
    assert [(r["task_model"], r["task_prompt_version"]) for r in own] == [
        (r["task_model"], r["task_prompt_version"]) for r in joined]
    assert [r["task_model"] for r in own if r["event_type"] == "review"] == ["m1", "m2"]


@pytest.mark.parametrize("limit,offset,since", [(1, 0, None), (3, 0, None), (5, 2, None),
                                                (50, 0, None), (2, 0, "20d"), (4, 1, "3d")])
def test_a_newest_first_page_read_through_recent_windows_is_the_whole_periods(
        store, limit, offset, since):
    # The records lie over 12 days: some pages fill from the newest day, some need the
    # week or the month, some the whole period.
    f = query.Filters.parse(limit=str(limit), offset=str(offset), order="desc",
                            since=since, types=["review", "escalation"])
    assert query._page_rows(store, f) == store.query(*query._select(f)).result_rows


def test_the_people_table_holds_no_hash_and_a_search_shows_each_records_own(store):
    cols = [r[0] for r in store.query("SELECT name FROM system.columns WHERE database = 'aitrail'"
                                      " AND table = 'people'").result_rows]
    assert not {"prev_hash", "leaf_hash", "chain_hash"} & set(cols)
    f = query.Filters.parse(reviewer="rev-", prefix=True, limit=None)
    streamed, from_envelopes = [], []
    for people, out in ((True, streamed), (False, from_envelopes)):
        store._people = people
        try:
            out.extend(query.iter_records(store, f, chunk=4))  # several lookups
        finally:
            store._people = None
    sealed = {(c, int(q)): (bytes(leaf).hex(), bytes(chain).hex()) for c, q, leaf, chain in
              store.query("SELECT chain_id, seq, leaf_hash, chain_hash FROM aitrail.envelopes"
                          ).result_rows}
    assert len(streamed) == 16
    assert all((r["leaf_hash"], r["chain_hash"]) == sealed[(r["chain_id"], r["seq"])]
               for r in streamed)
    assert streamed == from_envelopes


def test_a_people_row_whose_envelope_is_missing_says_so(store):
    # A people row of no envelope row (the index outliving its day part): its hashes
    # read as NO_ENVELOPE, not as empty strings, and the other rows keep theirs.
    store.client.command(
        "INSERT INTO aitrail.people (person, seq, chain_id, task_id, event_type, start_time)"
        " VALUES ('rev-z', 999, 'main', 'T-z', 'review', now64(9))")
    try:
        found = query.search(store, query.Filters.parse(reviewer="rev-z"))
        assert [(r["seq"], r["leaf_hash"], r["chain_hash"]) for r in found] == [
            (999, query.NO_ENVELOPE, query.NO_ENVELOPE)]
        assert all(len(r["leaf_hash"]) == 64
                   for r in query.search(store, query.Filters.parse(reviewer="rev-a")))
    finally:
        store.client.command("DELETE FROM aitrail.people WHERE person = 'rev-z'")


def test_a_people_table_older_than_an_envelope_column_gains_it_and_copies_it(store):
    # A later envelope version adds a column to the envelopes (add_version_columns).
    # A people table and view made before it must follow: the view names its columns,
    # so it would go on copying the old ones and searches would show the new field
    # empty. Simulated with a column of today: the table and view without it.
    store.client.command("DROP TABLE aitrail.people_mv")
    store.client.command("ALTER TABLE aitrail.people DROP COLUMN time_spent_ms")
    store.client.command(schema.PEOPLE_VIEW.replace(", time_spent_ms,", ","))
    store.ensure_schema()
    rec = make_record("review", task_id="T-new-column", **{
        "review.reviewer_id": "rev-new", "review.decision": "approve",
        "review.time_spent_ms": 1234})
    assert Ledger(store, "main").append([rec]).accepted == 1
    stored = store.query("SELECT time_spent_ms FROM aitrail.people WHERE person = 'rev-new'")
    assert stored.result_rows == [(1234,)]
    f = query.Filters.parse(reviewer="rev-new")
    assert [r["time_spent_ms"] for r in query.search(store, f)] == [1234]


@pytest.mark.parametrize("people", [True, False])
def test_a_page_without_hashes_is_the_page_less_the_two_hashes(store, people):
    # The console's table shows no hash: its page skips the people rows' hash lookup,
    # and its records are the full page's without leaf_hash and chain_hash, nothing else.
    f = query.Filters.parse(reviewer="rev-", prefix=True, limit="5", order="desc")
    store._people = people
    try:
        full = query.search(store, f, payloads=False, task_models=False)
        bare = query.search(store, f, payloads=False, task_models=False, hashes=False)
    finally:
        store._people = None
    assert len(full) == 5 and all(len(r["leaf_hash"]) == 64 for r in full)
    assert bare == [{k: v for k, v in r.items() if k not in ("leaf_hash", "chain_hash")}
                    for r in full]
