"""The console in a real headless Chromium (Debian's chromium, driven by Playwright).

scripts/test installs chromium with apt-get; without it these tests fail and say so.
"""

from __future__ import annotations

import csv
import datetime
import io
import os
import re
import time
import urllib.parse

import pytest
from support import BULK_TASKS, CONSOLE_USERS, FORMULA

CHROMIUM = os.environ.get("AITRAIL_CHROMIUM", "/usr/bin/chromium")
# Flags for a machine with no network beyond loopback (see the machine notes).
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright
    assert os.path.exists(CHROMIUM), (
        f"{CHROMIUM} is missing: scripts/test installs Debian's chromium (apt-get install "
        "chromium); set AITRAIL_CHROMIUM to use another binary")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        yield b
        b.close()


def _sign_in(browser, site, user: str, next_path: str = "/console/search"):
    context = browser.new_context(accept_downloads=True)
    page = context.new_page()
    page.goto(site.url + next_path)
    assert "/login" in page.url  # not signed in: sent to the sign-in form, keeping the target
    for _ in range(4):
        page.fill("input[name=username]", user)
        page.fill("input[name=password]", CONSOLE_USERS[user][1])
        with page.expect_navigation() as nav:
            page.click("button[type=submit]")
        resp = nav.value
        # The whole browser suite signs in from 127.0.0.1, past the collector's
        # per-address limit (20 a minute): wait as its Retry-After says, as a person would.
        if resp is None or resp.status not in (429, 503):
            break
        time.sleep(min(float(resp.headers.get("retry-after", "5")), 30))
    assert page.locator("[data-testid=whoami]").inner_text().startswith(user)
    return page


def test_wrong_password_is_refused(browser, console_site):
    page = browser.new_page()
    page.goto(console_site.url + "/login")
    page.fill("input[name=username]", "audrey")
    page.fill("input[name=password]", "not the password at all")
    page.click("button[type=submit]")
    assert "Wrong user name or password" in page.locator("[role=alert]").inner_text()
    page.goto(console_site.url + "/console/search")
    assert "/login" in page.url
    page.close()


def test_auditor_searches_reads_the_timeline_and_exports(browser, console_site, tmp_path):
    page = _sign_in(browser, console_site, "audrey")
    # Search by task id.
    page.fill("input[name=task]", "T-console-1")
    page.select_option("select[name=preset]", "24h")
    page.click("form#filters button[type=submit]")
    assert page.locator("[data-testid=total]").inner_text() == "4 records match"
    whats = page.locator("[data-testid=results] tbody tr td:nth-child(2)").all_inner_texts()
    assert sorted(whats) == ["escalation", "model call", "resolution", "review"]

    # Open the timeline: every event in order, the diff, the integrity line.
    page.click("[data-testid=results] tbody tr >> nth=0 >> a")
    assert page.locator("[data-testid=task-id]").inner_text() == "T-console-1"
    events = page.locator("[data-testid=timeline] > li")
    assert [events.nth(i).get_attribute("data-event-type") for i in range(events.count())] \
        == ["model_call", "review", "escalation", "resolution"]
    assert page.locator("[data-testid=input]").inner_text() == \
        "Ticket: I was charged twice, please help"
    assert page.locator("[data-testid=confidence]").inner_text() == "0.62"
    diff = page.locator("[data-testid=diff]")
    assert diff.locator(".del").inner_text() == "-category: billing"
    assert diff.locator(".add").inner_text() == "+category: refund"
    assert page.locator("[data-testid=rationale]").inner_text() == "double charge means a refund"
    assert "refund above 500" in page.locator("[data-testid=escalation-reason]").inner_text()
    assert page.locator("[data-testid=final-decision]").inner_text() == FORMULA
    integrity = page.locator("[data-testid=integrity]").first
    assert integrity.locator("[data-testid=trust]").inner_text().startswith("Sealed")
    integrity.locator("summary").click()  # the seal's details, folded
    assert re.search(r"seq \d+ of chain main",
                     integrity.locator("[data-testid=seal-details]").inner_text())
    assert console_site.trace_id in page.locator("p.ids").inner_text()

    # Change the filters: reviews only, all time, sorted by time spent; then page 2.
    page.goto(console_site.url + "/console/search")
    page.select_option("select[name=preset]", "all")
    page.check("input[name=type][value=review]")
    page.click("form#filters button[type=submit]")
    assert page.locator("[data-testid=total]").inner_text() == f"{BULK_TASKS + 1} records match"
    assert set(page.locator("[data-testid=results] tbody tr td:nth-child(2)").all_inner_texts()) \
        == {"review"}
    page.click("text=Next →")
    assert page.locator("[data-testid=page]").inner_text() == "Page 2 of 3"
    page.click("[data-testid=results] th >> text=Decision")
    assert "sort=decision" in page.url

    # Export: every matching row, not only the page shown.
    with page.expect_download() as info:
        page.click("[data-testid=export]")
    path = tmp_path / "export.csv"
    info.value.save_as(path)
    raw = path.read_bytes()
    # A BOM, so spreadsheets read UTF-8; the compact columns, for people, by default.
    assert raw.startswith(b"\xef\xbb\xbftime,event_type,task_id,")
    rows = list(csv.DictReader(io.StringIO(raw.decode("utf-8-sig"))))
    assert len(rows) == BULK_TASKS + 1 and {r["event_type"] for r in rows} == {"review"}
    assert rows[0]["time"].endswith("Z") and "T" in rows[0]["time"]
    page.context.close()


def test_exported_cells_are_formula_safe(browser, console_site, tmp_path):
    page = _sign_in(browser, console_site, "audrey",
                    "/console/search?" + urllib.parse.urlencode({"task": "T-console-1",
                                                                 "preset": "all"}))
    with page.expect_download() as info:
        page.click("[data-testid=export]")
    info.value.save_as(tmp_path / "t.csv")
    rows = list(csv.DictReader(io.StringIO((tmp_path / "t.csv").read_text("utf-8-sig"))))
    assert [r["final_decision"] for r in rows if r["event_type"] == "resolution"] == [
        "'" + FORMULA]
    page.context.close()


def test_charts_render(browser, console_site):
    page = _sign_in(browser, console_site, "andy", "/console/charts?days=7")
    for chart in ("override-daily", "override-model", "override-prompt", "review-times",
                  "escalations", "volume"):
        figure = page.locator(f"[data-testid=chart-{chart}]")
        assert figure.locator("svg").count() == 1, chart
        box = figure.locator("svg").bounding_box()
        assert box and box["width"] > 300 and box["height"] > 100, (chart, box)
    # The known scenario (conftest.console_scenario): the detailed task's one review is
    # a modify (100 %); the bulk tasks alternate v7 / v6 and every 5th is rejected,
    # so each bulk prompt version has 12 overrides in 60 reviews.
    rows = page.locator("[data-testid=chart-override-prompt] table tbody tr")
    table = {rows.nth(i).locator("td").nth(0).inner_text():
             rows.nth(i).locator("td").all_inner_texts()[1:] for i in range(rows.count())}
    assert table == {"(none)@v7": ["60", "12", "20.0%"], "(none)@v6": ["60", "12", "20.0%"],
                     "triage@v7": ["1", "1", "100.0%"]}
    page.context.close()


def test_analyst_sees_records_but_not_payloads_or_export(browser, console_site):
    page = _sign_in(browser, console_site, "andy", "/console/tasks/T-console-1")
    assert page.locator("[data-testid=input]").inner_text() == "[hidden for your role]"
    assert page.locator("[data-testid=diff]").count() == 0
    page.goto(console_site.url + "/console/search?preset=all&task=T-console-1")
    assert page.locator("[data-testid=export]").count() == 0
    resp = page.goto(console_site.url + "/console/export.csv?preset=all")
    assert resp.status == 403
    assert "may not export CSV" in page.locator("[data-testid=error]").inner_text()
    resp = page.goto(console_site.url + "/console/admin")
    assert resp.status == 403
    page.context.close()
    auditor = _sign_in(browser, console_site, "audrey", "/console/tasks/T-console-1")
    assert auditor.locator("[data-testid=input]").inner_text().startswith("Ticket:")
    auditor.context.close()


def test_status_panel_runs_verification(browser, console_site):
    page = _sign_in(browser, console_site, "audrey", "/console/status")
    assert page.locator("[data-testid=checkpoints] tbody tr").count() >= 1
    page.click("[data-testid=run-verify]")
    page.wait_for_load_state()
    # A default setup (key and anchor in the data directory) says what it cannot detect.
    assert page.locator("[data-testid=verify-result]").inner_text().startswith("OK")
    # A period that starts after every checkpoint: verified from the chain's newest one.
    tomorrow = (datetime.date.today() + datetime.timedelta(days=1)).isoformat()
    page.fill("input[name=since]", tomorrow)
    page.click("[data-testid=run-verify]")
    page.wait_for_load_state()
    result = page.locator("[data-testid=verify-result]").inner_text()
    assert result.startswith("No records in this period") and f"period {tomorrow} to now" \
        in result
    assert re.search(r"\(from checkpoint main #\d+\)", result), result
    page.context.close()


def test_admin_manages_users_and_tokens(browser, console_site):
    page = _sign_in(browser, console_site, "ada", "/console/admin")
    page.fill("form:has(button[value=add_user]) input[name=username]", "newbie")
    page.fill("form:has(button[value=add_user]) input[name=password]", "short")
    page.click("button[value=add_user]")
    assert "12" in page.locator("[data-testid=error]").inner_text()  # password policy
    page.fill("form:has(button[value=add_user]) input[name=username]", "newbie")
    page.fill("form:has(button[value=add_user]) input[name=password]", "a-long-enough-password")
    page.select_option("form:has(button[value=add_user]) select[name=role]", "analyst")
    page.click("button[value=add_user]")
    assert "newbie" in page.locator("[data-testid=users]").inner_text()
    page.fill("form:has(button[value=create_token]) input[name=name]", "ci-export")
    page.select_option("form:has(button[value=create_token]) select[name=role]", "auditor")
    page.click("button[value=create_token]")
    token = page.locator("[data-testid=new-token] code").inner_text()
    assert token.startswith("aitk_")
    assert console_site.api("/api/v1/records?limit=1", token=token)[0] == 200
    # A form posted without the session's CSRF token is refused.
    status = page.evaluate("""async () => {
        const r = await fetch('/console/admin', {method: 'POST', headers:
            {'Content-Type': 'application/x-www-form-urlencoded'},
            body: 'action=remove&username=newbie&csrf=forged'});
        return r.status; }""")
    assert status == 403
    page.reload()
    assert "newbie" in page.locator("[data-testid=users]").inner_text()
    page.context.close()


def test_sign_out_ends_the_session(browser, console_site):
    page = _sign_in(browser, console_site, "audrey")
    page.click("text=Sign out")
    page.wait_for_load_state()
    page.goto(console_site.url + "/console/search")
    assert "/login" in page.url
    page.context.close()


def test_admin_page_shows_no_message_taken_from_the_url(browser, console_site):
    page = _sign_in(browser, console_site, "ada", "/console/admin")
    dialogs = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    for query in ("?error=%3Cscript%3Ealert(1)%3C/script%3EYour+account+is+locked",
                  "?created_token=aitk_fake_token_from_a_link",
                  "?error=Call+the+helpdesk&created_token=aitk_fake"):
        page.goto(console_site.url + "/console/admin" + query)
        assert page.locator("[data-testid=error]").count() == 0
        assert page.locator("[data-testid=new-token]").count() == 0
        body = page.content()
        assert "aitk_fake" not in body and "helpdesk" not in body and "locked" not in body
    page.goto(console_site.url + "/login?error=Your+password+expired")
    assert "expired" not in page.content()
    assert dialogs == []
    # A real error is shown once, from the session, after the form post's redirect.
    page.goto(console_site.url + "/console/admin")
    page.fill("form:has(button[value=add_user]) input[name=username]", "shorty")
    page.fill("form:has(button[value=add_user]) input[name=password]", "short")
    page.click("button[value=add_user]")
    assert "12" in page.locator("[data-testid=error]").inner_text()
    assert "error" not in page.url and "?" not in page.url
    page.reload()
    assert page.locator("[data-testid=error]").count() == 0
    page.context.close()


def test_charts_render_under_the_content_security_policy(browser, console_site):
    page = _sign_in(browser, console_site, "andy")
    violations = []
    page.on("console", lambda m: violations.append(m.text)
            if "Content Security Policy" in m.text or "Refused to" in m.text else None)
    resp = page.goto(console_site.url + "/console/charts?days=30")
    assert "default-src 'self'" in resp.headers["content-security-policy"]
    for chart in ("override-daily", "review-times", "volume"):
        box = page.locator(f"[data-testid=chart-{chart}] svg").bounding_box()
        assert box and box["width"] > 300 and box["height"] > 100, (chart, box)
    for path in ("/console/search?preset=all", "/console/tasks?task=T-console-1",
                 "/console/status"):
        page.goto(console_site.url + path)
    assert violations == []
    page.context.close()


ODD_TASKS = ["../../console/admin", "..", "T/slash", "T%2Fenc", "T?x=1", "T#frag"]


def test_odd_task_ids_open_their_own_timeline_from_search(browser, console_site):
    from support import make_record, stub

    from aitrail.v1 import audit_pb2 as pb
    records = [make_record("resolution", task_id=t, **{"resolution.outcome": f"odd-{i}"})
               for i, t in enumerate(ODD_TASKS)]
    assert stub(console_site.grpc).Export(pb.ExportRequest(records=records),
                                          timeout=60).accepted == len(records)
    page = _sign_in(browser, console_site, "audrey")
    for task in ODD_TASKS:
        page.goto(console_site.url + "/console/search?" + urllib.parse.urlencode(
            {"preset": "all", "task": task}))
        link = page.locator("[data-testid=results] tbody a", has_text=task).first
        link.click()
        page.wait_for_load_state()
        assert urllib.parse.urlsplit(page.url).path == "/console/tasks", (task, page.url)
        assert page.locator("[data-testid=task-id]").inner_text() == task
        assert page.locator("[data-testid=timeline] li").count() == 1
    page.context.close()


def test_an_evaluation_shows_in_the_timeline_beside_the_review(browser, console_site):
    """An evaluation of a model response (envelope v3) in its task's timeline, beside
    the review of the same response, and in search with the event-type filter."""
    from support import make_record, stub

    from aitrail.v1 import audit_pb2 as pb
    task = {"task_id": "T-console-eval"}
    records = [
        make_record("model_call", **task, **{"model_call.model": "triage-llm",
                                             "model_call.response_id": "chatcmpl-eval-1",
                                             "model_call.output": "category: refund"}),
        make_record("evaluation", **task, **{
            "evaluation.name": "relevance", "evaluation.score_value": 0.82,
            "evaluation.score_label": "relevant", "evaluation.response_id": "chatcmpl-eval-1",
            "evaluation.explanation": "answers the question asked"}),
        make_record("review", **task, **{"review.reviewer_id": "rev-ann",
                                         "review.decision": "approve"}),
    ]
    for n, rec in enumerate(records):
        rec.start_time_unix_nano += n * 10**6
    assert stub(console_site.grpc).Export(pb.ExportRequest(records=records),
                                          timeout=60).accepted == len(records)
    page = _sign_in(browser, console_site, "audrey")
    page.goto(console_site.url + "/console/search?preset=all&type=evaluation")
    assert page.locator("input[name=type][value=evaluation]").is_checked()
    cells = page.locator("[data-testid=results] tbody tr td").all_inner_texts()
    assert "evaluation: relevance" in cells and "relevant (0.82)" in cells
    page.locator("[data-testid=results] tbody a", has_text="T-console-eval").first.click()
    page.wait_for_load_state()
    events = page.locator("[data-testid=timeline] > li")
    assert [events.nth(i).get_attribute("data-event-type") for i in range(events.count())] \
        == ["model_call", "evaluation", "review"]
    evaluation = page.locator("li[data-event-type=evaluation]")
    assert evaluation.locator("[data-testid=evaluation-name]").inner_text() == "relevance"
    assert evaluation.locator("[data-testid=score-label]").inner_text() == "relevant"
    assert evaluation.locator("[data-testid=score]").inner_text() == "0.82"
    assert evaluation.locator("[data-testid=explanation]").inner_text() == \
        "answers the question asked"
    assert evaluation.locator("[data-testid=response-id]").inner_text() == "chatcmpl-eval-1"
    assert page.locator("li[data-event-type=model_call] [data-testid=response-id]"
                        ).inner_text() == "chatcmpl-eval-1"
    page.context.close()
