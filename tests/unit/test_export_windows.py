"""The CSV export in windows of days (store/export.py): one engine query per span of
whole days, back to back, must write exactly the one-query export, which is exactly
what csv_lines writes for the same records, in both layouts and both orders, with the
filters' own bounds inside a day; a review's task model call may lie in an earlier
window. One scratch embedded store over four days, sealed through the real ledger."""

from __future__ import annotations

import time
from datetime import datetime, timezone

import pytest
from support import make_record

from aitrail.record.csv_format import csv_lines
from aitrail_collector.ledger.group_commit import Ledger
from aitrail_collector.store import export
from aitrail_collector.store import queries as query
from aitrail_collector.store.client import Store

DAY = 86_400 * 10**9
# Noon UTC, four days ago: the records fall on four calendar days, the last yesterday.
START = (time.time_ns() // DAY - 4) * DAY + DAY // 2


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    s = Store(f"chdb://{tmp_path_factory.mktemp('export-windows')}/data")
    s.ensure_schema()
    records = []
    for day in range(4):
        for k in range(3):
            task = f"T-w{day}-{k}"
            records += [
                make_record("model_call", task_id=task, **{
                    "model_call.model": f"=m{day}", "model_call.prompt_version": f"v{k}",
                    "model_call.input": f"prompt {day}, {k}", "model_call.output": "+1"}),
                make_record("review", task_id=task, **{
                    "review.reviewer_id": "rev-w", "review.decision": "modify",
                    "review.modified_output": 'a "fixed" one', "review.time_spent_ms": 1250,
                    "review.rationale.text": "why,\r\nbecause"}),
            ]
        # A review of a task whose model call was made the day before (or never).
        records.append(make_record("review", task_id=f"T-w{day - 1}-0", **{
            "review.reviewer_id": "rev-late", "review.decision": "approve"}))
    for n, rec in enumerate(records):
        day = n // 7
        rec.start_time_unix_nano = START + day * DAY + (n % 7) * 3_600 * 10**9
    assert Ledger(s, "main").append(records).accepted == len(records)
    yield s
    s.close()


def _at(ns: int) -> datetime:
    return datetime.fromtimestamp(ns / 1e9, timezone.utc)


def _day(ns: int) -> str:
    return _at(ns - ns % DAY).isoformat()


def test_windows_are_spans_of_whole_days_in_the_exports_order(store):
    f = query.Filters(limit=None)
    spans = export.windows(store, f, rows=8)
    assert len(spans) == 4  # seven records a day: one day per window
    assert spans[0].since is None and spans[-1].until is None
    assert [s.until for s in spans[:-1]] == [s.since for s in spans[1:]]
    assert all(s.since.timestamp() % 86_400 == 0 for s in spans[1:])
    assert len(export.windows(store, f, rows=15)) == 2  # two days fit in 15 rows
    desc = export.windows(store, query.Filters(limit=None, order="desc"), rows=8)
    assert [(s.since, s.until) for s in desc] == [(s.since, s.until) for s in spans[::-1]]
    # Another order, or a limit, is one query.
    assert len(export.windows(store, query.Filters(limit=None, sort="event_type"), 8)) == 1
    assert len(export.windows(store, query.Filters(limit=5), rows=8)) == 1
    assert export.windows(store, query.Filters(limit=None, task="nothing"), rows=8) == []


@pytest.mark.parametrize("columns", ["compact", "full"])
@pytest.mark.parametrize("order", ["asc", "desc"])
def test_the_windows_back_to_back_write_the_python_csv(store, columns, order):
    # A window a day; the filters' own bounds fall inside the first and the last day.
    f = query.Filters.parse(limit=None, order=order,
                            since=_at(START + 2 * 3_600 * 10**9).isoformat(),
                            until=_at(START + 3 * DAY + 3 * 3_600 * 10**9).isoformat())
    expected = "".join(csv_lines(query.search(store, f), columns)).encode("utf-8")
    assert expected.count(b"\r\n") > 20
    assert b"".join(export.export_csv(store, f, columns, window_rows=8)) == expected
    if order == "desc":
        return
    everything = query.Filters(limit=None)
    got = b"".join(export.export_csv(store, everything, columns, window_rows=8))
    assert got == "".join(csv_lines(query.search(store, everything), columns)).encode("utf-8")
    # The late review of day 1 carries day 0's model call, from the window before it.
    late = [line for line in got.split(b"\r\n") if b"rev-late" in line]
    assert len(late) == 4 and sum(b"'=m0" in line for line in late) == 1


def test_an_empty_export_is_its_header(store):
    f = query.Filters.parse(limit=None, since=_day(START + 10 * DAY))
    assert b"".join(export.export_csv(store, f, "compact")) == \
        "".join(csv_lines([], "compact")).encode("utf-8")
