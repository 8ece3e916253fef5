"""A second reviewer's diff and the charts, in headless Chromium, on a collector of
their own: their records (two reviews of one task; a period three weeks ago in
which the model and the prompt version changed together) would change the counts
test_console.py checks on the shared console site."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

import pytest
import test_console
from support import CONSOLE_USERS, CollectorProc, ConsoleSite, make_record, stub

browser = test_console.browser  # the module's Chromium (Debian's, see test_console)
_sign_in = test_console._sign_in
DAY = 86400 * 10**9
OLD = 21  # days ago: the period in which model and prompt changed together


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    from aitrail.v1 import audit_pb2 as pb
    from aitrail_collector.web.auth.accounts import Accounts
    base = tmp_path_factory.mktemp("charts")
    accounts = Accounts(str(base / "users.json"))
    for name, (role, password) in CONSOLE_USERS.items():
        accounts.add_user(name, password, role)
    proc = CollectorProc(base / "store", "--users", str(base / "users.json")).start()
    now = time.time_ns() - 3600 * 10**9
    two = {"task_id": "T-two-reviews"}
    records = [
        make_record("model_call", **two, **{
            "model_call.model": "triage-llm", "model_call.model_version": "2026-10",
            "model_call.prompt_template_id": "triage", "model_call.prompt_version": "v7",
            "model_call.output": "category: billing\npriority: low"}),
        make_record("review", **two, **{
            "review.reviewer_id": "rev-ann", "review.decision": "modify",
            "review.modified_output": "category: refund\npriority: low"}),
        make_record("review", **two, **{
            "review.reviewer_id": "rev-sam", "review.decision": "modify",
            "review.rationale.reason_code": "wrong_priority",
            "review.modified_output": "category: refund\npriority: high"}),
    ]
    # Now: one model, two prompt versions (told apart). Three weeks ago: model
    # 2026-09 only with prompt v5 and 2026-10 only with v6 (not told apart).
    for i in range(10):
        records += _task(f"T-now-{i}", "2026-10", "v7" if i % 2 else "v6",
                         "reject" if i % 5 == 0 else "approve")
    for i in range(6):
        records += _task(f"T-old-{i}", "2026-09" if i < 3 else "2026-10",
                         "v5" if i < 3 else "v6", "reject" if i in (0, 1, 3) else "approve",
                         at=now - OLD * DAY)
    for n, rec in enumerate(records):
        rec.start_time_unix_nano = (rec.start_time_unix_nano or now) + n * 10**6
        rec.end_time_unix_nano = rec.start_time_unix_nano
    assert stub(proc.grpc).Export(pb.ExportRequest(records=records),
                                  timeout=60).accepted == len(records)
    yield ConsoleSite(proc, base / "users.json")
    proc.stop()


def _task(task: str, version: str, prompt: str, decision: str, at: int = 0) -> list:
    records = [make_record("model_call", task_id=task, **{
                   "model_call.model": "triage-llm", "model_call.model_version": version,
                   "model_call.prompt_template_id": "triage",
                   "model_call.prompt_version": prompt}),
               make_record("review", task_id=task, **{"review.reviewer_id": "rev-bo",
                                                      "review.decision": decision})]
    for rec in records:
        rec.start_time_unix_nano = at
    return records


def test_a_second_review_shows_what_each_reviewer_changed(browser, site):
    page = _sign_in(browser, site, "audrey", "/console/tasks?task=T-two-reviews")
    first, second = page.locator("li[data-event-type=review]").all()
    # The first reviewer: against the model's output only.
    assert first.locator("[data-testid=diff-previous]").count() == 0
    assert first.locator("[data-testid=diff] .del").all_inner_texts() == ["-category: billing"]
    # The second: what they changed in rev-ann's output, and against the model's.
    previous = second.locator("[data-testid=diff-previous]")
    assert previous.locator(".del").all_inner_texts() == ["-priority: low"]
    assert previous.locator(".add").all_inner_texts() == ["+priority: high"]
    assert "--- rev-ann's output" in previous.inner_text()
    assert "rev-sam changed in the previous reviewer's output" in second.inner_text()
    # Codes as people read them (labels.py), the reason's code beside its label.
    assert second.locator("[data-testid=decision]").text_content() == "Modified by reviewer"
    assert second.locator("[data-testid=reason]").inner_text() == "Wrong priority"
    assert "wrong_priority" in second.inner_text()
    model = second.locator("[data-testid=diff]")
    assert model.locator(".del").all_inner_texts() == ["-category: billing", "-priority: low"]
    assert model.locator(".add").all_inner_texts() == ["+category: refund", "+priority: high"]
    page.context.close()


def _values(page, chart: str) -> list[str]:
    # SVG text has no innerText: its text content.
    return page.locator(f"[data-testid=chart-{chart}] svg text.value").evaluate_all(
        "nodes => nodes.map(n => n.textContent)")


def test_chart_bars_carry_values_and_human_labels(browser, site):
    page = _sign_in(browser, site, "andy", "/console/charts")  # the default: 7 days
    today = datetime.now(timezone.utc).date()
    assert page.locator("[data-testid=period]").inner_text().startswith(
        f"{today - timedelta(days=6)} to {today}, UTC days")
    # Prompt v6: 5 reviews, 1 rejected; v7: 7 (two of T-two-reviews, modified), 1 + 2.
    assert sorted(_values(page, "override-prompt")) == ["20.0%", "42.9%"]
    assert _values(page, "override-model") == ["33.3%"]
    assert {"11", "12"} <= set(_values(page, "volume"))  # model calls, reviews
    legend = page.locator("[data-testid=chart-volume] svg .legends").text_content()
    assert "Model call" in legend and "model_call" not in legend
    daily = page.locator("[data-testid=chart-override-daily] svg .legends").text_content()
    assert "(Rejected or modified by reviewer)" in daily and "modify" not in daily
    assert page.locator("[data-testid=confounded]").count() == 0  # one model, two prompts
    page.context.close()


def test_a_bar_opens_the_search_it_summarises(browser, site):
    page = _sign_in(browser, site, "audrey", "/console/charts")
    rows = page.locator("[data-testid=chart-override-prompt] table tbody tr")
    table = {r.locator("td").nth(0).inner_text(): r.locator("td").nth(1).inner_text()
             for r in rows.all()}
    assert table == {"triage@v7": "7", "triage@v6": "5"}
    bar = page.locator("[data-testid=chart-override-prompt] svg a",
                       has=page.locator("desc.value", has_text="20.0%"))
    bar.locator("rect").click()
    page.wait_for_load_state()
    assert page.url.startswith(site.url + "/console/search?")
    assert page.locator("[data-testid=total]").inner_text() == "5 records match"
    assert "prompt version “v6”" in page.locator("[data-testid=variant-filter]").inner_text()
    assert set(page.locator("[data-testid=results] tbody tr td:nth-child(2)")
               .all_inner_texts()) == {"review"}
    # The filter stays when the form is sent again, and can be removed.
    page.click("form#filters button[type=submit]")
    assert page.locator("[data-testid=total]").inner_text() == "5 records match"
    page.click("text=Remove this filter")
    assert page.locator("[data-testid=total]").inner_text() == "12 records match"
    page.context.close()


def test_a_custom_range_and_the_note_when_model_and_prompt_changed_together(browser, site):
    page = _sign_in(browser, site, "andy", "/console/charts")
    old = datetime.now(timezone.utc).date() - timedelta(days=OLD)
    page.fill("input[name=since]", (old - timedelta(days=1)).isoformat())
    page.fill("input[name=until]", (old + timedelta(days=1)).isoformat())
    page.click("form[action='/console/charts'] button")  # the menu still says 7 days
    page.wait_for_load_state()
    assert page.locator("[data-testid=period]").inner_text().startswith(
        f"{old - timedelta(days=1)} to {old + timedelta(days=1)}, UTC days")
    assert sorted(_values(page, "override-model")) == ["33.3%", "66.7%"]
    note = page.locator("[data-testid=chart-override-model] [data-testid=confounded]")
    assert note.inner_text().startswith("Model and prompt version changed together in this "
                                        "period: their effects cannot be told apart")
    assert "triage-llm 2026-09 with triage@v5" in note.inner_text()
    # From after To is refused with a message, not an error page of the server.
    resp = page.goto(site.url + f"/console/charts?since={old}&until={old - timedelta(days=2)}")
    assert resp.status == 400
    assert "is after To" in page.locator("[data-testid=error]").inner_text()
    page.context.close()
