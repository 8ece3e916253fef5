"""The console works everywhere, in a real headless Chromium (Debian's chromium via
Playwright, as in test_console.py): no request leaves the machine, every page fits a
390 px wide screen, and axe-core finds no serious or critical accessibility violation.

The pages are not listed by hand: for each role the crawl starts from START and follows
every same-origin link to a page (one per kind of path; downloads are skipped), so a page
another change adds is covered once something links to it. EXTRA adds what no link
reaches: a timeline with an unbroken 800-character token, the integrity page after a
verification, the sign-in page. Every page is visited once, in one browser, and the
checks below read what that visit saw.
"""

from __future__ import annotations

import ipaddress
import os
import pprint
import urllib.parse
from dataclasses import dataclass, field

import pytest
from support import CONSOLE_USERS, make_record, stub

CHROMIUM = os.environ.get("AITRAIL_CHROMIUM", "/usr/bin/chromium")
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
WIDTH = 390  # a phone
START = ["/", "/console/charts", "/console/status",
         "/console/admin", "/docs"]
LONG_TASK = "T-long-token"
TOKEN = "".join("abcdefghijklmnopqrstuvwxyz0123456789"[i * 7 % 36] for i in range(800))
EXTRA = {"audrey": ["/console/tasks?task=" + LONG_TASK, "/console/search?preset=all&task="
                    + LONG_TASK, "verify"],
         "andy": ["/console/tasks?task=" + LONG_TASK]}
# Not the console's own markup: Swagger UI is checked for requests only.
THIRD_PARTY = ("/docs",)
RENDERED = {"/docs": ".swagger-ui .info .title"}
MAX_PAGES = 40  # per role; a crawl that finds more has found a loop


@dataclass
class Visit:
    who: str
    url: str
    external: list[str] = field(default_factory=list)
    scroll_width: int = 0
    inner_width: int = 0
    too_wide: list[str] = field(default_factory=list)
    skip_link: bool = False
    shows_token: bool = False
    blank: bool = False
    violations: list[str] = field(default_factory=list)

    @property
    def path(self) -> str:
        return urllib.parse.urlsplit(self.url).path


# What the page would load from another host (a script, a stylesheet, a font, an image),
# whether or not the CSP let it: links to follow (<a>, <form>) are not loads.
EXTERNAL_REFS = """() => {
  const away = u => { try { const h = new URL(u, location.href).hostname;
                            return h !== '' && h !== 'localhost' && h !== '[::1]'
                                   && !/^127\\./.test(h); } catch (e) { return false; } };
  const found = [];
  for (const el of document.querySelectorAll('*')) {
    if (el.localName === 'a' || el.localName === 'form') continue;
    for (const name of ['src', 'href', 'data', 'xlink:href', 'poster', 'srcset'])
      if (el.hasAttribute(name) && away(el.getAttribute(name)))
        found.push(el.localName + ' ' + name + '=' + el.getAttribute(name));
  }
  const css = [...document.styleSheets].map(sheet => {
    try { return [...sheet.cssRules].map(r => r.cssText).join(' '); } catch (e) { return ''; }
  }).join(' ') + [...document.querySelectorAll('[style]')].map(e => e.getAttribute('style')).join(' ');
  for (const m of css.matchAll(/url\\(["']?([^"')]+)/g)) if (away(m[1])) found.push('css ' + m[1]);
  for (const m of css.matchAll(/@import\\s+["']([^"']+)/g)) if (away(m[1])) found.push('css ' + m[1]);
  return found;
}"""
# The innermost elements that stick out on the right: what widens the page.
TOO_WIDE = """() => [...document.querySelectorAll('body *')]
  .filter(e => e.getBoundingClientRect().right > innerWidth + 1
          && ![...e.children].some(c => c.getBoundingClientRect().right > innerWidth + 1))
  .slice(0, 4).map(e => e.outerHTML.slice(0, 100))"""
# The first thing a keyboard reaches is a link to the page's main content.
SKIP_LINK = """() => {
  const first = document.querySelector(
    'a[href], button, input:not([type=hidden]), select, textarea, [tabindex]');
  const target = first && first.getAttribute('href');
  return !!(target && target.startsWith('#') && document.getElementById(target.slice(1))
            && /skip/i.test(first.textContent));
}"""


def _loopback(url: str) -> bool:
    host = urllib.parse.urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _long_token_task(site) -> None:
    """A task whose every shown text is one unbroken 800-character token."""
    from aitrail.v1 import audit_pb2 as pb
    task = {"task_id": LONG_TASK, "request_id": "req-" + TOKEN[:100]}
    records = [
        make_record("model_call", **task, **{
            "model_call.model": "m-" + TOKEN[:120], "model_call.input": TOKEN,
            "model_call.output": TOKEN, "model_call.response_id": "resp-" + TOKEN[:100]}),
        make_record("review", **task, **{
            "review.reviewer_id": "rev-" + TOKEN[:100], "review.decision": "modify",
            "review.modified_output": TOKEN[::-1], "review.rationale.text": TOKEN,
            "review.rationale.reason_code": "code-" + TOKEN[:100]}),
        make_record("escalation", **task, **{"escalation.reason": TOKEN,
                                             "escalation.from_reviewer": "rev-a",
                                             "escalation.to_reviewer": "rev-b"}),
        make_record("resolution", **task, **{"resolution.final_decision": TOKEN}),
    ]
    for n, rec in enumerate(records):
        rec.start_time_unix_nano += n * 10**6
        rec.attributes["ticket"] = TOKEN
    assert stub(site.grpc).Export(pb.ExportRequest(records=records),
                                  timeout=60).accepted == len(records)


def _sign_in(context, site, user: str) -> None:
    page = context.new_page()
    page.goto(site.url + "/login")
    page.fill("input[name=username]", user)
    page.fill("input[name=password]", CONSOLE_USERS[user][1])
    page.click("button[type=submit]")
    page.wait_for_load_state()
    page.close()


def _links(page, site) -> list[str]:
    hrefs = page.eval_on_selector_all("a[href]", "els => els.map(a => a.href)")
    return [h.split("#")[0] for h in hrefs if h.startswith(site.url + "/")]


def _shape(path: str) -> str:
    """One page per kind: /console/tasks/T-00053 and /console/tasks/T-00054 are one."""
    return "/".join("{}" if any(c.isdigit() for c in part) else part
                    for part in path.split("/"))


def _is_page(context, url: str) -> bool:
    """A page (an error page too, as "Not allowed"), not a download."""
    resp = context.request.get(url, max_redirects=5)
    return resp.headers.get("content-type", "").startswith("text/html") \
        and "attachment" not in resp.headers.get("content-disposition", "")


def _visit(page, axe, who: str, url: str) -> Visit:
    visit = Visit(who, url)

    def refused(message) -> None:  # a load the CSP stopped before it reached the network
        if "Content Security Policy" in message.text or "Refused to" in message.text:
            visit.external.append("refused: " + message.text[:300])
    page.on("console", refused)
    page.unroute("**/*")
    page.route("**/*", lambda route: route.continue_() if _loopback(route.request.url)
               else (visit.external.append(route.request.url), route.abort()))
    try:
        _look(page, axe, visit)
    finally:
        page.remove_listener("console", refused)
    return visit


def _look(page, axe, visit: Visit) -> None:
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    url = visit.url
    if url == "verify":  # the integrity page with a verification's result on it
        page.goto(page.url.split("/console")[0] + "/console/status")
        page.click("[data-testid=run-verify]")
        page.wait_for_load_state()
        visit.url = page.url
    else:
        page.goto(url)
    path = visit.path
    if path in THIRD_PARTY:  # blank when their script did not load
        try:
            page.wait_for_selector(RENDERED[path], timeout=10_000)
        except PlaywrightTimeout:
            visit.blank = True
        page.wait_for_load_state("networkidle")  # what their scripts load after rendering
        visit.external += page.evaluate(EXTERNAL_REFS)
        return
    visit.external += page.evaluate(EXTERNAL_REFS)
    visit.scroll_width, visit.inner_width = page.evaluate(
        "[document.documentElement.scrollWidth, window.innerWidth]")
    if visit.scroll_width > visit.inner_width:
        visit.too_wide = page.evaluate(TOO_WIDE)
    visit.skip_link = page.evaluate(SKIP_LINK)
    visit.shows_token = TOKEN in page.inner_text("body")
    results = axe.run(page).response
    visit.violations = [f"{v['id']} ({v['impact']}): {v['help']}: "
                        + "; ".join(n["html"][:120] for n in v["nodes"][:3])
                        for v in results["violations"] if v["impact"] in ("serious", "critical")]


@pytest.fixture(scope="module")
def visits(console_site) -> list[Visit]:
    from axe_playwright_python.sync_playwright import Axe
    from playwright.sync_api import sync_playwright
    assert os.path.exists(CHROMIUM), f"{CHROMIUM} is missing (apt-get install chromium)"
    _long_token_task(console_site)
    axe, site, seen = Axe(), console_site, []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        context = browser.new_context(viewport={"width": WIDTH, "height": 844})
        page = context.new_page()
        seen.append(_visit(page, axe, "nobody", site.url + "/login"))
        context.close()
        for who in CONSOLE_USERS:
            context = browser.new_context(viewport={"width": WIDTH, "height": 844})
            _sign_in(context, site, who)
            page = context.new_page()
            queue = [site.url + p for p in START]
            # Swagger UI is the same for everyone: once is enough.
            paths = {v.path for v in seen if v.path in THIRD_PARTY}
            while queue:
                url = queue.pop(0)
                path = _shape(urllib.parse.urlsplit(url).path)
                if path in paths or path == "/logout":
                    continue
                paths.add(path)
                assert len(paths) <= MAX_PAGES, sorted(paths)
                if not _is_page(context, url):
                    continue
                visit = _visit(page, axe, who, url)
                seen.append(visit)
                paths.add(_shape(visit.path))  # where a redirect landed
                queue += _links(page, site)
            urls = {v.url for v in seen if v.who == who}
            seen += [_visit(page, axe, who, u if u == "verify" else site.url + u)
                     for u in EXTRA.get(who, []) if site.url + u not in urls]
            context.close()
        browser.close()
    return seen


def test_every_page_was_visited(visits):
    """The crawl reached the console's pages for each role (so the checks below mean
    something), and the long-token timeline was shown with its token."""
    paths = {(v.who, v.path) for v in visits}
    for who in ("audrey", "andy"):
        assert {(who, p) for p in ("/console/search", "/console/tasks", "/console/charts",
                                   "/console/status")} <= paths, sorted(paths)
    assert {("ada", "/console/admin"), ("ada", "/console/status"), ("nobody", "/login"),
            ("audrey", "/docs")} <= paths, sorted(paths)
    long_token = [v for v in visits if v.url.endswith("/console/tasks?task=" + LONG_TASK)]
    assert {v.who for v in long_token} == {"audrey", "andy"}
    assert all(v.shows_token for v in long_token)  # the reason, the final decision


def test_no_request_leaves_the_machine(visits):
    external = {v.url: v.external for v in visits if v.external}
    assert not external, pprint.pformat(external, width=100)


def test_every_page_fits_a_narrow_screen(visits):
    wide = {f"{v.who} {v.url}": (v.scroll_width, v.too_wide) for v in visits
            if v.path not in THIRD_PARTY and v.scroll_width > v.inner_width}
    assert not wide, f"wider than {WIDTH} px: " + pprint.pformat(wide, width=100)


def test_no_serious_accessibility_violation(visits):
    found = {f"{v.who} {v.url}": v.violations for v in visits if v.violations}
    assert not found, pprint.pformat(found, width=100)


def test_every_page_starts_with_a_skip_link(visits):
    missing = [f"{v.who} {v.url}" for v in visits if v.path not in THIRD_PARTY
               and not v.skip_link]
    assert not missing


def test_docs_render_with_no_network(visits):
    """Swagger UI renders from the collector's own files (every other request is
    refused above)."""
    blank = [v.url for v in visits if v.blank]
    assert not blank and {v.path for v in visits} >= set(THIRD_PARTY)
