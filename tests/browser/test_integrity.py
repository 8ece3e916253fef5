"""The integrity page and the timeline's trust, in a real headless Chromium: period
verification that says what the period holds, per-task verification, the task's
proof bundles checked offline, and the log review sign-off."""

from __future__ import annotations

import datetime
import os
import re
import subprocess
import sys
import time
import zipfile

import test_console
from test_console import _sign_in

browser = test_console.browser  # the same module-scoped Chromium fixture


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
    today = console_site.sealed_day  # the scenario's day, even when the run crosses midnight
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
    assert re.match(r"The next checkpoint is due about \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC",
                    _text(page, "next-checkpoint"))
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


def _covered(page, site, path: str):
    """The page once the task's records are in a signed checkpoint (the cadence signs
    within seconds of the scenario's records)."""
    for _ in range(40):
        page.goto(site.url + path)
        if "not yet" not in " ".join(page.locator("[data-testid=trust]").all_inner_texts()):
            return page
        time.sleep(0.5)
    raise AssertionError("the task's records were never covered by a checkpoint")


def test_verify_this_task_checks_each_record_against_the_newest_checkpoint(browser,
                                                                          console_site):
    page = _sign_in(browser, console_site, "andy", "/console/search")
    _covered(page, console_site, "/console/tasks?task=T-console-1")
    plain = page.locator("[data-testid=trust]").first.inner_text()
    # The checkpoint's time as an absolute UTC time and a relative one.
    assert re.match(r"Sealed, in signed checkpoint #\d+ of \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC "
                    r"\(\d+ (s|min|h) ago\)", plain), plain
    with page.expect_navigation():
        page.click("[data-testid=verify-task]")
    result = _text(page, "task-verify-result")
    assert re.match(r"4 of 4 records verified: unchanged since sealed, in signed checkpoint "
                    r"main #\d+ of .* UTC", result), result
    statuses = page.locator("[data-testid=trust]").all_inner_texts()
    assert len(statuses) == 4 and all(
        re.match(r"Verified: unchanged since sealed, in signed checkpoint #\d+ of .* UTC", s)
        for s in statuses), statuses
    # The seq / leaf / chain details stay, folded.
    details = page.locator("[data-testid=seal-details]").first
    assert not details.locator("p").is_visible()
    details.locator("summary").click()
    assert re.search(r"seq \d+ of chain main · leaf", details.inner_text())
    page.context.close()


def test_the_task_proof_download_verifies_offline(browser, console_site, tmp_path):
    page = _sign_in(browser, console_site, "audrey", "/console/search")
    _covered(page, console_site, "/console/tasks?task=T-console-1")
    with page.expect_download() as info:
        page.click("[data-testid=download-proofs]")
    assert info.value.suggested_filename == "aitrail-proofs-T-console-1.zip"
    archive = tmp_path / info.value.suggested_filename
    info.value.save_as(archive)
    with zipfile.ZipFile(archive) as z:
        names = z.namelist()
        key = z.read("public-key.pem")
        members = {n: z.read(n) for n in names}
    assert len([n for n in names if n.endswith(".json")]) == 4 and "README.txt" in names
    assert key == console_site.api("/api/v1/public-key")[1].encode()
    (tmp_path / "key.pem").write_bytes(key)
    out = _verify_proof(archive, tmp_path / "key.pem")
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.count("OK: record ") == 4 and "OK: 4 of 4 bundles" in out.stdout
    # One byte changed in one bundle: that bundle fails, and so does the archive.
    bad = tmp_path / "tampered.zip"
    with zipfile.ZipFile(bad, "w") as z:
        for i, (name, data) in enumerate(sorted(members.items())):
            if name.endswith(".json") and i == 1:
                data = data.replace(b'"seq": ', b'"seq":  ', 1)
            z.writestr(name, data)
    out = _verify_proof(bad, tmp_path / "key.pem")
    assert out.returncode == 1 and "FAILED: 3 of 4 bundles" in out.stdout, out.stdout
    page.context.close()


def _verify_proof(path, key) -> subprocess.CompletedProcess:
    env = dict(os.environ)  # PYTHONPATH as the test run has it
    return subprocess.run([sys.executable, "-m", "aitrail.cli", "verify-proof", str(path),
                           "--public-key", str(key)], capture_output=True, text=True,
                          timeout=60, env=env)


def test_a_log_review_sign_off_is_sealed_and_shown_in_the_cadence(browser, console_site):
    today = datetime.datetime.now(datetime.timezone.utc).date()
    this_week = "%d-W%02d" % today.isocalendar()[:2]
    last = today - datetime.timedelta(weeks=1)
    last_week = "%d-W%02d" % last.isocalendar()[:2]
    page = _sign_in(browser, console_site, "ada", "/console/status")
    rows = page.locator("[data-testid=review-cadence] tbody tr")
    assert rows.count() == 12
    assert page.locator(f"tr[data-week='{this_week}']").inner_text().count("In progress") == 1
    assert "Not reviewed" in page.locator(f"tr[data-week='{last_week}']").inner_text()
    # A note is required; the page says so and keeps the form.
    page.select_option("select[name=period]", last_week)
    with page.expect_navigation() as nav:
        page.click("[data-testid=sign-off]")
    assert nav.value.status == 400 and "note" in _text(page, "review-error")
    page.select_option("select[name=period]", last_week)
    page.fill("input[name=note]", "read the week's access log and admin actions; nothing odd")
    with page.expect_navigation():
        page.click("[data-testid=sign-off]")
    row = page.locator(f"tr[data-week='{last_week}']")
    assert row.get_attribute("data-reviewed") == "yes"
    text = row.inner_text()
    assert "Reviewed" in text and "ada" in text and "nothing odd" in text
    assert re.search(rf"{today.isoformat()} \d\d:\d\d:\d\d UTC", text), text
    page.context.close()

    # Sealed: a log_review record in the ledger, and the chain verifies clean.
    token = console_site.token("auditor")
    status, found = console_site.api("/api/v1/records?type=log_review&since=1h", token=token)
    assert status == 200 and found["total"] >= 1, found
    rec = found["records"][-1]
    assert (rec["actor"], rec["resource"], rec["service"]) == (
        "ada", f"period:{last_week}", "aitrail-collector")
    assert rec["attributes"]["note"].endswith("nothing odd")
    status, report = console_site.api("/api/v1/verify", token=token)
    assert status == 200 and report["ok"], report["findings"]

    # An analyst neither sees the integrity page (verification is the auditor's and
    # the admin's) nor may sign off.
    page = _sign_in(browser, console_site, "andy", "/console/search")
    assert page.goto(console_site.url + "/console/status").status == 403
    page.goto(console_site.url + "/console/search")
    status = page.evaluate("""async (csrf) => (await fetch('/console/reviews', {method: 'POST',
        headers: {'Content-Type': 'application/x-www-form-urlencoded'},
        body: 'period=2026-W01&note=x&csrf=' + csrf})).status""",
                           page.locator("input[name=csrf]").first.input_value())
    assert status == 403
    page.context.close()
