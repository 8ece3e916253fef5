"""Dashboard views over the ledger, and the queries the web console charts.

The views are plain SQL files in ``dashboards/sql/`` (one ``CREATE OR REPLACE
VIEW aitrail.<name>`` per file), so that teams running ClickHouse as a server can
read them, create them with clickhouse-client and chart them in Grafana
(``dashboards/grafana/aitrail.json`` selects from the same views).
``store.schema`` creates them, so every store has them; this module holds the
queries the console charts over them.

The views read ``aitrail.envelopes`` only, never ``aitrail.payloads``: no prompt,
output or rationale text reaches a dashboard. Days are UTC days of the records'
start_time. Each query below takes an inclusive period of days (``since`` ..
``until``), binds it as query parameters and returns plain lists and dicts
(days as ISO ``YYYY-MM-DD`` strings) that serialise to JSON as they are.
"""

from __future__ import annotations

from datetime import date, datetime, timezone
from typing import Any, Optional

from aitrail_collector.store.client import Store

# ---------------------------------------------------------------- console queries

# The period filter every query shares: both ends inclusive, whole UTC days.
_PERIOD = "day BETWEEN {since:Date} AND {until:Date}"

OVERRIDE_DAILY_SQL = (
    "SELECT day, decided, overrides, approve, reject, modify, undecided"
    f" FROM aitrail.v_override_daily WHERE {_PERIOD} ORDER BY day")

# Summing the daily counts keeps the rate of a period exact.
OVERRIDE_BY_MODEL_SQL = (
    "SELECT model, model_version, sum(decided), sum(overrides), sum(approve), sum(reject),"
    f" sum(modify) FROM aitrail.v_override_by_variant WHERE {_PERIOD}"
    " GROUP BY model, model_version ORDER BY model, model_version")
OVERRIDE_BY_MODEL_DAILY_SQL = (
    "SELECT day, model, model_version, sum(decided), sum(overrides), sum(approve),"
    f" sum(reject), sum(modify) FROM aitrail.v_override_by_variant WHERE {_PERIOD}"
    " GROUP BY day, model, model_version ORDER BY day, model, model_version")
OVERRIDE_BY_PROMPT_SQL = (
    "SELECT prompt_template_id, prompt_version, sum(decided), sum(overrides), sum(approve),"
    f" sum(reject), sum(modify) FROM aitrail.v_override_by_variant WHERE {_PERIOD}"
    " GROUP BY prompt_template_id, prompt_version ORDER BY prompt_template_id, prompt_version")
OVERRIDE_BY_PROMPT_DAILY_SQL = (
    "SELECT day, prompt_template_id, prompt_version, sum(decided), sum(overrides),"
    f" sum(approve), sum(reject), sum(modify) FROM aitrail.v_override_by_variant"
    f" WHERE {_PERIOD} GROUP BY day, prompt_template_id, prompt_version"
    " ORDER BY day, prompt_template_id, prompt_version")

# Percentiles do not add up across days: computed over the whole period from the
# per-review rows. quantileExact(q): the value at 0-based position floor(q * n).
REVIEW_TIME_PERCENTILES_SQL = (
    "SELECT reviewer_id, count(), quantileExact(0.5)(time_spent_ms),"
    " quantileExact(0.9)(time_spent_ms), quantileExact(0.99)(time_spent_ms)"
    f" FROM aitrail.v_review_times WHERE {_PERIOD} GROUP BY reviewer_id ORDER BY reviewer_id")

ESCALATIONS_DAILY_SQL = (
    "SELECT day, resolution_outcome, escalations FROM aitrail.v_escalations_daily"
    f" WHERE {_PERIOD} ORDER BY day, resolution_outcome")

# Over the whole ledger, per (model, version, prompt version): what the demo prints.
OVERRIDE_BY_VARIANT_SQL = (
    "SELECT model, model_version, prompt_version, sum(decided), sum(overrides), sum(approve),"
    " sum(reject), sum(modify) FROM aitrail.v_override_by_variant WHERE model != ''"
    " GROUP BY model, model_version, prompt_version"
    " ORDER BY prompt_version, model, model_version")

# Over a period, per variant of reviews attributed to a model call: which models went
# with which prompt versions (the console's check that the two can be told apart).
VARIANTS_IN_PERIOD_SQL = (
    "SELECT model, model_version, prompt_template_id, prompt_version, sum(decided)"
    f" FROM aitrail.v_override_by_variant WHERE {_PERIOD} AND model != ''"
    " GROUP BY model, model_version, prompt_template_id, prompt_version"
    " ORDER BY model, model_version, prompt_template_id, prompt_version")

VOLUME_BY_TYPE_SQL = (
    f"SELECT event_type, sum(records) AS n FROM aitrail.v_volume_daily WHERE {_PERIOD}"
    " GROUP BY event_type ORDER BY n DESC, event_type")
VOLUME_BY_TYPE_DAILY_SQL = (
    f"SELECT day, event_type, sum(records) FROM aitrail.v_volume_daily WHERE {_PERIOD}"
    " GROUP BY day, event_type ORDER BY day, event_type")


def _day(value: date) -> date:
    # A datetime is a date too; take its UTC day (naive means UTC, as elsewhere).
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            value = value.astimezone(timezone.utc)
        return value.date()
    if isinstance(value, date):
        return value
    raise TypeError(f"expected a date, not {type(value).__name__}")


def period_parameters(since: date, until: date) -> dict[str, date]:
    """The bound parameters of every console query: an inclusive day range."""
    since, until = _day(since), _day(until)
    if since > until:
        raise ValueError(f"since {since} is after until {until}")
    return {"since": since, "until": until}


def _rows(store: Store, sql: str, since: date, until: date) -> list[tuple]:
    return store.query(sql, period_parameters(since, until)).result_rows


def _rate(overrides: int, decided: int) -> Optional[float]:
    return overrides / decided if decided else None


def _counts(decided: Any, overrides: Any, approve: Any, reject: Any,
            modify: Any) -> dict[str, Any]:
    d, o = int(decided), int(overrides)
    return {"decided": d, "overrides": o, "approve": int(approve), "reject": int(reject),
            "modify": int(modify), "override_rate": _rate(o, d)}


def override_daily(store: Store, since: date, until: date) -> list[dict[str, Any]]:
    """Per day with reviews: decided, overrides, approve, reject, modify, undecided and
    override_rate = overrides / decided (None when nothing was decided)."""
    out = []
    for day, decided, overrides, approve, reject, modify, undecided in _rows(
            store, OVERRIDE_DAILY_SQL, since, until):
        row = {"day": day.isoformat(), **_counts(decided, overrides, approve, reject, modify),
               "undecided": int(undecided)}
        out.append(row)
    return out


def override_by_model(store: Store, since: date, until: date,
                      daily: bool = False) -> list[dict[str, Any]]:
    """Override counts and rate per (model, model_version) over the period, or per day
    and model with ``daily``. Each review counts for the model call of its task that
    v_override_by_variant attributes it to; model '' holds reviews of tasks without
    a model call."""
    if daily:
        return [{"day": day.isoformat(), "model": model, "model_version": version,
                 **_counts(*counts)}
                for day, model, version, *counts in _rows(
                    store, OVERRIDE_BY_MODEL_DAILY_SQL, since, until)]
    return [{"model": model, "model_version": version, **_counts(*counts)}
            for model, version, *counts in _rows(store, OVERRIDE_BY_MODEL_SQL, since, until)]


def override_by_prompt_version(store: Store, since: date, until: date,
                               daily: bool = False) -> list[dict[str, Any]]:
    """Override counts and rate per (prompt_template_id, prompt_version) over the
    period, or per day and prompt version with ``daily``."""
    if daily:
        return [{"day": day.isoformat(), "prompt_template_id": template,
                 "prompt_version": version, **_counts(*counts)}
                for day, template, version, *counts in _rows(
                    store, OVERRIDE_BY_PROMPT_DAILY_SQL, since, until)]
    return [{"prompt_template_id": template, "prompt_version": version, **_counts(*counts)}
            for template, version, *counts in _rows(store, OVERRIDE_BY_PROMPT_SQL, since, until)]


def override_by_variant(store: Store) -> list[dict[str, Any]]:
    """Override counts and rate per (model, model_version, prompt_version) over every
    day, for reviews attributed to a model call (v_override_by_variant)."""
    return [{"model": model, "model_version": version, "prompt_version": prompt,
             **_counts(*counts)}
            for model, version, prompt, *counts in store.query(OVERRIDE_BY_VARIANT_SQL).result_rows]


def variants_in_period(store: Store, since: date, until: date) -> list[dict[str, Any]]:
    """Decided reviews per (model, model_version, prompt_template_id, prompt_version)
    of the model calls they are attributed to, over the period; reviews of tasks
    without a model call are left out."""
    return [{"model": model, "model_version": version, "prompt_template_id": template,
             "prompt_version": prompt, "decided": int(n)}
            for model, version, template, prompt, n in _rows(
                store, VARIANTS_IN_PERIOD_SQL, since, until)]


def review_time_percentiles(store: Store, since: date, until: date) -> list[dict[str, Any]]:
    """Per reviewer: decided reviews in the period and the exact p50 / p90 / p99 of
    their time_spent_ms (the value at 0-based position floor(q * n) of the sorted
    times; no interpolation)."""
    return [{"reviewer_id": reviewer, "reviews": int(n), "p50_ms": int(p50),
             "p90_ms": int(p90), "p99_ms": int(p99)}
            for reviewer, n, p50, p90, p99 in _rows(
                store, REVIEW_TIME_PERCENTILES_SQL, since, until)]


def escalations_daily(store: Store, since: date, until: date) -> list[dict[str, Any]]:
    """Per day with escalations: how many, and how many per outcome of their task's
    latest resolution ('unresolved' when there is none yet)."""
    days: dict[str, dict[str, Any]] = {}
    for day, outcome, n in _rows(store, ESCALATIONS_DAILY_SQL, since, until):
        entry = days.setdefault(day.isoformat(), {"day": day.isoformat(), "escalations": 0,
                                                  "outcomes": {}})
        entry["escalations"] += int(n)
        entry["outcomes"][outcome] = int(n)
    return list(days.values())


def volume_by_type(store: Store, since: date, until: date,
                   daily: bool = False) -> list[dict[str, Any]]:
    """Records sealed per event type over the period (most first), or per day and
    type with ``daily``."""
    if daily:
        return [{"day": day.isoformat(), "event_type": kind, "records": int(n)}
                for day, kind, n in _rows(store, VOLUME_BY_TYPE_DAILY_SQL, since, until)]
    return [{"event_type": kind, "records": int(n)}
            for kind, n in _rows(store, VOLUME_BY_TYPE_SQL, since, until)]


__all__ = ["period_parameters", "override_by_variant", "variants_in_period",
           "override_daily", "override_by_model", "override_by_prompt_version",
           "review_time_percentiles", "escalations_daily", "volume_by_type"]
