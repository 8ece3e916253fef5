"""Stored and reflected XSS, in a real headless Chromium (Debian's chromium via
Playwright, as in test_console.py): records whose every string field carries a
script payload are shown on the search page, the timeline, the charts and the
integrity page; the payloads must show as text and never run.

The fields are taken from the table of event types (aitrail.record.event_types):
every text and map field of every part, the error part, the record's own string
fields and its attributes, so a field added to the table is covered too.
"""

from __future__ import annotations

import os
import urllib.parse

import pytest
from support import CollectorProc, ConsoleSite, make_record, stub

from aitrail.record.event_types import ERROR_PART, EVENT_TYPES, PARTS, Value
from aitrail.v1 import audit_pb2 as pb
from aitrail_collector.web.auth.accounts import Accounts

CHROMIUM = os.environ.get("AITRAIL_CHROMIUM", "/usr/bin/chromium")
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
USERS = {"xss-audrey": ("auditor", "xss-audrey-passw0rd-long"),
         "xss-ada": ("admin", "xss-ada-passw0rd-long!")}

# {} is the field's name, so each value is told apart; the third kind is for links.
PAYLOADS = ("<img src=x onerror=window.__xss=1>{}",
            '"><svg onload=window.__xss=1>{}',
            "javascript:window.__xss=1;{}")
TASKS = tuple(p.format("T-xss-%d" % i) for i, p in enumerate(PAYLOADS))
TOP_LEVEL = ("request_id", "service", "service_version", "environment", "host")
# Shown on the timeline (the rest is stored, exported and searched, but not shown there):
# the reviewer's new output is shown as the diff, the parameters not at all.
NOT_ON_TIMELINE = {"review.modified_output", "model_call.parameters", *TOP_LEVEL}
NOT_ON_TIMELINE.discard("request_id")
# Run in the page after it loaded: anything the payloads would have made.
INJECTED = """() => {
  const made = [];
  for (const el of document.querySelectorAll('*')) {
    if (el.matches('img[src="x"]') || (el.tagName === 'SCRIPT' && el.text.includes('__xss')))
      made.push(el.outerHTML.slice(0, 200));
    for (const a of el.attributes) {
      const handler = a.name.startsWith('on');
      const link = /^(href|src|action|formaction|xlink:href|data)$/.test(a.name)
                   && /^\\s*javascript:/i.test(a.value);
      if ((handler || link) && a.value.includes('__xss')) made.push(el.outerHTML.slice(0, 200));
    }
  }
  return {xss: window.__xss, made};
}"""


def _set(msg, path: str, value: str) -> None:
    *parents, leaf = path.split(".")
    for p in parents:
        msg = getattr(msg, p)
    setattr(msg, leaf, value)


def _task_records(kind: int) -> tuple[list, dict[str, str]]:
    """One record of every event type with a part, every string field a payload;
    returns the records and {field: value} of what the timeline shows."""
    value = PAYLOADS[kind].format
    shown: dict[str, str] = {"task_id": TASKS[kind]}
    records = []
    for event_type in (t for t in EVENT_TYPES if t.part and not t.reserved):
        rec = make_record(event_type.name, task_id=TASKS[kind])
        parts = [next(p for p in PARTS if p.name == event_type.part)]
        if event_type.name == "model_call":
            parts.append(ERROR_PART)
        for part in parts:
            msg = getattr(rec, part.name)
            for f in part.fields:
                name = f"{part.name}.{f.path}"
                if f.value is Value.TEXT and f.rule is None:
                    _set(msg, f.path, value(name))
                    if name not in NOT_ON_TIMELINE:
                        shown[name] = value(name)
                elif f.value is Value.MAP:
                    getattr(msg, f.path)[value(name + ".key")] = value(name)
        if event_type.name == "review":
            rec.review.decision = "modify"  # so the diff is shown
        for name in TOP_LEVEL:
            setattr(rec, name, value(name))
        rec.attributes[value(f"{event_type.name}.attributes.key")] = value("attributes.value")
        shown[f"{event_type.name}.attributes"] = (value(f"{event_type.name}.attributes.key")
                                                  + "=" + value("attributes.value"))
        records.append(rec)
    shown["request_id"] = value("request_id")
    return records, shown


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    base = tmp_path_factory.mktemp("xss")
    users_file = base / "users.json"
    accounts = Accounts(str(users_file))
    for name, (role, password) in USERS.items():
        accounts.add_user(name, password, role)
    # A token's owner must be an existing user (whose name cannot hold markup); its
    # name can.
    accounts.create_token(PAYLOADS[0].format("token-name"), "analyst", "xss-ada")
    proc = CollectorProc(base / "store", "--users", str(users_file)).start()
    s = ConsoleSite(proc, users_file)
    s.shown = {}
    records = []
    for kind in range(len(PAYLOADS)):
        recs, shown = _task_records(kind)
        records += recs
        s.shown[kind] = shown
    reply = stub(proc.grpc).Export(pb.ExportRequest(records=records), timeout=60)
    assert reply.accepted == len(records), list(reply.rejected)
    yield s
    proc.stop()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright
    assert os.path.exists(CHROMIUM), f"{CHROMIUM} is missing (apt-get install chromium)"
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        yield b
        b.close()


class Watched:
    """A signed-in page that records every dialog (alert, confirm, prompt) opened."""

    def __init__(self, browser, site, user: str):
        self.context = browser.new_context()
        self.page = self.context.new_page()
        self.dialogs: list[str] = []

        def on_dialog(dialog):
            self.dialogs.append(dialog.message)
            dialog.dismiss()
        self.page.on("dialog", on_dialog)
        self.page.goto(site.url + "/login")
        self.page.fill("input[name=username]", user)
        self.page.fill("input[name=password]", USERS[user][1])
        self.page.click("button[type=submit]")
        self.page.wait_for_load_state()
        assert self.page.locator("[data-testid=whoami]").inner_text().startswith(user)
        self.site = site

    def open(self, path: str) -> str:
        """Load a page, let every resource fail or load, check nothing ran or was
        injected; returns the page's visible text."""
        self.page.goto(self.site.url + path)
        self.page.wait_for_load_state("networkidle")
        found = self.page.evaluate(INJECTED)
        assert found == {"xss": None, "made": []}, (path, found)
        assert self.dialogs == [], (path, self.dialogs)
        html = self.page.content()
        for payload in PAYLOADS[:2]:
            assert payload.format("")[:12] not in html, path  # only ever escaped
        return self.page.locator("body").inner_text()


@pytest.fixture(scope="module")
def auditor(browser, site):
    w = Watched(browser, site, "xss-audrey")
    yield w
    w.context.close()


def _q(**params) -> str:
    return urllib.parse.urlencode(params)


def test_payloads_cover_40_fields_of_every_event_type(site):
    fields = {name for shown in site.shown.values() for name in shown}
    records, _ = _task_records(0)
    set_fields = sum(len(r.ListFields()) for r in records)
    assert len(fields) >= 25 and set_fields >= 40, (len(fields), set_fields)


def test_timeline_shows_every_payload_as_text(auditor, site):
    for kind, task in enumerate(TASKS):
        text = auditor.open("/console/tasks/" + urllib.parse.quote(task, safe=""))
        missing = {name: v for name, v in site.shown[kind].items() if v not in text}
        assert not missing, (task, missing)


def test_search_page_shows_payloads_as_text(auditor, site):
    for kind, task in enumerate(TASKS):
        text = auditor.open("/console/search?" + _q(preset="all", task=task))
        # One record of each event type a client may send.
        assert "6 records match" in text, text[:2000]
        for name in ("task_id", "model_call.model", "model_call.prompt_version",
                     "review.reviewer_id", "escalation.from_reviewer",
                     "resolution.outcome", "data_access.actor", "evaluation.name",
                     "evaluation.score_label"):
            assert site.shown[kind][name] in text, (kind, name)
        # Every link on the page stays on the console.
        hrefs = auditor.page.eval_on_selector_all("a[href]", "as => as.map(a => a.href)")
        assert hrefs and all(h.startswith(site.url + "/") for h in hrefs), hrefs
    text = auditor.open("/console/search?" + _q(preset="all", reviewer=site.shown[1][
        "review.reviewer_id"]))
    assert "1 record match" in text


def test_charts_and_integrity_pages_run_no_payload(auditor, site):
    text = auditor.open("/console/charts?days=7")
    assert site.shown[0]["review.reviewer_id"] in text  # the review-times table
    auditor.open("/console/status")
    auditor.page.click("[data-testid=run-verify]")
    auditor.page.wait_for_load_state()
    auditor.open("/console/status")
    assert auditor.page.locator("[data-testid=verify-result]").inner_text().startswith("OK")


def test_reflected_input_is_escaped(auditor, site):
    """Values from the URL that pages echo back: filters, error messages, the sign-in
    form's target and error."""
    p = PAYLOADS[0].format("reflected")
    for path in ("/console/search?" + _q(preset="all", task=p, reviewer=p, request_id=p),
                 "/console/search?" + _q(preset="all", trace_id=p),
                 "/console/search?" + _q(preset=p),
                 "/console/search?" + _q(preset="custom", since=p),
                 "/console/search?" + _q(preset="all", type=p, sort=p),
                 "/console/tasks/" + urllib.parse.quote(p, safe=""),
                 "/console/charts?" + _q(days=p)):
        auditor.open(path)
    with_form = Watched.__new__(Watched)  # a page of its own, not signed in
    with_form.context = auditor.context.browser.new_context()
    with_form.page, with_form.site, with_form.dialogs = with_form.context.new_page(), site, []
    with_form.page.on("dialog", lambda d: (with_form.dialogs.append(d.message), d.dismiss()))
    try:
        text = with_form.open("/login?" + _q(next=p, error=p))
        assert p not in text  # messages are never taken from the URL (issue 11, finding 15)
        with_form.open("/login?" + _q(next=PAYLOADS[1].format("next")))
    finally:
        with_form.context.close()


def test_admin_page_shows_token_names_and_owners_as_text(browser, site):
    admin = Watched(browser, site, "xss-ada")
    try:
        text = admin.open("/console/admin")
        assert PAYLOADS[0].format("token-name") in text
    finally:
        admin.context.close()
