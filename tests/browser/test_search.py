"""Finding things in the console, in a real headless Chromium (as test_console.py):
typed dates always apply, with the range in the header and the CSV's name; who viewed
a task (the activity log); prefix, case-insensitive id search with a did-you-mean; the
reason code beside a review's decision."""

from __future__ import annotations

import datetime
import urllib.parse

from test_console import _sign_in, browser  # noqa: F401 - the module's browser fixture


def _search(page, site, **params):
    page.goto(site.url + "/console/search?" + urllib.parse.urlencode(params))


def _day(offset: int) -> str:
    return (datetime.datetime.now(datetime.timezone.utc).date()
            + datetime.timedelta(days=offset)).isoformat()


def test_typed_dates_apply_with_last_7_days_selected(browser, console_site):  # noqa: F811
    page = _sign_in(browser, console_site, "audrey")
    page.fill("input[name=task]", "T-console-1")
    assert page.locator("select[name=preset]").input_value() == "7d"
    page.fill("input[name=since]", "2020-01-01")
    page.fill("input[name=until]", "2020-01-02")
    page.click("form#filters button[type=submit]")
    # The last 7 days hold T-console-1's 4 records; the dates typed hold none.
    assert page.locator("[data-testid=total]").inner_text() == "0 records match"
    assert page.locator("[data-testid=range]").inner_text() == \
        "2020-01-01 00:00 UTC to 2020-01-02 00:00 UTC"
    assert page.locator("select[name=preset]").input_value() == "custom"

    page.fill("input[name=since]", _day(-1))
    page.fill("input[name=until]", _day(1))
    page.select_option("select[name=preset]", "7d")
    page.click("form#filters button[type=submit]")
    assert page.locator("[data-testid=total]").inner_text() == "4 records match"
    assert page.locator("[data-testid=range]").inner_text() == \
        f"{_day(-1)} 00:00 UTC to {_day(1)} 00:00 UTC"
    with page.expect_download() as info:
        page.click("[data-testid=export]")
    assert info.value.suggested_filename == \
        f"aitrail-export-{_day(-1)}T00-00Z_{_day(1)}T00-00Z.csv"

    page.fill("input[name=since]", _day(1))
    page.fill("input[name=until]", _day(-1))
    page.click("form#filters button[type=submit]")
    error = page.locator("[data-testid=error]").inner_text()
    assert f"From {_day(1)} 00:00 UTC is not before To {_day(-1)} 00:00 UTC" in error
    page.context.close()


def test_who_viewed_a_task_is_in_the_activity_log(browser, console_site):  # noqa: F811
    page = _sign_in(browser, console_site, "audrey", "/console/tasks?task=T-console-1")
    assert page.locator("[data-testid=timeline] > li").count() == 4
    page.reload()  # a second view: still 4 events, a read never joins the timeline
    assert page.locator("[data-testid=timeline] > li").count() == 4
    page.click("[data-testid=who-viewed]")
    rows = page.locator("[data-testid=results] tbody tr")
    assert rows.count() >= 2
    first = rows.first.locator("td").all_inner_texts()
    assert first[1:4] == ["data access", "T-console-1", "audrey"], first
    # Hidden from the default search, one click away.
    _search(page, console_site, task="T-console-1", preset="all")
    assert page.locator("[data-testid=total]").inner_text() == "4 records match"
    page.click("[data-testid=activity-link]")
    assert "activity=only" in page.url
    assert page.locator("select[name=activity]").input_value() == "only"
    assert page.locator("[data-testid=results] tbody tr").first.locator("td").nth(1) \
        .inner_text() == "data access"
    # A read opens as a record.
    page.locator("[data-testid=results] [data-testid=record-link]").first.click()
    page.wait_for_load_state()
    assert page.locator("[data-field=resource]").inner_text() == "timeline:T-console-1"
    assert page.locator("[data-field=actor]").inner_text() == "audrey"
    assert page.locator("[data-testid=record-task]").inner_text() == "T-console-1"
    page.context.close()


def test_ids_match_as_trimmed_case_insensitive_prefixes(browser, console_site):  # noqa: F811
    page = _sign_in(browser, console_site, "andy")
    page.select_option("select[name=preset]", "all")
    page.fill("input[name=task]", "  t-bulk-00 ")
    page.click("form#filters button[type=submit]")
    assert page.locator("[data-testid=total]").inner_text() == "20 records match"  # 000..009
    _search(page, console_site, preset="all", reviewer="REV-1", type="review")
    assert page.locator("[data-testid=total]").inner_text() == "30 records match"
    _search(page, console_site, preset="all", task="t-bulk-1000")
    assert page.locator("[data-testid=why]").inner_text() == (
        "Nothing matches: no task id starts with 't-bulk-1000'; did you mean T-bulk-100?")
    page.context.close()


def test_the_reason_code_shows_beside_a_decision(browser, console_site):  # noqa: F811
    page = _sign_in(browser, console_site, "andy")
    _search(page, console_site, preset="all", task="T-console-1", type="review")
    decision = page.locator("[data-testid=results] tbody tr td").nth(6)
    assert decision.locator(".decision").inner_text().lower() == "modify"
    assert decision.locator("[data-testid=reason-code]").inner_text() == "wrong_category"
    # The row opens as a record; an analyst's payload text stays hidden there too.
    page.locator("[data-testid=results] [data-testid=record-link]").first.click()
    page.wait_for_load_state()
    assert page.locator("[data-field=reason_code]").inner_text() == "wrong_category"
    assert page.locator("[data-field=rationale]").inner_text() == "[hidden for your role]"
    page.context.close()
