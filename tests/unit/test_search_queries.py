"""The search's id filters in the engine (store/queries.py): case-insensitive, trimmed
prefixes of task, reviewer and request ids in prefix mode (the console), exact
otherwise; the collector's own reads as a filter of their own ("activity log"); and why
an empty search is empty, with the nearest id. One scratch embedded store, sealed
through the real ledger, closed at the end of the module (one engine path per
process)."""

from __future__ import annotations

import csv
import io
import re
import time

import pytest
from support import make_record

from aitrail.record.csv_format import COLUMN_SETS, RESULT_COLUMNS, csv_lines
from aitrail_collector.errors import StoreError
from aitrail_collector.ledger.group_commit import Ledger
from aitrail_collector.store import queries as query
from aitrail_collector.store.client import Store
from aitrail_collector.store.export import export_csv


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    s = Store(f"chdb://{tmp_path_factory.mktemp('search-queries')}/data")
    s.ensure_schema()
    ledger = Ledger(s, "main")
    t0 = time.time_ns() - 10**9
    records = [
        make_record("review", task_id="T-00053", request_id="Req-Alpha-1",
                    **{"review.reviewer_id": "Rev-Grace", "review.decision": "approve"}),
        make_record("review", task_id="T-000530", **{"review.reviewer_id": "rev-bob",
                                                     "review.decision": "reject"}),
        make_record("escalation", task_id="T-00054", **{"escalation.from_reviewer": "rev-bob",
                                                        "escalation.to_reviewer": "REV-GRACE2",
                                                        "escalation.reason": "limit"}),
        make_record("resolution", task_id="t-lower-9"),
        # A task reviewed twice, each review of the model call before it (for the CSV).
        make_record("model_call", task_id="T-csv-1", **{"model_call.model": "triage-llm",
                                                        "model_call.prompt_version": "v7"}),
        make_record("review", task_id="T-csv-1", **{"review.reviewer_id": "rev-ann",
                                                    "review.decision": "reject",
                                                    "review.time_spent_ms": 1500}),
        make_record("model_call", task_id="T-csv-1", **{"model_call.model": "@triage-2",
                                                        "model_call.prompt_version": "v8"}),
        make_record("review", task_id="T-csv-1", **{"review.reviewer_id": "rev-ann",
                                                    "review.decision": "approve",
                                                    "review.time_spent_ms": 42000}),
        make_record("review", task_id="T-csv-2", **{"review.reviewer_id": "rev-ann",
                                                    "review.decision": "approve",
                                                    "review.time_spent_ms": 1230}),
        make_record("data_access", task_id="T-00053", service="aitrail-collector",
                    **{"data_access.actor": "audrey", "data_access.resource": "timeline:T-00053"}),
    ]
    for n, rec in enumerate(records):
        rec.start_time_unix_nano = t0 + n * 1000
    assert ledger.append_own(records[-1]) is not None
    assert ledger.append(records[:-1]).accepted == len(records) - 1
    yield s
    s.close()


def _tasks(store, **filters) -> list[str]:
    f = query.Filters.parse(limit="100", **filters)
    found = query.search(store, f, payloads=False)
    assert query.count(store, f) == len(found)
    return sorted(r["task_id"] for r in found)


def test_prefix_mode_matches_task_ids_case_insensitively_after_trimming(store):
    assert _tasks(store, task="  t-0005", prefix=True, activity="include") == [
        "T-00053", "T-00053", "T-000530", "T-00054"]
    assert _tasks(store, task="t-00053 ", prefix=True, activity="hide") == ["T-00053",
                                                                           "T-000530"]
    assert _tasks(store, task="T-LOWER", prefix=True) == ["t-lower-9"]
    # Exact mode (the API, a timeline) is unchanged: an id may hold a space.
    assert _tasks(store, task="t-00053") == []
    assert _tasks(store, task=" T-00053 ") == []
    assert _tasks(store, task="T-00053", activity="hide") == ["T-00053"]


def test_prefix_mode_matches_reviewer_and_request_ids(store):
    # A reviewer named in an escalation's own columns is found too.
    assert _tasks(store, reviewer="rev-grace", prefix=True) == ["T-00053", "T-00054"]
    assert _tasks(store, reviewer="REV-B", prefix=True) == ["T-000530", "T-00054"]
    assert _tasks(store, request_id="req-alpha", prefix=True) == ["T-00053"]
    assert _tasks(store, request_id="req-alpha") == []


def test_the_collectors_reads_are_a_filter_of_their_own(store):
    assert _tasks(store, task="T-00053", activity="only") == ["T-00053"]
    assert _tasks(store, task="T-00053", activity="hide") == ["T-00053"]
    assert len(query.timeline(store, "T-00053")) == 1  # a read does not join the timeline
    # By default a task search stays the task's own records unless reads are asked for.
    assert _tasks(store, task="T-00053") == ["T-00053"]
    assert _tasks(store, task="T-00053", types=["data_access"]) == ["T-00053"]
    assert len(query.search(store, query.Filters.parse(), payloads=False)) == 10
    with pytest.raises(query.FilterError, match="activity 'some'"):
        query.Filters.parse(activity="some")


def test_case_variants_cover_every_spelling_and_stay_few():
    assert sorted(query.case_variants("t-1")) == ["T-1", "t-1"]
    assert len(query.case_variants("rev-grace")) == query.MAX_CASE_VARIANTS
    assert {v.lower() for v in query.case_variants("rev-grace")} == {"rev-g"}  # 16 spellings
    assert query.case_variants("Éa") == []  # a cased non-ASCII first: no key hint


def test_an_empty_search_says_which_id_matched_nothing_and_the_nearest(store):
    f = query.Filters.parse(task="t-00055", prefix=True)
    assert query.explain_empty(store, f) == \
        "no task id starts with 't-00055'; did you mean T-00053?"
    f = query.Filters.parse(reviewer="rev-zzzzzzzzzzzz", prefix=True)
    assert query.explain_empty(store, f) == "no reviewer id starts with 'rev-zzzzzzzzzzzz'."
    # The id exists: the period is why, not the id.
    f = query.Filters.parse(task="t-00053", prefix=True, since="2020-01-01",
                            until="2020-01-02")
    assert query.explain_empty(store, f) is None


def test_from_after_to_is_refused_clearly():
    with pytest.raises(query.FilterError, match="since is after until"):
        query.Filters.parse(since="2026-12-01", until="2026-11-24")


@pytest.mark.parametrize("columns", ["full", "compact"])
def test_the_engine_export_is_the_python_csv_in_both_column_sets(store, columns):
    f = query.Filters.parse(task="T-csv", prefix=True, limit=None)
    engine = b"".join(export_csv(store, f, columns))
    assert engine == "".join(csv_lines(query.search(store, f), columns)).encode("utf-8")
    rows = list(csv.DictReader(io.StringIO(engine.decode("utf-8"))))
    assert list(rows[0]) == list(COLUMN_SETS[columns])
    reviews = [r for r in rows if r["event_type"] == "review"]
    model, prompt = ("task_model", "task_prompt_version") if columns == "full" else (
        "model", "prompt_version")
    # Each review carries the model call it reviewed (the latest before it), formula-safe;
    # a review whose task has no model call carries none. Time spent is in seconds.
    assert [(r["task_id"], r[model], r[prompt], r["time_spent_s"]) for r in reviews] == [
        ("T-csv-1", "triage-llm", "v7", "1.5"), ("T-csv-1", "'@triage-2", "v8", "42"),
        ("T-csv-2", "", "", "1.23")]
    assert {r["time_spent_s"] for r in rows if r["event_type"] == "model_call"} == {""}
    if columns == "full":  # every column of before, in its place, then the derived ones
        assert list(rows[0])[:len(RESULT_COLUMNS)] == list(RESULT_COLUMNS)
        assert [r["time_spent_ms"] for r in reviews] == ["1500", "42000", "1230"]
        assert {r["model"] for r in reviews} == {""}
    else:
        assert "time_spent_ms" not in rows[0] and "leaf_hash" not in rows[0]


def test_the_embedded_engines_raw_bytes_arrive_block_by_block_not_held_whole(store):
    # The export's format (RawBLOB) is one clickhouse-connect's chDB backend would run
    # to the end and hand over whole: an export of millions of rows in memory, twice.
    # A result whose last row fails shows the difference: streamed, the blocks before
    # it arrive first; held whole, nothing would.
    sql = ("SELECT concat(toString(throwIf(number = 3000000, 'the last row')), '\\n')"
           " FROM numbers({n:UInt64})")
    got = []
    with pytest.raises(StoreError, match="the last row"):
        for chunk in store.stream_raw(sql, {"n": 3000001}, "RawBLOB"):
            got.append(chunk)
    assert got and b"".join(got).startswith(b"0\n0\n")
    # The store is usable after a stream that failed, and after one left unfinished.
    unfinished = store.stream_raw(sql, {"n": 3000000}, "RawBLOB")
    assert next(unfinished).startswith(b"0\n")
    unfinished.close()
    assert b"".join(store.stream_raw(sql, {"n": 3}, "RawBLOB")) == b"0\n0\n0\n"


def test_prefix_values_are_bound_never_written_into_the_sql():
    value = "' OR 1=1 --{task:String}"
    f = query.Filters.parse(task=value, reviewer=value, request_id=value, prefix=True)
    sql, params = f.where()
    assert "OR 1=1" not in sql and "{task:String}" not in sql
    assert set(re.findall(r"\{(\w+):\w+\}", sql)) == set(params)
    assert params["task_p"] == params["reviewer_p"] == params["request_id_p"] == value.strip()
