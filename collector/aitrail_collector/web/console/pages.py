"""The compliance console: server-rendered pages over the same query code as the API.

For compliance officers and analysts, not engineers: search, a task's timeline,
CSV export, charts, the integrity status, and (for admins) users and API tokens.
Pages work without JavaScript; every form post carries the session's CSRF token;
every search, timeline view and export is sealed into the ledger as a
``data_access`` record (access_log.py).
"""

from __future__ import annotations

import difflib
import hmac
import time
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Optional
from urllib.parse import urlencode

from fastapi import FastAPI, Form, HTTPException, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.exceptions import HTTPException as StarletteHTTPException

from aitrail.record.event_types import KNOWN_TYPES
from aitrail.verify.envelope import PAYLOAD_NAMES
from aitrail_collector.store import checkpoints
from aitrail_collector.store import queries as query
from aitrail_collector.web import audited
from aitrail_collector.web.auth.accounts import (
    DEFAULT_TOKEN_DAYS,
    ROLES,
    AccountError,
    Principal,
    SignInThrottled,
    allowed,
)
from aitrail_collector.web.auth.guard import LOGIN_CSRF_COOKIE, SESSION_COOKIE, NotSignedIn
from aitrail_collector.web.auth.throttle import retry_after
from aitrail_collector.web.console import charts, labels
from aitrail_collector.web.console.trust import ago as _ago
from aitrail_collector.web.console.trust import proof_archive, trust_status, verify_task
from aitrail_collector.web.console.trust import utc as _utc
from aitrail_collector.web.services import Services

HERE = Path(__file__).resolve().parent
PAGE_SIZE = 50
PRESETS = {"24h": "Last 24 hours", "7d": "Last 7 days", "30d": "Last 30 days",
           "all": "All time", "custom": "Custom range"}
CHART_DAYS = {"7": "Last 7 days", "30": "Last 30 days", "90": "Last 90 days", "365": "Last year"}
EVENT_TYPES = KNOWN_TYPES  # the table of event types (aitrail.record.event_types)
HIDDEN = "[hidden for your role]"
# Each console page and the permission it needs, in the order a role's start page is
# chosen: a sign-in lands on the first one the role may open (an admin reads no
# records, so lands on Users & tokens, not on a "Not allowed" search).
PAGES = (("/console/search", "records"), ("/console/tasks", "records"),
         ("/console/admin", "admin"), ("/console/status", "verify"),
         ("/console/charts", "aggregates"), ("/console/export.csv", "export"))

templates = Jinja2Templates(directory=str(HERE / "templates"))


def principal_text(rec: dict) -> str:
    """Which credential delivered a record, as a person reads it (envelope v2 seals
    it; v1 records did not record it)."""
    kind, ident = rec.get("principal_kind") or "", rec.get("principal_id") or ""
    if not kind:
        return "not recorded (sealed before envelope v2)"
    label = {"apikey": "API key", "mtls": "client certificate",
             "apikey+mtls": "API key and client certificate",
             "unauthenticated": "no credential", "collector": "the collector itself"}
    text = label.get(kind, kind)
    return f"{text} {ident}" if ident else text


def record_href(record_id: str) -> str:
    """The console's link to one record (an activity-log row has no timeline)."""
    return "/console/records?" + urlencode({"id": record_id})


def task_href(task_id: str) -> str:
    """The console's link to a task's timeline. The id travels as a query value, fully
    encoded, so no id (``../admin``, ``a/b``, ``..``, ``x?y``, ``x#y``) can make the
    link point anywhere else: a path segment could be resolved as a directory."""
    return "/console/tasks?" + urlencode({"task": task_id})


templates.env.filters["ago"] = _ago
templates.env.filters["utc"] = _utc
templates.env.filters["task_href"] = task_href
templates.env.filters["record_href"] = record_href
templates.env.filters["principal"] = principal_text
templates.env.filters["label"] = labels.label  # codes as people read them
templates.env.globals["allowed"] = allowed
templates.env.globals["roles_with"] = lambda permission: [
    role for role in ROLES if allowed(role, permission)]


class Console:
    def __init__(self, services: Services):
        self.services = services
        self.store, self.auth, self.access = services.store, services.auth, services.access
        self.last_verify: Optional[dict] = None

    def render(self, request: Request, name: str, who: Optional[Principal], status: int = 200,
               **context: Any) -> HTMLResponse:
        session = self.auth.session(request)
        return templates.TemplateResponse(request, name, {
            "who": who, "csrf": session.csrf if session else "", "presets": PRESETS,
            **context}, status_code=status)

    # ------------------------------------------------------------ filters
    def filters(self, request: Request, limit: Optional[int] = PAGE_SIZE,
                now: Optional[datetime] = None) -> query.Filters:
        """The search form's filters. A filled From or To is a custom range whatever
        the Period select says (a date typed is never ignored, with or without
        JavaScript); a preset ends now. Either way the filters hold absolute times,
        so the header, the export link and the CSV's name say the same range."""
        qp = request.query_params
        preset = period_of(qp)
        now = now or datetime.now(timezone.utc).replace(microsecond=0)
        since: Optional[str] = None
        until: Optional[str] = None
        try:
            if preset == "custom":
                start = query.parse_time(qp["since"], "From") if qp.get("since") else None
                end = query.parse_time(qp["until"], "To") if qp.get("until") else now
                if start and start >= end:
                    raise query.FilterError(
                        f"From {_when(start)} is not before To {_when(end)}: the period is "
                        "empty (To is exclusive: To 2026-12-01 ends at 2026-12-01 00:00 UTC)")
                since, until = start.isoformat() if start else None, end.isoformat()
            elif preset != "all":
                since = query.parse_time(preset, "since", now=now).isoformat()
                until = now.isoformat()
            page = _page(qp.get("page"))
            return query.Filters.parse(
                task=qp.get("task"), reviewer=qp.get("reviewer"),
                request_id=qp.get("request_id"), trace_id=qp.get("trace_id"),
                types=qp.getlist("type"), since=since, until=until,
                variant=[(k, qp[k]) for k in query.VARIANT if k in qp],  # '' counts
                limit=str(limit) if limit else None, offset=str((page - 1) * (limit or 0)),
                sort=qp.get("sort") or "start_time", order=qp.get("order") or "desc",
                prefix=True, activity=qp.get("activity") or "hide")
        except query.FilterError as exc:
            raise HTTPException(400, str(exc)) from None

    # ------------------------------------------------------------ pages
    def search_page(self, request: Request) -> HTMLResponse:
        who = self.auth.page(request, "records")
        qp = request.query_params
        error, rows, total, f, why = None, [], 0, None, None
        try:
            f = self.filters(request)
            rows = query.search(self.store, f, payloads=False, task_models=False,
                                hashes=False)  # the table shows none of the three
            total = query.page_total(self.store, f, rows)
            why = query.explain_empty(self.store, f) if not total else None
            self.access.record(who, "search", f.describe(), len(rows), via="console")
        except HTTPException as exc:
            error = exc.detail
        args = [(k, v) for k, v in qp.multi_items() if k not in ("page", "sort", "order")]
        # The export covers the range the header states (absolute times), not "the last
        # 7 days" as of the click.
        export_args = [(k, v) for k, v in args if k not in ("preset", "since", "until")]
        if f is not None and (f.since or f.until):
            export_args += [("preset", "custom")] + [
                (k, getattr(f, k).isoformat()) for k in ("since", "until") if getattr(f, k)]
        else:
            export_args.append(("preset", "all"))
        activity_args = [(k, v) for k, v in args if k != "activity"] + [("activity", "only")]
        return self.render(request, "search.html", who, status=400 if error else 200,
                           error=error, rows=rows, total=total, filters=f, q=qp,
                           without_variant=[(k, v) for k, v in args if k not in query.VARIANT],
                           event_types=EVENT_TYPES, page=_page(qp.get("page")),
                           page_size=PAGE_SIZE, base_args=args, urlencode=urlencode,
                           period=period_of(qp) if not error or qp.get("preset") in PRESETS
                           else "7d",
                           range_text=range_text(f) if f else "", why=why,
                           export_args=export_args, activity_args=activity_args,
                           activity_choices=ACTIVITY_CHOICES, csv_columns=CSV_COLUMNS)

    def timeline_page(self, request: Request, task_id: str) -> HTMLResponse:
        who = self.auth.page(request, "records")
        show_payloads = allowed(who.role, "payloads")
        events = query.search(self.store, query.timeline_filters(task_id),
                              payloads=show_payloads)
        self.access.record(who, f"timeline:{task_id}", {"task": task_id}, len(events),
                           via="console", task_id=task_id)
        if not events:
            raise HTTPException(404, f"No records for task {task_id!r}.")
        if not show_payloads:
            for e in events:
                e.update({name: HIDDEN for name in PAYLOAD_NAMES})
        covering = self._covering(events)
        check = self._verify_task(events) if request.query_params.get("verify") else None
        next_due = self._next_due()
        last_output, previous = "", None  # the model's output; the review before
        for e in events:
            e["integrity"] = _integrity(e, covering.get(e["chain_id"], []))
            e["trust"] = trust_status(e, check, next_due)
            if e["event_type"] == "model_call":
                last_output, previous = (e.get("output", "") if show_payloads else ""), None
            if e["event_type"] == "review":
                e["diff_lines"] = _diff_lines(e, last_output, show_payloads,
                                              sent=previous is None)
                e["diff_previous"] = _diff_previous(e, previous, show_payloads)
                previous = e
        ids = {k: sorted({e[k] for e in events if e[k]}) for k in ("trace_id", "request_id")}
        return self.render(request, "timeline.html", who, task_id=task_id, events=events,
                           ids=ids, show_payloads=show_payloads, check=check,
                           next_due=next_due)

    def _verify_task(self, events: list[dict]) -> dict:
        trust = self.services.trust()
        return verify_task(self.store, trust.public_key if trust else None, events)

    def task_proofs(self, request: Request, task: str) -> Response:
        """The task's proof bundles as one proof archive (console/trust.py)."""
        who = self.auth.page(request, "records")
        if not task:
            raise HTTPException(400, "Which task? Give its id: ?task=T-00042")
        if self.services.public_key_pem is None:
            raise HTTPException(503, "No collector signs this store: there is no key.")
        events = query.search(self.store, query.timeline_filters(task), payloads=False,
                              task_models=False)
        if not events:
            raise HTTPException(404, f"No records for task {task!r}.")
        made = proof_archive(self.store, self.services.public_key_pem, task, who.name, events)
        if made is None:
            due = self._next_due()
            raise HTTPException(409, "No record of this task is in a signed checkpoint yet"
                                + (f"; the next is due about {_utc(due)}." if due else "."))
        data, name, count = made
        self.access.record(who, f"proofs:{task}", {"task": task}, count, via="console",
                           task_id=task)
        return Response(data, media_type="application/zip", headers={
            "Content-Disposition": f'attachment; filename="{name}"'})

    def record_page(self, request: Request, record_id: str) -> HTMLResponse:
        """One record, every field that holds something: how an activity-log row (a
        read, which belongs to no timeline) is opened."""
        who = self.auth.page(request, "records")
        show_payloads = allowed(who.role, "payloads")
        # Payloads are read for every role, so a hidden one still shows that it exists.
        found = query.search(self.store, query.Filters(record_id=record_id.strip(), limit=1))
        rec = found[0] if found else None
        self.access.record(who, f"record:{record_id}", {"record_id": record_id}, len(found),
                           via="console", task_id=rec["task_id"] if rec else "")
        if rec is None:
            raise HTTPException(404, f"No record {record_id!r}.")
        if not show_payloads:
            rec.update({name: HIDDEN for name in PAYLOAD_NAMES if rec.get(name)})
        fields = [(k, v) for k, v in rec.items() if v not in (None, "", {}, [])]
        return self.render(request, "record.html", who, rec=rec, fields=fields)

    def export(self, request: Request) -> StreamingResponse:
        who = self.auth.page(request, "export")
        now = datetime.now(timezone.utc).replace(microsecond=0)
        f = self.filters(request, limit=None, now=now)
        # People open the console's file: compact columns unless full ones are asked for.
        columns = request.query_params.get("columns") or "compact"
        if columns not in CSV_COLUMNS:
            raise HTTPException(400, f"columns {columns!r}: choose compact or full")
        body = _with_bom(audited.export(self.services, who, f, columns=columns))
        name = f"aitrail-export-{export_stamp(f.since)}_{export_stamp(f.until or now)}.csv"
        return StreamingResponse(body, media_type="text/csv; charset=utf-8", headers={
            "Content-Disposition": f'attachment; filename="{name}"'})

    def charts_page(self, request: Request) -> HTMLResponse:
        who = self.auth.page(request, "aggregates")
        qp = request.query_params
        days = qp.get("days") or "7"  # the search's default period too
        if days not in CHART_DAYS:
            raise HTTPException(400, "days: choose 7, 30, 90 or 365")
        try:  # typed dates apply, whatever the period menu says
            first, last = (_day((qp.get(k) or "").strip(), name)
                           for k, name in (("since", "From"), ("until", "To")))
        except ValueError as exc:
            raise HTTPException(400, str(exc)) from None
        until = last or datetime.now(timezone.utc).date()  # both days included
        since = first or until - timedelta(days=int(days) - 1)
        if since > until:
            raise HTTPException(400, f"From {since} is after To {until}: the first day of "
                                     "the period comes first")
        rendered = charts.render_all(self.store, since, until)
        self.access.record(who, f"charts:{since}..{until}", {"since": since.isoformat(),
                                                              "until": until.isoformat()},
                           len(rendered), via="console")
        return self.render(request, "charts.html", who, days=days, charts=rendered,
                           since=since, until=until, custom=bool(first or last),
                           chart_days=CHART_DAYS)

    def status_page(self, request: Request) -> HTMLResponse:
        return self.render_status(request)

    def render_status(self, request: Request, error: str = "", form: Optional[dict] = None,
                      status: int = 200, review_error: str = "",
                      review_form: Optional[dict] = None) -> HTMLResponse:
        """The integrity page; the messages come from this server only, never the URL."""
        who = self.auth.page(request, "verify")
        trust = self.services.trust()
        return self.render(request, "status.html", who, status=status,
                           chains=self._chain_status(), last=self.last_verify,
                           trust_root=trust.root if trust else None, error=error,
                           form=form or {}, next_due=self._next_due(),
                           reviews=self._reviews(), review_error=review_error,
                           review_form=review_form or {})

    def _reviews(self) -> list[dict]:
        """The weekly review cadence: the recent weeks and their sealed sign-offs."""
        from aitrail_collector.ledger import review_log
        today = datetime.now(timezone.utc).date()
        weeks = 12
        signoffs = query.search(self.store, query.Filters(
            types=(review_log.EVENT_TYPE,), limit=None, sort="start_time", order="asc",
            since=datetime.now(timezone.utc) - timedelta(weeks=weeks + 8)), payloads=False)
        return review_log.cadence(signoffs, today, weeks)

    def sign_off(self, request: Request, csrf: str, period: str, note: str) -> Response:
        who = self.auth.page(request, "review")
        self.auth.check_form(request, csrf)
        from aitrail_collector.ledger import review_log
        try:
            review_log.sign_off(self.services.ledger, who, period, note)
        except review_log.ReviewError as exc:
            return self.render_status(request, review_error=str(exc), status=400,
                                    review_form={"period": period, "note": note})
        return RedirectResponse("/console/status#reviews", status_code=303)

    def run_verify(self, request: Request, csrf: str, since: str, until: str) -> Response:
        who = self.auth.page(request, "verify")
        self.auth.check_form(request, csrf)
        from aitrail.verify.audit import AuditError
        from aitrail_collector.audit.verify import verify_period
        trust = self.services.trust()
        form = {"since": since, "until": until}
        try:
            first, last = period_days(since, until)
            # The form's To is a day included in the period; verify_period's end is
            # exclusive: the day after To, 00:00 UTC.
            report = verify_period(self.store, trust, first,
                                   last + timedelta(days=1) if last else None,
                                   self.services)
        except (ValueError, AuditError) as exc:
            return self.render_status(request, error=str(exc), form=form, status=400)
        self.last_verify = {"report": report, "by": who.name, "at": time.time_ns(),
                            "since": since or "the beginning", "until": until or "now",
                            "next_due": self._next_due()}
        return RedirectResponse("/console/status", status_code=303)

    def _next_due(self) -> Optional[int]:
        cp = self.services.checkpointer
        return cp.next_due_ns() if cp is not None else None

    # ------------------------------------------------------------ integrity
    def _covering(self, events: list[dict]) -> dict[str, list[tuple[int, int, int]]]:
        """Per chain, the checkpoints from the first covering the events' lowest seq up
        to the first covering their highest."""
        out: dict[str, list[tuple[int, int, int]]] = {}
        for chain in {e["chain_id"] for e in events}:
            seqs = [e["seq"] for e in events if e["chain_id"] == chain]
            out[chain] = checkpoints.covering_range(self.store, chain, min(seqs), max(seqs))
        return out

    def _chain_status(self) -> list[dict]:
        chains = []
        for chain, count, newest in checkpoints.newest_per_chain(self.store):
            number, size, t = newest
            chains.append({"chain_id": chain, "number": number, "size": size, "time_ns": t,
                           "age_s": (time.time_ns() - t) / 1e9, "count": count})
        return chains


CSV_COLUMNS = {"compact": "Compact (for people)", "full": "Full (every column, for systems)"}
ACTIVITY_CHOICES = {"hide": "Hidden (records only)", "only": "Only the activity log",
                    "include": "Records and the activity log"}


def period_of(qp: Any) -> str:
    """The period a search covers: a filled From or To is a custom range, whatever the
    select says; else the select's choice (Last 7 days by default)."""
    if (qp.get("since") or "").strip() or (qp.get("until") or "").strip():
        return "custom"
    preset = qp.get("preset") or "7d"
    if preset not in PRESETS:
        raise HTTPException(400, f"period {preset!r}: choose one of {', '.join(PRESETS)}")
    return preset


def _when(t: datetime) -> str:
    return t.strftime("%Y-%m-%d %H:%M:%S UTC" if t.second else "%Y-%m-%d %H:%M UTC")


def range_text(f: query.Filters) -> str:
    """The range a search covered, in absolute UTC times."""
    if not f.since and not f.until:
        return "all time"
    start = _when(f.since) if f.since else "the beginning"
    return f"{start} to {_when(f.until)}" if f.until else f"from {start}"


def export_stamp(t: Optional[datetime]) -> str:
    """A time for a file name (no colons): 2026-11-24T00-00Z."""
    if t is None:
        return "beginning"
    return t.strftime("%Y-%m-%dT%H-%M-%SZ" if t.second else "%Y-%m-%dT%H-%MZ")


def _with_bom(chunks):
    # The console's download is opened by double-click in a spreadsheet, which reads a
    # CSV as UTF-8 only when it starts with a byte order mark. The API's and the CLI's
    # exports, read by programs, carry none.
    yield b"\xef\xbb\xbf"
    yield from chunks


def _page(value: Optional[str]) -> int:
    try:
        return max(1, min(int(value or 1), 10**6))
    except ValueError:
        raise HTTPException(400, f"page {value!r}: expected a whole number") from None


def period_days(since: str, until: str) -> tuple[Optional[date], Optional[date]]:
    """The console's From and To: UTC days, both included (From == To is that one
    whole day); either may be empty (from the beginning, up to now)."""
    first, last = _day(since.strip(), "From"), _day(until.strip(), "To")
    if first and last and first > last:
        raise ValueError(f"From ({first.isoformat()}) is after To ({last.isoformat()}): the "
                         "period runs from the From day to the To day, both included")
    return first, last


def _day(value: str, name: str) -> Optional[date]:
    if not value:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{name} {value!r}: expected a date like 2026-11-28") from None


def _integrity(event: dict, checkpoints: list[tuple[int, int, int]]) -> dict:
    for number, size, t in checkpoints:
        if size >= event["seq"]:
            return {"sealed": True, "checkpoint": number, "checkpoint_size": size,
                    "checkpoint_time": t}
    return {"sealed": True, "checkpoint": None}


def _text(value: Optional[str]) -> str:
    # A payload text, or "" when absent or replaced ("[redacted ...]", "[hidden ...]").
    return "" if not value or value.startswith("[") else value


def _diff_lines(review: dict, model_output: str, show: bool,
                sent: bool = True) -> list[tuple[str, str]]:
    """The reviewer's change as (kind, text) lines: the SDK's unified diff when it sent
    one (and ``sent``), else one computed here from the model's output and the
    reviewer's. A later reviewer's SDK diff may be against the previous reviewer's
    text, so for them (``sent=False``) the diff against the model is computed when the
    model's output is known."""
    if not show or review.get("decision") != "modify":
        return []
    text = _text(review.get("diff"))
    if not text or (not sent and _text(model_output)):
        new = _text(review.get("modified_output"))
        if not new:
            return []
        text = _unified(model_output, new, "model output", "reviewer's output")
    return _classified(text)


def _diff_previous(review: dict, previous: Optional[dict],
                   show: bool) -> list[tuple[str, str]]:
    """A review after another review that changed the output: what this reviewer
    changed in the previous reviewer's text (after an approval the text was the
    model's, shown already; after a rejection there was none)."""
    if not show or previous is None or "modify" != review.get("decision") \
            or previous.get("decision") != "modify":
        return []
    old, new = _text(previous.get("modified_output")), _text(review.get("modified_output"))
    if not old or not new:
        return []
    return _classified(_unified(old, new, f"{previous.get('reviewer_id') or 'previous'}'s output",
                                f"{review.get('reviewer_id') or 'this reviewer'}'s output"))


def _unified(old: str, new: str, old_name: str, new_name: str) -> str:
    return "\n".join(difflib.unified_diff(old.splitlines(), new.splitlines(), old_name,
                                          new_name, lineterm=""))


def _classified(text: str) -> list[tuple[str, str]]:
    out = []
    for line in text.splitlines():
        kind = ("meta" if line.startswith(("---", "+++", "@@")) else
                "add" if line.startswith("+") else "del" if line.startswith("-") else "same")
        out.append((kind, line))
    return out


# ---------------------------------------------------------------- routes

def mount(app: FastAPI, console: Console) -> None:
    app.mount("/console/static", StaticFiles(directory=str(HERE / "static")), name="static")
    auth = console.auth

    @app.exception_handler(NotSignedIn)
    async def _signin(request: Request, exc: NotSignedIn):
        return RedirectResponse("/login?" + urlencode({"next": exc.next_url}), status_code=303)

    @app.exception_handler(StarletteHTTPException)
    async def _error(request: Request, exc: StarletteHTTPException):
        # Pages get a page a person can read; the JSON API keeps FastAPI's JSON errors.
        if not request.url.path.startswith(("/console", "/login", "/logout")):
            return await http_exception_handler(request, exc)
        who = auth.principal(request)
        return console.render(request, "error.html", who, status=exc.status_code,
                              code=exc.status_code, message=exc.detail)

    @app.get("/", include_in_schema=False)
    def root(request: Request) -> RedirectResponse:
        who = auth.principal(request)
        return RedirectResponse(landing(who.role) if who else "/console/search",
                                status_code=303)

    @app.get("/login", include_in_schema=False)
    def login_page(request: Request, next: str = "/console/search"):
        return login_form(request, next)  # no message from the URL (see render_admin)

    def login_form(request: Request, next: str, error: str = ""):
        token = auth.new_login_csrf()
        resp = console.render(request, "login.html", None, next=_safe_next(next), error=error,
                              login_csrf=token, no_users=not auth.accounts.has_users())
        resp.set_cookie(LOGIN_CSRF_COOKIE, token, httponly=True, samesite="strict",
                        secure=auth.secure_cookies, path="/login")
        return resp

    @app.post("/login", include_in_schema=False)
    def login(request: Request, username: str = Form(""), password: str = Form(""),
              csrf: str = Form(""), next: str = Form("/console/search")):
        expected = request.cookies.get(LOGIN_CSRF_COOKIE, "")
        if not expected or not _same(expected, csrf):
            return login_form(request, next, "The sign-in form expired; please try again.")
        try:  # the socket peer: a forwarded-for header is the client's to choose
            who = auth.accounts.authenticate(username, password,
                                             request.client.host if request.client else "")
        except SignInThrottled as exc:
            resp = login_form(request, next, str(exc))
            resp.status_code = exc.status
            resp.headers["Retry-After"] = retry_after(exc.retry_after)
            return resp
        if who is None:
            return login_form(request, next, "Wrong user name or password (or the account is "
                                             "disabled or temporarily locked).")
        session = auth.sessions.create(who)
        resp = RedirectResponse(_next_for(who.role, _safe_next(next)), status_code=303)
        resp.set_cookie(SESSION_COOKIE, session.id, httponly=True, samesite="strict",
                        secure=auth.secure_cookies, path="/")
        resp.delete_cookie(LOGIN_CSRF_COOKIE, path="/login")
        return resp

    @app.post("/logout", include_in_schema=False)
    def logout(request: Request, csrf: str = Form("")):
        session = auth.check_form(request, csrf)
        auth.sessions.revoke(session.id)
        resp = RedirectResponse("/login", status_code=303)
        resp.delete_cookie(SESSION_COOKIE, path="/")
        return resp

    app.get("/console/search", include_in_schema=False)(console.search_page)

    @app.get("/console/tasks", include_in_schema=False)
    def timeline_of(request: Request, task: str = ""):
        auth.page(request, "records")  # who may ask comes before what they ask
        if not task:
            raise HTTPException(400, "Which task? Give its id: /console/tasks?task=T-00042")
        return console.timeline_page(request, task)

    # Also reachable as a path (any id, ``/`` or ``%2F`` included); links use the query.
    app.get("/console/tasks/{task_id:path}", include_in_schema=False)(console.timeline_page)
    app.get("/console/export.csv", include_in_schema=False)(console.export)

    @app.get("/console/task-proofs.zip", include_in_schema=False)
    def task_proofs(request: Request, task: str = ""):
        return console.task_proofs(request, task)

    @app.get("/console/records", include_in_schema=False)
    def record_of(request: Request, id: str = ""):
        auth.page(request, "records")
        if not id.strip():
            raise HTTPException(400, "Which record? Give its id: /console/records?id=<record id>")
        return console.record_page(request, id)

    app.get("/console/charts", include_in_schema=False)(console.charts_page)
    app.get("/console/status", include_in_schema=False)(console.status_page)

    @app.post("/console/verify", include_in_schema=False)
    def verify(request: Request, csrf: str = Form(""), since: str = Form(""),
               until: str = Form("")):
        return console.run_verify(request, csrf, since, until)

    @app.post("/console/reviews", include_in_schema=False)
    def sign_off(request: Request, csrf: str = Form(""), period: str = Form(""),
                 note: str = Form("")):
        return console.sign_off(request, csrf, period, note)

    _mount_admin(app, console)


def _mount_admin(app: FastAPI, console: Console) -> None:
    auth = console.auth

    # Messages come from this server only, never from the URL (a crafted link to
    # ?error=... or ?created_token=aitk_... must show nothing): an error is kept in the
    # session and shown once on the next page; a new token is shown on the answer to
    # the form post that made it, and kept nowhere.
    def render_admin(request: Request, who: Principal, created_token: str = "",
                     error: str = "") -> HTMLResponse:
        return console.render(request, "admin.html", who, users=auth.accounts.users(),
                              tokens=auth.accounts.tokens(), roles=ROLES, error=error,
                              created_token=created_token, default_days=DEFAULT_TOKEN_DAYS)

    @app.get("/console/admin", include_in_schema=False)
    def admin(request: Request):
        who = auth.page(request, "admin")
        session = auth.session(request)
        flash, error = (session.flash if session else []), ""
        if flash:
            error = " ".join(text for kind, text in flash if kind == "error")
            flash.clear()
        return render_admin(request, who, error=error)

    @app.post("/console/admin", include_in_schema=False)
    def admin_action(request: Request, csrf: str = Form(""), action: str = Form(""),
                     username: str = Form(""), password: str = Form(""),
                     role: str = Form(""), name: str = Form(""), token_id: str = Form(""),
                     owner: str = Form(""), expires_days: str = Form("")):
        who = auth.page(request, "admin")
        auth.check_form(request, csrf)
        accounts = auth.accounts
        actions = {
            "add_user": lambda: accounts.add_user(username, password, role),
            "set_role": lambda: accounts.set_role(username, role),
            "disable": lambda: accounts.disable_user(username),
            "enable": lambda: accounts.enable_user(username),
            "remove": lambda: accounts.remove_user(username),
            "create_token": lambda: accounts.create_token(name, role, owner or who.name,
                                                          _days(expires_days)),
            "revoke_token": lambda: accounts.revoke_token(token_id),
        }
        if action not in actions:
            raise HTTPException(400, f"unknown action {action!r}")
        try:
            result = actions[action]()
        except AccountError as exc:
            session = auth.session(request)
            if session is None:  # an admin token, not a sign-in: say it on this answer
                return render_admin(request, who, error=str(exc))
            session.flash.append(("error", str(exc)))
            return RedirectResponse("/console/admin", status_code=303)
        _seal_admin(console, who, action, result, username=username, role=role, name=name,
                    token_id=token_id, owner=owner or who.name)
        if action in ("disable", "remove", "set_role"):
            auth.sessions.revoke_user(username)
        if action == "create_token":
            # Shown once, on this response only; never stored or logged.
            return render_admin(request, who, created_token=result[1])
        return RedirectResponse("/console/admin", status_code=303)


def _days(value: str) -> int:
    if not value.strip():
        return DEFAULT_TOKEN_DAYS
    try:
        return int(value)
    except ValueError:
        raise AccountError(f"token expiry {value!r}: expected a whole number of days") \
            from None


# console action -> the sealed admin action (ledger/admin_log.py)
_SEALED = {"add_user": "user_added", "set_role": "role_changed", "disable": "user_disabled",
           "enable": "user_enabled", "remove": "user_removed", "create_token": "token_created",
           "revoke_token": "token_revoked"}


def _seal_admin(console: Console, who: Principal, action: str, result: Any, *, username: str,
                role: str, name: str, token_id: str, owner: str) -> None:
    details: dict[str, Any] = {}
    if action in ("add_user", "set_role"):
        details["role"] = role
    if action in ("disable", "remove") and result:
        details["tokens_revoked"] = ",".join(result)
    if action == "create_token":
        token_id = result[0]
        created = next((t for t in console.auth.accounts.tokens()
                        if t["token_id"] == token_id), {})
        details.update(name=name, role=role, owner=owner, expires=created.get("expires", ""))
    target = f"token:{token_id}" if action.endswith("_token") else f"user:{username}"
    console.access.admin(who, _SEALED[action], target, details, via="console")


def _safe_next(target: str) -> str:
    # Only paths on this console: an open redirect would help phishing.
    if not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/console/search"
    return target


def landing(role: str) -> str:
    """The first console page ``role`` may open: where a sign-in without a usable
    target lands (a role with none gets the search page's "Not allowed")."""
    return next((path for path, permission in PAGES if allowed(role, permission)),
                "/console/search")


def _next_for(role: str, target: str) -> str:
    # The page asked for, unless the role may not open it: then its start page (the
    # default target, the search, is one an admin may not open).
    path = target.split("?", 1)[0].split("#", 1)[0]
    needs = next((permission for page, permission in PAGES
                  if path == page or path.startswith(page + "/")), None)
    return target if needs is None or allowed(role, needs) else landing(role)


def _same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())
