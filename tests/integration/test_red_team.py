"""Regression tests for the security review of issue 11 (a collector on loopback with
three roles): what held then must keep holding.

One collector with console accounts (auditor, analyst, admin) and the known console
scenario serves the whole module; the tests that store records use task ids of
their own, and the last test (200 concurrent calls) stops it and verifies the store.
A second, small collector with API keys and tight limits serves the gRPC tests.

Covered elsewhere, and not repeated here: API keys missing / malformed / unknown /
revoked, revoked while running (test_security.py), oversized messages and too many records per batch with
configured limits (test_bad_input.py), SQL metacharacters stored verbatim in every
field (test_bad_input.py), the permission table itself (test_accounts.py).

Written to keep passing while sign-in gets rate limited: each user signs in a few
times only, and never fails a sign-in.
"""

from __future__ import annotations

import csv
import html
import http.client
import io
import re
import threading
import urllib.parse
from concurrent import futures
from pathlib import Path
from typing import Optional
from unittest import mock

import grpc
import httpx
import pytest
from support import (
    FORMULA,
    CollectorProc,
    ConsoleSite,
    cli,
    console_scenario,
    count_records,
    make_record,
    stub,
    verdict,
)

from aitrail.v1 import audit_pb2 as pb
from aitrail_collector.web.auth.accounts import PERMISSIONS, ROLES, Accounts

USERS = {"rt-audrey": ("auditor", "rt-audrey-passw0rd-long"),
         "rt-andy": ("analyst", "rt-andy-passw0rd-long"),
         "rt-ada": ("admin", "rt-ada-passw0rd-long!")}
BY_ROLE = {role: name for name, (role, _) in USERS.items()}
# uvicorn trusts X-Forwarded-For from loopback: this makes a request look remote.
REMOTE = {"X-Forwarded-For": "203.0.113.7"}
EVIL = "evil.example"


# ---------------------------------------------------------------- the collectors

@pytest.fixture(scope="module")
def site(tmp_path_factory):
    base = tmp_path_factory.mktemp("redteam")
    users_file = base / "users.json"
    accounts = Accounts(str(users_file))
    for name, (role, password) in USERS.items():
        accounts.add_user(name, password, role)
    proc = CollectorProc(base / "store", "--users", str(users_file)).start()
    s = ConsoleSite(proc, users_file)
    console_scenario(proc.grpc, s.trace_id)
    yield s
    proc.stop()


@pytest.fixture(scope="module")
def tokens(site) -> dict[str, str]:
    return {role: site.token(role) for role in ROLES}


class Signed:
    """A console session: an HTTP client holding the session cookie, and its CSRF token."""

    def __init__(self, client: httpx.Client, csrf: str):
        self.client, self.csrf = client, csrf


def _client(site) -> httpx.Client:
    return httpx.Client(base_url=site.url, follow_redirects=False, timeout=120)


def _hidden(page: str, name: str) -> str:
    m = re.search(rf'name="{name}" value="([^"]*)"', page)
    assert m, (name, page[:2000])
    return html.unescape(m.group(1))


def _sign_in(site, user: str, next_path: str) -> tuple[httpx.Client, httpx.Response]:
    client = _client(site)
    form = client.get("/login", params={"next": next_path})
    assert form.status_code == 200
    resp = client.post("/login", data={"username": user, "password": USERS[user][1],
                                       "csrf": _hidden(form.text, "csrf"),
                                       "next": _hidden(form.text, "next")})
    assert resp.status_code == 303, resp.text[:2000]
    return client, resp


@pytest.fixture(scope="module")
def sessions(site) -> dict[str, Signed]:
    out = {}
    for role, user in BY_ROLE.items():
        # A safe next the role may open is kept (an analyst may not verify).
        target = "/console/status" if _may(role, "verify") else "/console/search"
        client, resp = _sign_in(site, user, target)
        assert resp.headers["location"] == target
        page = client.get(target)
        assert page.status_code == 200
        out[role] = Signed(client, _hidden(page.text, "csrf"))
    yield out
    for s in out.values():
        s.client.close()


# ---------------------------------------------------------------- 1. every route

def _walk(routes):
    from starlette.routing import Mount
    for r in routes:
        if hasattr(r, "original_router"):  # an included router (FastAPI >= 0.1xx)
            yield from _walk(r.original_router.routes)
        elif isinstance(r, Mount):
            yield ("MOUNT", r.path)
        elif hasattr(r, "methods") and r.methods:
            yield from ((m, r.path) for m in r.methods - {"HEAD"})


def _app_routes() -> set[tuple[str, str]]:
    """Every route of the web app as built by create_app (over stand-in services)."""
    from aitrail_collector.web.app import create_app
    # A path parameter's converter (``{task_id:path}``) is not part of its name.
    return {(m, p.replace(":path}", "}")) for m, p in _walk(create_app(mock.MagicMock()).routes)}


# Routes not in the OpenAPI document: the console. A new one must be added here.
CONSOLE_ROUTES = {
    ("GET", "/"), ("GET", "/login"), ("POST", "/login"), ("POST", "/logout"),
    ("GET", "/console/search"), ("GET", "/console/tasks/{task_id}"),
    ("GET", "/console/tasks"), ("GET", "/console/records"),
    ("GET", "/console/export.csv"), ("GET", "/console/charts"), ("GET", "/console/status"),
    ("POST", "/console/verify"), ("GET", "/console/admin"), ("POST", "/console/admin"),
    ("GET", "/console/task-proofs.zip"), ("POST", "/console/reviews"),
    ("MOUNT", "/console/static"),
    # FastAPI's own documentation routes.
    ("GET", "/openapi.json"), ("GET", "/docs"), ("GET", "/docs/oauth2-redirect"),
    ("MOUNT", "/docs/static"),
}
# What anyone may reach without credentials, and why. Everything else is refused.
PUBLIC = {
    ("GET", "/healthz"): "liveness",
    ("GET", "/login"): "the sign-in form",
    ("POST", "/login"): "signing in",
    ("GET", "/"): "a redirect to /console/search (which needs sign-in)",
    ("MOUNT", "/console/static"): "the stylesheet of the sign-in page",
    ("GET", "/api/v1/public-key"): "the checkpoint verification key (verifiers need it)",
    ("GET", "/openapi.json"): "the API's description, no data",
    ("GET", "/docs"): "the API's description, no data",
    ("GET", "/docs/oauth2-redirect"): "part of /docs",
    ("MOUNT", "/docs/static"): "Swagger UI's files, served here (no CDN)",
    # Ingest, not the console: it takes the ingest API keys, and without --api-keys it is
    # open like the native gRPC service (test_otlp_receiver.py covers both).
    ("POST", "/v1/traces"): "OTLP/HTTP ingest (API keys when --api-keys is given)",
}
PATH_VALUES = {"task_id": "T-console-1",
               "figure": "override-daily",
               "record_id": "0190c9a8-0000-7000-8000-000000000000"}
# Query strings / bodies that get past validation, so what answers is the guard.
QUERY = {"/api/v1/proofs/inclusion": "index=0&size=1", "/api/v1/timeline": "task=T-console-1",
         "/console/tasks": "task=T-console-1",
         "/api/v1/proofs/consistency": "size1=1&size2=2"}
BODY = {"/api/v1/erase": {"task": "T-does-not-exist", "reason": "red team"}}
FORMS = {"/console/admin": {"action": "remove", "username": "rt-andy"},
         "/console/verify": {}, "/logout": {}}


def _openapi_routes(site) -> set[tuple[str, str]]:
    status, spec = site.api("/openapi.json")
    assert status == 200
    return {(method.upper(), path) for path, ops in spec["paths"].items() for method in ops}


def _concrete(path: str) -> str:
    for name, value in PATH_VALUES.items():
        path = path.replace("{" + name + "}", value)
    return path


def _call(client: httpx.Client, method: str, path: str, headers=None) -> httpx.Response:
    url = _concrete(path)
    if path in QUERY:
        url += "?" + QUERY[path]
    if path == "/console/static":
        url = "/console/static/console.css"
    if path == "/docs/static":
        url = "/docs/static/swagger-ui.css"
    if method == "GET":
        return client.get(url, headers=headers)
    if path in BODY:
        return client.post(url, json=BODY[path], headers=headers)
    return client.post(url, data=FORMS.get(path, {}), headers=headers)


def test_every_route_is_listed_and_public_ones_are_only_the_listed(site):
    api = _openapi_routes(site)
    routes = _app_routes()
    # The real collector's OpenAPI and the app's routes agree, and every route the
    # OpenAPI leaves out is in CONSOLE_ROUTES: a new route must be added there.
    assert {r for r in routes
            if r[1].startswith(("/api/", "/v1/")) or r[1] == "/healthz"} == api
    assert routes - api == CONSOLE_ROUTES, (routes - api) ^ CONSOLE_ROUTES
    assert set(PUBLIC) <= routes


@pytest.mark.parametrize("headers", [REMOTE, {}], ids=["remote", "loopback"])
def test_every_route_refuses_unauthenticated_requests(site, headers):
    users = Accounts(str(site.users_file)).users()
    api = _openapi_routes(site)
    with _client(site) as client:
        for method, path in sorted(_app_routes()):
            resp = _call(client, method, path, headers)
            where = (method, path, resp.status_code, resp.text[:300])
            if (method, path) in PUBLIC:
                assert resp.status_code < 500, where
                continue
            if (method, path) in api:
                assert resp.status_code == 401, where
                assert resp.headers.get("www-authenticate") == "Bearer", where
            elif resp.status_code == 303:
                assert resp.headers["location"].startswith("/login"), where
            else:
                assert resp.status_code in (401, 403), where
            # Forged credentials change nothing.
            for forged in ({"Authorization": "Bearer aitk_000000000000_forged"},
                           {"Cookie": "aitrail_session=forged-session-id"}):
                again = _call(client, method, path, {**headers, **forged})
                assert again.status_code == resp.status_code, (where, forged)
    assert Accounts(str(site.users_file)).users() == users  # the admin form did nothing


def test_public_routes_give_nothing_away(site):
    with _client(site) as client:
        assert client.get("/healthz", headers=REMOTE).json()["ok"] is True
        root = client.get("/", headers=REMOTE)
        assert (root.status_code, root.headers["location"]) == (303, "/console/search")
        login = client.get("/login", headers=REMOTE)
        assert login.status_code == 200 and 'name="password"' in login.text
        for secret in ("T-console-1", "rev-ann", "Ticket:"):  # no record data
            assert secret not in login.text


# ---------------------------------------------------------------- 2. the role matrix

# Every API route and the permission it needs (None: public). From the routers.
API_PERMISSION: dict[tuple[str, str], Optional[str]] = {
    ("GET", "/healthz"): None,
    ("GET", "/api/v1/records"): "records",
    ("GET", "/api/v1/tasks/{task_id}/timeline"): "records",
    ("GET", "/api/v1/timeline"): "records",
    ("GET", "/api/v1/records/{record_id}/proof"): "records",
    ("GET", "/api/v1/export.csv"): "export",
    ("GET", "/api/v1/summary"): "aggregates",
    ("GET", "/api/v1/dashboards/{figure}"): "aggregates",
    ("GET", "/api/v1/verify"): "verify",
    ("GET", "/api/v1/proofs/inclusion"): "verify",
    ("GET", "/api/v1/proofs/consistency"): "verify",
    ("GET", "/api/v1/checkpoints"): "verify",
    ("GET", "/api/v1/public-key"): None,
    ("POST", "/api/v1/erase"): "erase",
    ("POST", "/v1/traces"): None,  # OTLP ingest: API keys, not console roles
}
CONSOLE_PERMISSION: dict[tuple[str, str], str] = {
    ("GET", "/console/search"): "records",
    ("GET", "/console/tasks/{task_id}"): "records",
    ("GET", "/console/tasks"): "records",
    ("GET", "/console/records"): "records",
    ("GET", "/console/export.csv"): "export",
    ("GET", "/console/charts"): "aggregates",
    ("GET", "/console/status"): "verify",
    ("POST", "/console/verify"): "verify",
    ("GET", "/console/task-proofs.zip"): "records",
    ("POST", "/console/reviews"): "review",
    ("GET", "/console/admin"): "admin",
    ("POST", "/console/admin"): "admin",
}


def _may(role: str, permission: Optional[str]) -> bool:
    """From the permission table itself, not from allowed()."""
    return permission is None or role in PERMISSIONS[permission][0]


def test_role_matrix_of_every_api_route(site, tokens):
    assert set(API_PERMISSION) == _openapi_routes(site), \
        set(API_PERMISSION) ^ _openapi_routes(site)
    with _client(site) as client:
        for (method, path), permission in sorted(API_PERMISSION.items()):
            for role in ROLES:
                resp = _call(client, method, path, {"Authorization": f"Bearer {tokens[role]}"})
                where = (role, method, path, resp.status_code, resp.text[:300])
                assert resp.status_code < 500, where
                if _may(role, permission):
                    assert resp.status_code not in (401, 403), where
                else:
                    assert resp.status_code == 403, where
                    assert f"role {role!r} may not" in resp.json()["detail"], where
    # What the allowed calls returned is what they should.
    assert site.api("/api/v1/records?task=T-console-1", tokens["analyst"])[1]["total"] == 4
    assert site.api("/api/v1/erase", tokens["auditor"], "POST", BODY["/api/v1/erase"])[0] == 404


def test_role_matrix_of_every_console_route(site, sessions):
    console = {r for r in _app_routes() if r[1].startswith("/console/") and r[0] != "MOUNT"}
    assert set(CONSOLE_PERMISSION) == console, set(CONSOLE_PERMISSION) ^ console
    before = Accounts(str(site.users_file)).users()
    for (method, path), permission in sorted(CONSOLE_PERMISSION.items()):
        for role in ROLES:
            s = sessions[role]
            url = _concrete(path) + ("?preset=all&task=T-console-1" if "export" in path else "")
            if method == "GET":
                resp = s.client.get(url)
            else:  # a valid form; the admin action is one that does nothing
                resp = s.client.post(url, data={"csrf": s.csrf, "action": "no-such-action"})
            where = (role, method, path, resp.status_code)
            assert resp.status_code < 500, where
            if _may(role, permission):
                assert resp.status_code in (200, 303, 400), where
            else:
                assert resp.status_code == 403, where
    assert Accounts(str(site.users_file)).users() == before


# ---------------------------------------------------------------- 3. CSRF

def _state(site, sessions) -> tuple:
    acc = Accounts(str(site.users_file))
    status = sessions["auditor"].client.get("/console/status").text
    result = re.search(r'data-testid="verify-result".*?</p>', status, re.S)
    assert result, status[:2000]
    return acc.users(), acc.tokens(), re.sub(r"[\d.]+ (s|min|h|d) ago", "", result.group(0))


ADMIN_ACTIONS = [
    {"action": "add_user", "username": "csrf-victim", "password": "csrf-passw0rd-long",
     "role": "admin"},
    {"action": "set_role", "username": "rt-andy", "role": "admin"},
    {"action": "disable", "username": "rt-andy"},
    {"action": "enable", "username": "rt-andy"},
    {"action": "remove", "username": "rt-andy"},
    {"action": "create_token", "name": "csrf-token", "role": "auditor"},
    {"action": "revoke_token", "token_id": "TOKEN"},
]


def test_every_console_post_without_the_right_csrf_token_is_refused(site, sessions, tokens):
    admin, other = sessions["admin"], sessions["auditor"]
    token_id = Accounts(str(site.users_file)).tokens()[0]["token_id"]
    before = _state(site, sessions)
    posts = [("/console/admin", dict(a, token_id=token_id) if "token_id" in a else a)
             for a in ADMIN_ACTIONS]
    posts += [("/console/verify", {"since": "", "until": ""}), ("/logout", {})]
    for path, form in posts:
        for csrf in (None, "", "forged", other.csrf, admin.csrf + "x", admin.csrf[:-1]):
            data = dict(form) if csrf is None else dict(form, csrf=csrf)
            resp = admin.client.post(path, data=data)
            assert resp.status_code == 403, (path, form, csrf, resp.status_code)
            assert "CSRF" in resp.text
    assert _state(site, sessions) == before
    # The session survived the forged sign-out.
    assert admin.client.get("/console/admin").status_code == 200
    # Without a session cookie at all: refused too.
    with _client(site) as anonymous:
        for path, form in posts:
            resp = anonymous.post(path, data=dict(form, csrf=admin.csrf))
            assert resp.status_code in (303, 401, 403), (path, resp.status_code)
    assert _state(site, sessions) == before


def test_sign_in_without_the_login_csrf_token_is_refused(site):
    user = "rt-audrey"
    with _client(site) as client:
        client.get("/login")  # has the login CSRF cookie, but sends another token
        for csrf in ("", "forged"):
            resp = client.post("/login", data={"username": user, "password": USERS[user][1],
                                               "csrf": csrf, "next": "/console/search"})
            assert resp.status_code == 200 and "form expired" in resp.text
            assert "aitrail_session" not in resp.headers.get("set-cookie", "")
        assert client.get("/console/search").status_code == 303  # not signed in


# ---------------------------------------------------------------- 4. redirects

NEXT_VALUES = [
    f"https://{EVIL}/", f"http://{EVIL}", f"//{EVIL}", f"///{EVIL}", f"////{EVIL}/x",
    f"/\\{EVIL}", f"\\\\{EVIL}", f"\\/{EVIL}", f"/\\/{EVIL}", f"/\t/{EVIL}", f"/\n/{EVIL}",
    f"/\r/{EVIL}", f" //{EVIL}", f"\t//{EVIL}", f"https:{EVIL}", f"https:/{EVIL}",
    f"/%2F{EVIL}", f"/%5C{EVIL}", f"%2F%2F{EVIL}", f"/console/../\\{EVIL}",
    f"/.//{EVIL}", f"/x/..//{EVIL}", "javascript:window.__xss=1",
    "JavaScript:window.__xss=1", " javascript:window.__xss=1",
    "data:text/html,<script>window.__xss=1</script>", f"@{EVIL}", f"{EVIL}",
    f"http://127.0.0.1@{EVIL}/", "/\x00//" + EVIL, "\x00" + f"//{EVIL}",
]


def _off_site(site_url: str, location: str) -> bool:
    """Where a browser would go: WHATWG URL parsing strips leading/trailing C0 controls
    and spaces, removes tabs and newlines anywhere, and reads \\ as / in http(s) URLs."""
    loc = location.strip("".join(map(chr, range(0x21))))
    loc = re.sub(r"[\t\n\r]", "", loc).replace("\\", "/")
    target = urllib.parse.urlsplit(urllib.parse.urljoin(site_url + "/login", loc))
    here = urllib.parse.urlsplit(site_url)
    return (target.scheme, target.netloc) != (here.scheme, here.netloc)


def _follow_the_form(client, value: str, user: str, password: str):
    """What a browser does: the form from /login?next=..., posted back as it came."""
    form = client.get("/login", params={"next": value})
    assert form.status_code == 200, value
    return client.post("/login", data={"username": user, "password": password,
                                       "csrf": _hidden(form.text, "csrf"),
                                       "next": _hidden(form.text, "next")})


def test_login_next_never_leads_off_site(tmp_path):
    """Every value, through the real app in this process (a fresh one per value, so no
    sign-in rate limit is involved), over real accounts and sessions."""
    from argon2 import PasswordHasher
    from starlette.testclient import TestClient

    from aitrail_collector.web.app import create_app
    from aitrail_collector.web.auth.guard import WebAuth
    fast = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
    users = str(tmp_path / "users.json")
    Accounts(users, hasher=fast).add_user("redirected", "redirected-passw0rd", "auditor")
    for value in NEXT_VALUES + ["/console/charts?days=7"]:
        auth = WebAuth(Accounts(users, hasher=fast))
        with TestClient(create_app(mock.MagicMock(auth=auth)), base_url="http://console.test",
                        follow_redirects=False) as client:
            resp = _follow_the_form(client, value, "redirected", "redirected-passw0rd")
            assert resp.status_code == 303, (value, resp.text[:500])
            location = resp.headers["location"]
            assert not _off_site("http://console.test", location), (value, location)
            # A post of the form that fails its CSRF check keeps the target safe too.
            again = client.post("/login", data={"next": value, "csrf": "x"})
            assert again.status_code == 200
    assert location == "/console/charts?days=7"  # a page of the console is kept


def test_login_next_never_leads_off_site_on_a_real_collector(site):
    # One sign-in per user (a sign-in rate limit may arrive), the nastiest kinds.
    for user, value in zip(USERS, (f"/\\{EVIL}", f"/\t/{EVIL}", f"//{EVIL}")):
        with _client(site) as client:
            resp = _follow_the_form(client, value, user, USERS[user][1])
        assert resp.status_code == 303
        assert not _off_site(site.url, resp.headers["location"]), (value, resp.headers)


def test_sign_in_redirect_keeps_the_requested_page(site):
    with _client(site) as client:
        resp = client.get("/console/charts?days=7", headers=REMOTE)
        assert resp.status_code == 303
        target = urllib.parse.parse_qs(urllib.parse.urlsplit(resp.headers["location"]).query)
        assert target["next"] == ["/console/charts?days=7"]


# ---------------------------------------------------------------- 5. path traversal

def _raw(site, path: str, headers: Optional[dict] = None) -> tuple[int, bytes]:
    """A GET with the path sent exactly as given (no client-side normalising)."""
    conn = http.client.HTTPConnection("127.0.0.1", site.proc.http_port, timeout=60)
    try:
        conn.putrequest("GET", path, skip_accept_encoding=True)
        for k, v in (headers or {}).items():
            conn.putheader(k, v)
        conn.endheaders()
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def _secrets(site) -> list[bytes]:
    data = Path(site.data_dir)
    out = [b"root:x:0:0", b"def mount(", b"{% extends", b"password_hash", b"$argon2",
           b"PRIVATE KEY", str(data).encode(), str(site.users_file).encode()]
    local = data / "local-token"
    if local.exists():
        out.append(local.read_bytes().strip())
    return out


TRAVERSALS = [
    "../../../../../../../etc/passwd", "..%2f..%2f..%2f..%2f..%2f..%2f..%2fetc%2fpasswd",
    "%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
    "%2e%2e%2f%2e%2e%2f%2e%2e%2f%2e%2e%2f%2e%2e%2f%2e%2e%2f%2e%2e%2fetc%2fpasswd",
    "..%5c..%5c..%5c..%5c..%5c..%5cetc%5cpasswd", "%252e%252e/%252e%252e/etc/passwd",
    "..%c0%af..%c0%afetc%c0%afpasswd", "....//....//....//etc/passwd", "/etc/passwd",
    "%2fetc%2fpasswd", "../pages.py", "..%2fpages.py", "%2e%2e/pages.py", ".%2e/pages.py",
    "../templates/base.html", "%2e%2e%2ftemplates%2fbase.html", "..;/pages.py",
    "console.css/../../pages.py", "console.css%00../../pages.py",
]


def test_static_files_never_leave_the_static_dir(site, sessions):
    status, body = _raw(site, "/console/static/console.css")
    assert status == 200 and b"{" in body  # the control: the stylesheet is served
    data = Path(site.data_dir)
    targets = TRAVERSALS + [
        "../" * 12 + str(data).lstrip("/") + "/console-users.json",
        urllib.parse.quote("../" * 12 + str(site.users_file).lstrip("/"), safe=""),
        urllib.parse.quote(str(site.users_file), safe=""),
        "../" * 12 + str(data).lstrip("/") + "/signing-key.pem",
        "../" * 12 + str(data).lstrip("/") + "/local-token",
    ]
    cookie = {"Cookie": "aitrail_session=" + sessions["auditor"].client.cookies["aitrail_session"]}
    for target in targets:
        for headers in ({}, cookie):
            status, body = _raw(site, "/console/static/" + target, headers)
            assert status in (400, 404), (target, status, body[:300])
            for secret in _secrets(site):
                assert secret not in body, (target, secret)


def test_task_id_routes_never_read_files(site, sessions, tokens):
    auth = {"Authorization": f"Bearer {tokens['auditor']}"}
    cookie = {"Cookie": "aitrail_session=" + sessions["auditor"].client.cookies["aitrail_session"]}
    ids = ["..%2f..%2f..%2f..%2fetc%2fpasswd", "%2e%2e", "%2e%2e%2fconsole-users.json",
           "..%2fsigning-key.pem", "..%5c..%5cetc%5cpasswd", "%2fetc%2fpasswd", "..", "."]
    for task in ids:
        for path, headers in ((f"/api/v1/tasks/{task}/timeline", auth),
                              (f"/console/tasks/{task}", cookie),
                              (f"/api/v1/records/{task}/proof", auth)):
            status, body = _raw(site, path, headers)
            assert status in (400, 404), (path, status, body[:300])
            for secret in _secrets(site):
                assert secret not in body, (path, secret)


# ---------------------------------------------------------------- 7. SQL injection

INJECTIONS = ["'", "\\", "\\'", "' OR 1=1 --", "') OR ('1'='1", "\" OR \"\"=\"",
              "1; DROP TABLE aitrail.envelopes; --", "' UNION SELECT * FROM system.tables --",
              "{x:String}", "{task:String}", "a\x00b", "\x00", "%", "\\0"]
STRING_FILTERS = ("task", "reviewer", "request_id", "service")
OTHER_FILTERS = ("trace_id", "record_id", "type", "since", "until", "sort", "order",
                 "limit", "offset")


@pytest.fixture(scope="module")
def injected(site):
    """One review per injection string, carrying it in every filtered field."""
    records = [make_record("review", task_id=v, request_id=v, service=v, **{
        "review.reviewer_id": v, "review.decision": "approve"}) for v in INJECTIONS]
    reply = stub(site.grpc).Export(pb.ExportRequest(records=records), timeout=60)
    assert reply.accepted == len(INJECTIONS), list(reply.rejected)
    return {r.record_id: r for r in records}


def _all_records(site, token) -> int:
    return site.api("/api/v1/records?limit=1", token)[1]["total"]


def test_sql_injection_in_every_api_filter(site, tokens, injected):
    token = tokens["auditor"]
    column = {"task": "task_id", "reviewer": "reviewer_id", "request_id": "request_id",
              "service": "service"}
    cases = [(name, value) for name in STRING_FILTERS + OTHER_FILTERS for value in INJECTIONS]
    exist = _all_records(site, token) + len(cases)  # each search seals one read more
    with futures.ThreadPoolExecutor(8) as pool:  # the reads are sealed in groups
        answers = list(pool.map(lambda c: site.api("/api/v1/records?" + urllib.parse.urlencode(
            {c[0]: c[1], "limit": 100}), token), cases))
    for (name, value), (status, body) in zip(cases, answers):
        where = (name, value, status, str(body)[:300])
        assert status in (200, 400), where
        if status == 400:
            assert body["detail"], where
            continue
        assert body["total"] <= exist and len(body["records"]) <= exist, where
        if name in column:  # exactly the one record that carries the value
            assert [r[column[name]] for r in body["records"]] == [value], where
        elif name == "record_id":
            assert body["total"] == 0, where
    # The real ids still find their records, and nothing was lost.
    for rid, rec in injected.items():
        status, body = site.api("/api/v1/records?" + urllib.parse.urlencode(
            {"record_id": rid}), token)
        assert status == 200 and body["records"][0]["task_id"] == rec.task_id


def test_sql_injection_in_every_console_filter(site, sessions, injected):
    s = sessions["auditor"]
    cases = []
    for name in ("task", "reviewer", "request_id", "trace_id", "type", "since", "until",
                 "sort", "order", "page", "preset"):
        for value in INJECTIONS:
            params = {name: value, "preset": "all"} if name != "preset" else {name: value}
            if name in ("since", "until"):
                params["preset"] = "custom"
            cases.append((name, value, params))
    with futures.ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda c: s.client.get("/console/search", params=c[2]), cases))
    for (name, value, _), resp in zip(cases, answers):
        where = (name, value, resp.status_code)
        assert resp.status_code in (200, 400), where
        if resp.status_code == 200 and name in ("task", "reviewer", "request_id"):
            # The console's id search takes a case-insensitive, trimmed prefix: the
            # injection matches, as data, exactly the injected ids that start with it.
            typed = value.strip().lower()
            expected = sum(1 for v in INJECTIONS if v.lower().startswith(typed))
            total = re.search(r'data-testid="total">([\d,]+) record', resp.text)
            assert total and total.group(1) == str(expected), where


def test_after_the_injections_the_collector_still_works(site, tokens, injected):
    token = tokens["auditor"]
    reply = stub(site.grpc).Export(pb.ExportRequest(records=[make_record(task_id="T-rt-after")]),
                                   timeout=60)
    assert reply.accepted == 1
    assert site.api("/api/v1/records?task=T-rt-after", token)[1]["total"] == 1
    status, body = site.api("/api/v1/records?task=T-console-1", token)
    assert status == 200 and body["total"] == 4
    status, body = site.api("/api/v1/verify", token)
    assert status == 200 and body["ok"] is True, body


# ---------------------------------------------------------------- 8. CSV formula prefix

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")  # at least these; more may be added


def _csv(text: str) -> list[dict]:
    return list(csv.DictReader(io.StringIO(text.lstrip("\ufeff"), newline="")))


def test_csv_export_prefixes_formula_cells(site, tokens, sessions):
    records = []
    for i, start in enumerate(FORMULA_STARTS):
        value = f"{start}cmd|' /C calc'!A{i}"
        rec = make_record("resolution", task_id=f"T-rt-csv-{i}", **{
            "resolution.outcome": value, "resolution.final_decision": value})
        rec.attributes["note"] = "x"
        records.append((value, rec))
    plain = make_record("resolution", task_id="T-rt-csv-plain", **{
        "resolution.outcome": "closed", "resolution.final_decision": "a = b + c"})
    reply = stub(site.grpc).Export(pb.ExportRequest(records=[r for _, r in records] + [plain]),
                                   timeout=60)
    assert reply.accepted == len(records) + 1
    exports = []
    for i in range(len(records)):
        status, text = site.api(f"/api/v1/export.csv?task=T-rt-csv-{i}", tokens["auditor"])
        assert status == 200
        exports.append(("api", i, _csv(text)))
        resp = sessions["auditor"].client.get("/console/export.csv", params={
            "task": f"T-rt-csv-{i}", "preset": "all"})
        assert resp.status_code == 200
        exports.append(("console", i, _csv(resp.content.decode("utf-8"))))
    for via, i, rows in exports:
        value = records[i][0]
        assert len(rows) == 1, (via, i)
        for column in ("resolution_outcome", "final_decision"):
            assert rows[0][column] == "'" + value, (via, column, rows[0][column])
    status, text = site.api("/api/v1/export.csv?task=T-rt-csv-plain", tokens["auditor"])
    assert _csv(text)[0]["final_decision"] == "a = b + c"  # only the start counts
    status, text = site.api("/api/v1/export.csv?task=T-console-1", tokens["auditor"])
    assert [r["final_decision"] for r in _csv(text) if r["final_decision"]] == ["'" + FORMULA]


def test_csv_cell_prefixes_formula_starts():
    from aitrail.record.csv_format import csv_cell
    for start in FORMULA_STARTS:
        assert csv_cell(start + "1+1") == "'" + start + "1+1"
        assert csv_cell({start + "k": "v"}) == "'" + start + "k=v"
    assert csv_cell("plain =1") == "plain =1" and csv_cell("") == "" and csv_cell(None) == ""


# ---------------------------------------------------------------- 9. gRPC auth and limits

@pytest.fixture(scope="module")
def keyed(tmp_path_factory):
    d = tmp_path_factory.mktemp("rt-keyed")
    keys_file = d / "keys.json"
    out = cli("apikey", "create", "--keys-file", str(keys_file), "--service", "svc-rt")
    assert out.returncode == 0, out.stderr
    proc = CollectorProc(d / "store", "--api-keys", str(keys_file), "--max-message-bytes",
                         "200000", "--max-records-per-batch", "10").start()
    proc.keys_file, proc.key = keys_file, out.stdout.strip()
    yield proc
    proc.stop()


def _grpc_refused(proc, records, metadata) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        stub(proc.grpc).Export(pb.ExportRequest(records=records), timeout=10, metadata=metadata)
    return info.value


def test_grpc_refusals_write_nothing_whatever_the_batch(keyed):
    bearer = (("authorization", f"Bearer {keyed.key}"),)
    big = [make_record(service="svc-rt", **{"resolution.final_decision": "x" * 50_000})
           for _ in range(5)]
    many = [make_record(service="svc-rt") for _ in range(11)]
    before = count_records(keyed)
    # No key: refused before anything else is looked at, whatever the batch holds.
    for batch in (many, [make_record(service="svc-rt")]):
        err = _grpc_refused(keyed, batch, None)
        assert err.code() == grpc.StatusCode.UNAUTHENTICATED, err.details()
    # A key of the right shape that nobody issued.
    forged = (("authorization", "Bearer ait_0123456789ab_" + "y" * 43),)
    assert _grpc_refused(keyed, many[:1], forged).code() == grpc.StatusCode.UNAUTHENTICATED
    # With the key: too many records, too many bytes.
    err = _grpc_refused(keyed, many, bearer)
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and "the limit is 10" in err.details()
    err = _grpc_refused(keyed, big, bearer)
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, err.details()
    err = _grpc_refused(keyed, big, None)
    assert err.code() in (grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.UNAUTHENTICATED)
    assert count_records(keyed) == before
    # Then a good batch of exactly the limit lands whole.
    ok = stub(keyed.grpc).Export(pb.ExportRequest(records=many[:10]), timeout=10,
                                 metadata=bearer)
    assert (ok.accepted, list(ok.rejected)) == (10, [])
    assert count_records(keyed) == before + 10


# ---------------------------------------------------------------- 10. 200 concurrent calls

def test_200_concurrent_api_calls_and_grpc_batches_all_answer_correctly(site, tokens):
    """Last in the module: it stops the collector to verify the store directly."""
    token = tokens["auditor"]
    calls = ([("search", "/api/v1/records?task=T-console-1")] * 80
             + [("timeline", "/api/v1/tasks/T-console-1/timeline")] * 60
             + [("summary", "/api/v1/summary")] * 34
             + [("dashboard", "/api/v1/dashboards/override-daily")] * 20
             + [("verify", "/api/v1/verify")] * 6)
    assert len(calls) == 200
    # Every read but verification is sealed as a data_access record (summaries and
    # dashboards too, since issue 11).
    audited = sum(1 for kind, _ in calls if kind != "verify")
    batches = [[make_record(task_id=f"T-rt-conc-{b}-{i}") for i in range(20)]
               for b in range(20)]
    reads_before = site.api("/api/v1/records?type=data_access&limit=1", token)[1]["total"]
    before = site.api("/api/v1/summary", token)[1]["records"]  # then sealed as read
    start = threading.Barrier(len(calls) + len(batches))

    def api(call):
        kind, path = call
        start.wait(60)
        return kind, site.api(path, token)

    def export(batch):
        start.wait(60)
        return stub(site.grpc).Export(pb.ExportRequest(records=batch), timeout=120)

    with futures.ThreadPoolExecutor(len(calls) + len(batches)) as pool:
        api_results = [pool.submit(api, c) for c in calls]
        grpc_results = [pool.submit(export, b) for b in batches]
        answers = [f.result(180) for f in api_results]
        replies = [f.result(180) for f in grpc_results]
    for kind, (status, body) in answers:
        assert status == 200, (kind, status, str(body)[:300])
        if kind == "search":
            assert body["total"] == 4 and len(body["records"]) == 4
        elif kind == "timeline":
            assert [e["event_type"] for e in body["events"]] == [
                "model_call", "review", "escalation", "resolution"]
        elif kind == "verify":
            assert body["ok"] is True, (body["findings"], body["warnings"], body["chains"])
        elif kind == "summary":
            assert body["records"] >= before
    assert [(r.accepted, len(r.rejected)) for r in replies] == [(20, 0)] * len(batches)
    after = site.api("/api/v1/summary", token)[1]["records"]
    # the batches, one per read, and the first summary's own read
    assert after == before + 20 * len(batches) + audited + 1
    reads = site.api("/api/v1/records?type=data_access&limit=1", token)[1]["total"]
    # + the first count's own read, both summaries' and one per read
    assert reads == reads_before + 1 + 2 + audited
    for b in range(0, 20, 7):
        status, body = site.api(f"/api/v1/records?task=T-rt-conc-{b}-3", token)
        assert body["total"] == 1
    site.proc.stop()
    assert site.proc.proc.returncode == 0
    out = cli("verify", "--data-dir", str(site.data_dir))
    assert out.returncode == 0, out.stdout + out.stderr
    assert verdict(out.stdout).startswith("OK: "), out.stdout

