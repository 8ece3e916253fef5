"""Log review sign-offs (ledger/review_log.py): the weekly cadence and what a
sign-off refuses before anything is sealed."""

from __future__ import annotations

from datetime import date, datetime, timezone

import pytest

from aitrail_collector.ledger import review_log
from aitrail_collector.ledger.review_log import ReviewError, Week
from aitrail_collector.web.auth.accounts import Principal, allowed


def test_weeks_are_iso_weeks_of_utc_days():
    w = Week.parse("2026-W48")
    assert (w.first, w.last, w.label) == (date(2026, 11, 23), date(2026, 11, 29), "2026-W48")
    assert Week.of(date(2027, 1, 1)).label == "2026-W53"
    for bad in ("2026-48", "last week", "2025-W53"):
        with pytest.raises(ReviewError, match="period"):
            Week.parse(bad)


def test_the_cadence_lists_recent_weeks_reviewed_or_not():
    signoff = {"event_type": "log_review", "resource": "period:2026-W47",
               "time": "2026-11-30T09:00:00.000000Z", "actor": "ada"}
    weeks = review_log.cadence([signoff], date(2026, 12, 2), count=3)
    assert [(w["label"], w["ended"], len(w["signoffs"])) for w in weeks] == [
        ("2026-W49", False, 0), ("2026-W48", True, 0), ("2026-W47", True, 1)]


def test_a_sign_off_is_refused_before_sealing(tmp_path):
    who = Principal(name="ada", role="admin", kind="user")
    now = int(datetime(2026, 12, 2, 12, tzinfo=timezone.utc).timestamp()) * 10**9
    for period, note, message in (("2026-W49", "ok", "has not ended yet"),
                                  ("2026-W48", "  ", "note"),
                                  ("2026-W48", "x" * 1001, "at most 1000")):
        with pytest.raises(ReviewError, match=message):
            review_log.sign_off(None, who, period, note, now_ns=now)


def test_auditors_and_admins_sign_off_reviews():
    assert [r for r in ("auditor", "analyst", "admin") if allowed(r, "review")] == [
        "auditor", "admin"]
