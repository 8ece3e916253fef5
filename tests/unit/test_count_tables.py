"""The count tables (store/schema.py, COUNT_TABLES): a task's timeline and search read
through the task -> day table, and a total summed from the per-day, per-type counts,
are what the same reads of the envelopes alone give, record for record: for tasks over
several days (with a day between without records), a task id that is a prefix of
another, the collector's own reads hidden, a task's payloads erased, a day dropped by
the TTL, and count rows lost or stray. The views fill both tables in the ledger's own
insert; a store made before them gets them filled at the next ensure_schema, and a day
that differs from the envelopes is derived again at start-up. One scratch embedded
store, sealed through the real ledger."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

import pytest
from support import make_record

from aitrail.record.event_types import COLLECTOR_SERVICE
from aitrail_collector.ledger import erasure
from aitrail_collector.ledger.group_commit import Ledger
from aitrail_collector.store import queries as query
from aitrail_collector.store import schema
from aitrail_collector.store.client import Store

DAY_NS = 86_400 * 10**9
TASKS = ("T-1", "T-10", "T-2", "T-3", "T-gone", "T-none")


def _at(rec, ns: int):
    rec.start_time_unix_nano = rec.end_time_unix_nano = ns
    return rec


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    s = Store(f"chdb://{tmp_path_factory.mktemp('counts')}/data")
    s.ensure_schema()
    ledger = Ledger(s, "main")
    now = time.time_ns()
    records = []
    for day in (5, 3, 1):  # T-1 on three days, none on days 4 and 2
        records += [_at(make_record("task_created", task_id="T-1"), now - day * DAY_NS),
                    _at(make_record("model_call", task_id="T-1", **{
                        "model_call.model": f"m{day}", "model_call.prompt_version": "v"}),
                        now - day * DAY_NS + 10),
                    _at(make_record("review", task_id="T-1", **{
                        "review.reviewer_id": "rev-a", "review.decision": "approve"}),
                        now - day * DAY_NS + 20)]
    for n in range(4):  # T-10 (T-1 is a prefix of it), the same days and today
        records.append(_at(make_record("review", task_id="T-10", **{
            "review.reviewer_id": "rev-b", "review.decision": "reject",
            "review.rationale.text": f"note {n}"}), now - n * DAY_NS - 30))
    records += [_at(make_record("escalation", task_id="T-2", **{
        "escalation.from_reviewer": "rev-a", "escalation.to_reviewer": "rev-c",
        "escalation.reason": "limit"}), now - 2 * DAY_NS - 40),
        _at(make_record("resolution", task_id="T-2"), now - 40)]
    # T-3's review on day -6 reviews its model call of day -8 (none on day -7).
    records += [_at(make_record("model_call", task_id="T-3", **{
        "model_call.model": "m-early", "model_call.prompt_version": "v"}), now - 8 * DAY_NS),
        _at(make_record("review", task_id="T-3", **{
            "review.reviewer_id": "rev-d", "review.decision": "approve"}), now - 6 * DAY_NS)]
    # A day the TTL will drop (the oldest): T-gone only there, T-1 there too.
    records += [_at(make_record("review", task_id="T-gone", **{
        "review.reviewer_id": "rev-a", "review.decision": "reject"}), now - 9 * DAY_NS),
        _at(make_record("task_created", task_id="T-1"), now - 9 * DAY_NS + 5)]
    assert ledger.append(records).accepted == len(records)
    for task in ("T-1", "T-2"):  # the collector's reads of a task: not in its timeline
        own = make_record("data_access", task_id=task, service=COLLECTOR_SERVICE, **{
            "data_access.actor": "ops", "data_access.resource": f"timeline:{task}",
            "data_access.purpose": "api read"})
        ledger.append_own(own)
    yield s
    s.close()


def _with(store: Store, counts: bool, read):
    store._counts = counts
    try:
        return read()
    finally:
        store._counts = None


def _both(store: Store, read):
    """(through the count tables, from the envelopes alone)."""
    return _with(store, True, read), _with(store, False, read)


def _task_reads(store: Store, task: str):
    page = query.Filters.parse(task=task, limit="50", order="desc")
    return (query.timeline(store, task), query.search(store, page), query.count(store, page),
            query.count(store, query.Filters.parse(task=task, types=["review"], since="4d")))


def test_the_views_fill_both_tables_in_the_ledgers_insert(store):
    assert store.has_counts()
    days = store.query("SELECT task_id, toString(day), sum(n) FROM aitrail.task_days"
                       " WHERE task_id = 'T-1' GROUP BY task_id, day ORDER BY day").result_rows
    assert [n for _, _, n in days] == [1, 3, 3, 3, 1]  # days -9, -5, -3, -1; today its read
    total = store.query("SELECT sum(n) FROM aitrail.type_counts").result_rows[0][0]
    assert total == store.query("SELECT count() FROM aitrail.envelopes").result_rows[0][0]


@pytest.mark.parametrize("task", TASKS)
def test_a_task_read_through_its_days_is_the_read_of_the_envelopes(store, task):
    sql = query._select(query.timeline_filters(task), False, True)[0]
    assert "aitrail.task_days" in sql
    through, alone = _both(store, lambda: _task_reads(store, task))
    assert through == alone
    if task == "T-1":
        timeline = through[0]
        assert len(timeline) == 10 and "data_access" not in {r["event_type"] for r in timeline}
        assert [r["task_model"] for r in timeline if r["event_type"] == "review"] == [
            "m5", "m3", "m1"]


def test_a_reviews_model_call_of_an_earlier_day_is_found_through_the_tasks_days(store):
    # The task -> day table narrows the model-call lookup to every day of the task,
    # not only the days of the reviews on the page.
    assert "aitrail.task_days" in query.task_model_sql(True)
    assert "aitrail.task_days" not in query.task_model_sql(False)
    f = query.Filters.parse(reviewer="rev-d", limit="50", order="desc")
    through, alone = _both(store, lambda: query.search(store, f, payloads=False))
    assert through == alone
    assert [(r["task_id"], r["task_model"]) for r in through] == [("T-3", "m-early")]
    rows = list(_with(store, True, lambda: query.iter_records(store, f)))
    assert [r["task_model"] for r in rows] == ["m-early"]


TOTALS = [
    {"type": ["review"]},
    {"type": ["review"], "since": "7d"},
    {"type": ["review", "escalation"], "since": "4d", "until": "1d"},
    {"since": "30d", "activity": "hide"},
    {"activity": "only"},
    {"type": ["data_access"]},
    {"service": COLLECTOR_SERVICE},
    {"service": "raw-client", "since": "3d"},
    {"type": ["review"], "since": "2000-01-01", "until": "2000-01-02"},
    {"type": ["review"], "until": "2000-01-02"},
]


@pytest.mark.parametrize("params", TOTALS, ids=lambda p: ",".join(f"{k}={v}" for k, v in p.items()))
def test_a_total_from_the_day_counts_is_the_count_of_the_envelopes(store, params):
    args = {k: v for k, v in params.items() if k != "type"}
    f = query.Filters.parse(types=params.get("type", ()), **args)
    assert query._counted(f)
    through, alone = _both(store, lambda: query.count(store, f))
    assert through == alone == query._count_by_day(store, f)


def test_a_total_over_whole_days_is_summed_from_the_counts_alone(store):
    # A period from midnight to midnight has no partial day: every day of it is summed
    # from type_counts (the same total as the envelopes'), none read from the envelopes.
    today = datetime.now(timezone.utc).date()
    f = query.Filters.parse(types=["review", "resolution"], since=str(today - timedelta(days=4)),
                            until=str(today))
    assert query._edge_days(f) == []
    through, alone = _both(store, lambda: query.count(store, f))
    assert through == alone == 5  # T-1's reviews of days -3, -1; T-10's of -1..-3; T-2's none


def test_the_page_search_and_total_of_every_console_preset_are_unchanged(store):
    presets = [{"task": "T-1"}, {"reviewer": "rev-a", "since": "30d"},
               {"type": ["review"], "since": "7d"}, {"since": "1d"}, {"since": "7d"}, {},
               {"type": ["review"]}]
    for params in presets:
        args = {k: v for k, v in params.items() if k != "type"}
        f = query.Filters.parse(types=params.get("type", ()), limit="50", order="desc", **args)
        read = lambda: (query.search(store, f, payloads=False), query.count(store, f))  # noqa: E731
        through, alone = _both(store, read)
        assert through == alone


def test_an_erased_tasks_timeline_through_its_days_shows_the_erasure(store):
    ledger = Ledger(store, "main")
    erasure.erase(store, lambda c: ledger, task="T-10", reason="ticket 9", actor="dpo")
    through, alone = _both(store, lambda: _task_reads(store, "T-10"))
    assert through == alone
    assert {r["rationale"] for r in through[0] if r["event_type"] == "review"} == {query.ERASED}


def test_count_rows_lost_or_stray_give_the_same_answers_and_are_derived_again(store):
    f = query.Filters.parse(types=["review"])
    before = _both(store, lambda: (query.count(store, f), _task_reads(store, "T-1")))
    assert before[0] == before[1]
    day = store.query("SELECT toString(toDate(start_time)) FROM aitrail.envelopes"
                      " WHERE task_id = 'T-1' AND event_type != 'data_access'"
                      " ORDER BY start_time DESC LIMIT 1").result_rows[0][0]
    # A crash between the insert's writes: the day's count rows lost; and a stray row.
    for table in schema.COUNT_TABLES:
        store.client.command(f"DELETE FROM aitrail.{table} WHERE day = {{d:Date}}",
                             parameters={"d": day})
    store.client.command("INSERT INTO aitrail.type_counts VALUES"
                         " (today() - 2, 'review', 'raw-client', 5)")
    # The total checks each day first; the timeline misses the day until the repair.
    assert _with(store, True, lambda: query.count(store, f)) == before[1][0]
    assert _with(store, True, lambda: _task_reads(store, "T-1")) != before[1][1]
    today = store.query("SELECT toString(today())").result_rows[0][0]
    two_ago = store.query("SELECT toString(today() - 2)").result_rows[0][0]
    repaired = schema.repair_counts(store.client)
    assert repaired == {"task_days": [day], "type_counts": sorted({day, two_ago})}
    assert today not in repaired["task_days"]
    assert _both(store, lambda: (query.count(store, f), _task_reads(store, "T-1"))) == before
    assert schema.repair_counts(store.client) == {"task_days": [], "type_counts": []}


def test_a_day_dropped_by_the_ttl_leaves_the_answers_exact(store):
    # The TTL drops whole day parts of the envelopes; the count tables keep their rows
    # of that day a day longer (and merges drop them later still).
    day = store.query("SELECT toString(toDate(min(start_time))) FROM aitrail.envelopes"
                      ).result_rows[0][0]
    store.client.command("ALTER TABLE aitrail.envelopes DROP PARTITION {d:String}",
                         parameters={"d": day})
    assert store.query("SELECT sum(n) FROM aitrail.task_days WHERE task_id = 'T-gone'"
                       ).result_rows[0][0] == 1
    for task in ("T-gone", "T-1"):
        through, alone = _both(store, lambda: _task_reads(store, task))  # noqa: B023
        assert through == alone
    assert _task_reads(store, "T-gone")[0] == []
    for params in TOTALS:
        args = {k: v for k, v in params.items() if k != "type"}
        f = query.Filters.parse(types=params.get("type", ()), **args)
        through, alone = _both(store, lambda: query.count(store, f))  # noqa: B023
        assert through == alone


def test_a_store_made_before_the_count_tables_gets_them_filled(store):
    f = query.Filters.parse(types=["review"], since="4d")
    before = _both(store, lambda: (query.count(store, f), _task_reads(store, "T-1")))
    for table in schema.COUNT_TABLES:
        store.client.command(f"DROP TABLE aitrail.{table}_mv")
        store.client.command(f"DROP TABLE aitrail.{table}")
    fresh = Store(store.dsn)  # the CLI opening such a store directly: read as before
    assert not fresh.has_counts()
    assert "task_days" not in query._select(query.timeline_filters("T-1"), False,
                                            fresh.has_counts())[0]
    assert (query.count(fresh, f), _task_reads(fresh, "T-1")) == before[1]
    store.ensure_schema()
    assert Store(store.dsn).has_counts()
    assert _both(store, lambda: (query.count(store, f), _task_reads(store, "T-1"))) == before


@pytest.mark.parametrize("task", ["T-1", "t-1", "T-", "T-g", "x"])
def test_a_task_prefix_search_through_the_days_is_the_search_of_the_envelopes(store, task):
    f = query.Filters.parse(task=task, prefix=True, limit="50", order="desc", activity="hide")
    assert "aitrail.task_days" in query._select(f, False, True)[0]
    read = lambda: (query.search(store, f, payloads=False), query.count(store, f))  # noqa: E731
    through, alone = _both(store, read)
    assert through == alone


@pytest.mark.parametrize("params", [
    {"task": "T-1", "limit": "50"}, {"task": "T-1", "limit": "3"},
    {"task": "T-1", "limit": "3", "offset": 9}, {"task": "T-1", "limit": "3", "offset": 30},
    {"task": "nothing", "limit": "5"}, {"types": ["review"], "limit": "2", "order": "desc"},
    {"reviewer": "rev-a", "limit": "100"}, {"limit": None}])
def test_a_pages_total_is_the_count_of_its_search(store, params):
    f = query.Filters(**{k: v for k, v in params.items() if k != "limit"},
                      limit=int(params["limit"]) if params["limit"] else None)
    page = query.search(store, f, payloads=False)
    assert query.page_total(store, f, page) == query.count(store, f)
