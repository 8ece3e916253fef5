"""The integrity page and the timeline's trust, in a real headless Chromium: period
verification that says what the period holds, per-task verification, the task's
proof bundles checked offline, and the log review sign-off."""

from __future__ import annotations

import datetime
import re

from test_console import _sign_in, browser  # noqa: F401 - the module's browser fixture


def _verify(page, since: str, until: str):
    page.fill("input[name=since]", since)
    page.fill("input[name=until]", until)
    with page.expect_navigation():
        page.click("[data-testid=run-verify]")
    return page


def _text(page, testid: str) -> str:
    return page.locator(f"[data-testid={testid}]").inner_text()


def test_period_verification_counts_the_period_and_names_edge_cases(browser, console_site):
    page = _sign_in(browser, console_site, "audrey", "/console/status")
    today = datetime.datetime.now(datetime.timezone.utc).date()
    tomorrow = (today + datetime.timedelta(days=1)).isoformat()
    # One day (From == To): that whole UTC day, the same count as the API's [today, tomorrow).
    _verify(page, today.isoformat(), today.isoformat())
    status, api = console_site.api(f"/api/v1/verify?since={today}&until={tomorrow}",
                                   token=console_site.token("auditor"))
    assert status == 200 and api["period"]["in_period"] >= 244, api["period"]
    result = _text(page, "verify-result")
    assert result.startswith("OK") and re.search(
        rf"{api['period']['in_period']:,} records in this period verified", result), result
    counts = _text(page, "verify-counts")
    assert f"{api['period']['in_period']:,} records sealed in the period" in counts, counts
    assert "sealed after it" in counts and "not rewritten later" in counts
    uncovered = _text(page, "verify-uncovered")
    assert ("not yet in a signed checkpoint" in uncovered and "next checkpoint is due" in
            uncovered) or "Every record is in a signed checkpoint (main #" in uncovered, uncovered

    # 2020: no records; the chain started later, and every record after it was checked.
    _verify(page, "2020-01-01", "2020-12-31")
    assert _text(page, "verify-result").startswith("No records in this period")
    assert "No checkpoint was signed in the period" in _text(page, "verify-running")
    assert "starts later" in _text(page, "verify-running")
    assert re.search(r"^0 records sealed in the period.*[1-9][\d,]* sealed after it",
                     _text(page, "verify-counts")), _text(page, "verify-counts")
    # 2027: nothing in it, nothing after it, and it has not begun.
    _verify(page, "2027-01-01", "2027-01-31")
    assert _text(page, "verify-result").startswith("No records in this period")
    assert "has not begun yet" in _text(page, "verify-running")
    assert "0 sealed after it" in _text(page, "verify-counts")

    # From after To: a clear message on the page, the form kept, no server error.
    page.fill("input[name=since]", "2026-11-25")
    page.fill("input[name=until]", "2026-11-24")
    with page.expect_navigation() as nav:
        page.click("[data-testid=run-verify]")
    assert nav.value.status == 400
    assert "From (2026-11-25) is after To (2026-11-24)" in _text(page, "verify-error")
    assert page.input_value("input[name=since]") == "2026-11-25"
    page.context.close()
