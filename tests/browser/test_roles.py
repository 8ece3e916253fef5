"""Roles in the console, in headless Chromium: every role lands on a page it may use
when it signs in, and an analyst is told why there is no Export button."""

from __future__ import annotations

import pytest
import test_console

browser = test_console.browser  # the module's Chromium (Debian's, see test_console)


_sign_in_at = test_console._sign_in  # (browser, site, user, the page first asked for)


@pytest.mark.parametrize("user, lands_on, heading", [
    ("ada", "/console/admin", "Users"),          # admin: no records, so not the search
    ("andy", "/console/search", "Search the audit trail"),
    ("audrey", "/console/search", "Search the audit trail"),
])
def test_each_role_lands_on_a_page_it_may_use(browser, console_site, user, lands_on,
                                              heading):
    # "/" sends whoever is not signed in to sign in for the search page.
    page = _sign_in_at(browser, console_site, user, "/")
    assert page.url == console_site.url + lands_on
    assert heading in page.locator("h1").inner_text()
    assert page.locator("[data-testid=error]").count() == 0  # no "Not allowed"
    # The brand link, and "/" once signed in, go to the same start page.
    page.click("a.brand")
    page.wait_for_load_state()
    assert page.url == console_site.url + lands_on
    page.context.close()


def test_admin_sent_to_a_page_of_records_lands_on_users_instead(browser, console_site):
    page = _sign_in_at(browser, console_site, "ada", "/console/search?preset=all")
    assert page.url == console_site.url + "/console/admin"
    # A page the role may open is kept as the target.
    page.context.close()
    page = _sign_in_at(browser, console_site, "ada", "/console/status")
    assert page.url == console_site.url + "/console/status"
    page.context.close()


def test_analyst_is_told_why_there_is_no_export(browser, console_site):
    page = _sign_in_at(browser, console_site, "andy", "/console/search?preset=all&task=T-console-1")
    assert page.locator("[data-testid=export]").count() == 0
    note = page.locator("[data-testid=export-note]").inner_text()
    assert "No CSV export for your role (analyst)" in note and "only auditors may read" in note
    page.context.close()
    auditor = _sign_in_at(browser, console_site, "audrey",
                          "/console/search?preset=all&task=T-console-1")
    assert auditor.locator("[data-testid=export]").count() == 1
    assert auditor.locator("[data-testid=export-note]").count() == 0
    auditor.context.close()


def test_analyst_has_no_integrity_page(browser, console_site):
    page = _sign_in_at(browser, console_site, "andy", "/login")
    assert page.locator("header nav a", has_text="Integrity").count() == 0
    resp = page.goto(console_site.url + "/console/status")
    assert resp.status == 403
    assert "may not run verification" in page.locator("[data-testid=error]").inner_text()
    page.context.close()
