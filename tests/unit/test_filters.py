"""Search filters at their edges: times the store cannot hold and limits that would
mean "everything" are refused with a message naming the filter."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from aitrail_collector.store.queries import FilterError, Filters, _ns

INT64_MAX = 2**63 - 1


@pytest.mark.parametrize("name", ["since", "until"])
@pytest.mark.parametrize("value", ["2262-04-12", "2262-04-11T23:47:17Z", "9999-12-31T23:59:59",
                                   "1969-12-31T23:59:59Z", "1900-01-01", "0001-01-01",
                                   "999999999d", "99999999999d", "9999999999999w",
                                   "2262-04-11T23:59:00-23:59"])
def test_times_the_store_cannot_hold_are_refused_naming_the_filter(name, value):
    with pytest.raises(FilterError) as err:
        Filters.parse(**{name: value})
    message = str(err.value)
    assert message.startswith(f"{name} {value!r}")
    assert "1970-01-01" in message and "2262-04-11" in message


@pytest.mark.parametrize("value", ["1970-01-01", "1970-01-01T00:00:00Z", "2262-04-11",
                                   "2262-04-11T23:47:16Z", "0s", "20000d"])
def test_times_at_the_edges_are_taken_and_fit_int64_nanoseconds(value):
    f = Filters.parse(since=value, until="2262-04-11T23:47:16.854775Z")
    assert 0 <= _ns(f.since) <= _ns(f.until) <= INT64_MAX
    assert f.where()[1]["until"] <= INT64_MAX


def test_the_latest_time_taken_is_within_int64_nanoseconds():
    f = Filters.parse(until="2262-04-11T23:47:16.854775Z")
    assert f.until == datetime(2262, 4, 11, 23, 47, 16, 854775, tzinfo=timezone.utc)
    assert _ns(f.until) <= INT64_MAX


@pytest.mark.parametrize("value", ["all", "0", 0, "ALL"])
def test_limit_all_and_zero_are_refused(value):
    with pytest.raises(FilterError, match=r"^limit .*1\.\.10000"):
        Filters.parse(limit=value)


def test_no_limit_is_only_for_callers_that_stream_everything():
    assert Filters.parse(limit=None).limit is None  # the export: it does not take limit
    assert Filters.parse().limit == 100
    assert Filters.parse(limit="").limit == 100


def test_a_model_call_variant_filter_binds_empty_values_and_refuses_other_columns():
    # A chart's bar for prompt '(none)@v7' has prompt_template_id '': a value, bound.
    f = Filters.parse(variant=[("prompt_template_id", ""), ("prompt_version", "v7")])
    where, params = f.where()
    assert "v_attributed_reviews" in where
    assert params["variant_prompt_template_id"] == "" and params["variant_prompt_version"] == "v7"
    with pytest.raises(FilterError, match="'decision': not a model call variant column"):
        Filters.parse(variant=[("decision", "modify")])
