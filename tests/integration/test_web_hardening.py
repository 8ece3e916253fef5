"""The HTTP side against a hostile or careless caller (issue 11): times the store
cannot hold, limits meaning "everything", task ids that look like paths, security
headers, reads that leave a trace, loopback trust behind a proxy, and TLS.

Each collector is a real subprocess on real sockets; records are sent over gRPC.
"""

from __future__ import annotations

import datetime
import http.client
import json
import re
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, Optional

import pytest
from support import CollectorProc, cli, make_record, stub

from aitrail.v1 import audit_pb2 as pb

ODD_TASKS = ["T/slash", "../../console/admin", "..", "a/../b", "T%2Fenc", "T?x=1", "T#frag",
             "T x&y=1"]


def _get(url: str, headers: Optional[dict] = None,
         context: Optional[ssl.SSLContext] = None) -> tuple[int, Any, Any]:
    """(status, parsed body, headers); HTTP errors are answers too."""
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=60, context=context) as resp:
            status, raw, hdrs = resp.status, resp.read(), resp.headers
    except urllib.error.HTTPError as err:
        status, raw, hdrs = err.code, err.read(), err.headers
    text = raw.decode("utf-8")
    return status, json.loads(text) if "json" in hdrs.get("content-type", "") else text, hdrs


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """No console account yet: loopback callers are served as ``local``."""
    proc = CollectorProc(tmp_path_factory.mktemp("hardening") / "store").start()
    records = [make_record("resolution", task_id=t) for t in ODD_TASKS]
    records.append(make_record("model_call", task_id="T-plain"))
    assert stub(proc.grpc).Export(pb.ExportRequest(records=records),
                                  timeout=60).accepted == len(records)
    yield proc
    proc.stop()


def _reads(proc: CollectorProc) -> list[dict]:
    return _get(proc.url + "/api/v1/records?type=data_access&service=aitrail-collector"
                "&sort=seq&limit=10000")[1]["records"]


# ---------------------------------------------------------------- finding 16

@pytest.mark.parametrize("name,value", [("since", "2262-04-12"), ("until", "2262-04-12"),
                                        ("since", "999999999d"), ("until", "1969-12-31"),
                                        ("since", "9999-12-31T23:59:59")])
def test_times_outside_the_store_are_refused_with_400_naming_the_filter(site, name, value):
    status, body, _ = _get(site.url + "/api/v1/records?" + urllib.parse.urlencode({name: value}))
    assert status == 400, body
    assert body["detail"].startswith(f"{name} {value!r}: outside the times the store holds")
    status, text, _ = _get(site.url + "/console/search?" + urllib.parse.urlencode(
        {"preset": "custom", name: value}))
    assert status == 400 and "outside the times the store holds" in text
    status, text, _ = _get(site.url + "/console/export.csv?" + urllib.parse.urlencode(
        {"preset": "custom", name: value}))
    assert status == 400 and "outside the times the store holds" in text
    out = cli("query", "--url", site.url, f"--{name}", value)
    assert out.returncode == 2 and "outside the times the store holds" in out.stderr, out


def test_the_latest_time_the_store_holds_is_taken(site):
    status, body, _ = _get(site.url + "/api/v1/records?since=1970-01-01&until=2262-04-11")
    assert status == 200 and body["total"] >= len(ODD_TASKS) + 1


# ---------------------------------------------------------------- finding 19: limits

@pytest.mark.parametrize("limit", ["all", "0", "ALL", "-1", "10001"])
def test_limit_all_and_zero_are_refused(site, limit):
    status, body, _ = _get(site.url + f"/api/v1/records?limit={limit}")
    assert status == 400 and body["detail"].startswith("limit "), body


def test_cli_limit_zero_is_refused_and_the_export_still_streams_everything(site):
    out = cli("query", "--url", site.url, "--limit", "0")
    assert out.returncode == 2 and "limit 0: expected 1..10000" in out.stderr, out
    status, text, _ = _get(site.url + "/api/v1/export.csv?type=resolution")
    assert status == 200
    assert len(text.strip().splitlines()) == 1 + len(ODD_TASKS)


# ---------------------------------------------------------------- finding 19: task ids

@pytest.mark.parametrize("task", ODD_TASKS)
def test_task_ids_that_look_like_paths_open_over_the_api_and_the_cli(site, task):
    status, body, _ = _get(site.url + "/api/v1/tasks/" + urllib.parse.quote(task, safe="")
                           + "/timeline")
    assert status == 200, body
    assert body["task_id"] == task and [e["task_id"] for e in body["events"]] == [task]
    status, body, _ = _get(site.url + "/api/v1/timeline?" + urllib.parse.urlencode(
        {"task": task}))
    assert status == 200 and body["task_id"] == task, body
    out = cli("timeline", task, "--url", site.url, "--format", "json")
    assert out.returncode == 0, out
    assert [e["task_id"] for e in json.loads(out.stdout)] == [task]


@pytest.mark.parametrize("task", ODD_TASKS)
def test_task_ids_that_look_like_paths_open_in_the_console(site, task):
    status, text, _ = _get(site.url + "/console/tasks?" + urllib.parse.urlencode({"task": task}))
    assert status == 200, text
    assert 'data-testid="task-id">' + _html(task) + "<" in text
    status, text, _ = _get(site.url + "/console/tasks/" + urllib.parse.quote(task, safe=""))
    if task not in ("..", ):  # a path segment ".." is the parent directory to any client
        assert status == 200 and 'data-testid="task-id">' + _html(task) + "<" in text


def test_search_links_to_odd_task_ids_stay_on_their_timeline(site):
    status, text, _ = _get(site.url + "/console/search?preset=all&type=resolution")
    assert status == 200
    links = re.findall(r'href="(/console/tasks[^"]*)"', text)
    assert len(links) == len(ODD_TASKS)
    for link in links:
        target = urllib.parse.urlsplit(urllib.parse.urljoin(site.url + "/console/search",
                                                            link.replace("&amp;", "&")))
        assert target.path == "/console/tasks" and not target.fragment, link
        (task,) = urllib.parse.parse_qs(target.query)["task"]
        assert task in ODD_TASKS


def _html(text: str) -> str:
    import html
    return html.escape(text, quote=True).replace("&#x27;", "&#39;")


# ---------------------------------------------------------------- finding 14: headers

@pytest.mark.parametrize("path", ["/api/v1/records?limit=1", "/api/v1/summary",
                                  "/console/search", "/console/tasks?task=T-plain",
                                  "/api/v1/tasks/T-plain/timeline", "/api/v1/export.csv",
                                  "/console/charts", "/login", "/api/v1/records?limit=0"])
def test_every_answer_carries_the_security_headers(site, path):
    status, _, headers = _get(site.url + path)
    assert status in (200, 400)
    csp = headers["content-security-policy"]
    assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert "script-src 'self'" in csp and "'unsafe-inline'" not in csp.split("script-src")[1] \
        .split(";")[0]
    assert headers["x-frame-options"] == "DENY"
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["referrer-policy"] == "no-referrer"
    assert headers["cache-control"] == "no-store"


# ---------------------------------------------------------------- finding 19: access log

def test_proof_summary_dashboard_and_chart_reads_are_sealed(site):
    record_id = _get(site.url + "/api/v1/records?task=T-plain")[1]["records"][0]["record_id"]
    deadline = time.monotonic() + 60
    while _get(site.url + f"/api/v1/records/{record_id}/proof")[0] != 200:  # needs a checkpoint
        assert time.monotonic() < deadline, "no proof within 60 s"
        time.sleep(0.2)
    before = len(_reads(site))
    assert _get(site.url + f"/api/v1/records/{record_id}/proof")[0] == 200
    assert _get(site.url + "/api/v1/summary")[0] == 200
    assert _get(site.url + "/api/v1/dashboards/volume-by-type")[0] == 200
    assert _get(site.url + "/console/charts?days=7")[0] == 200
    reads = _reads(site)[before + 1:]  # the first listing's own record comes first
    today = datetime.datetime.now(datetime.timezone.utc).date()
    assert [r["resource"] for r in reads[:4]] == [f"proof:{record_id}", "summary",
                                                   "dashboard:volume-by-type",
                                                   f"charts:{today - datetime.timedelta(days=6)}..{today}"]
    assert [r["attributes"]["via"] for r in reads[:4]] == ["api", "api", "api", "console"]
    assert all(r["actor"] == "local" for r in reads[:4])


# ---------------------------------------------------------------- finding 19: proxies

def test_loopback_trust_ignores_forwarding_headers_without_trusted_proxies(site):
    for header in ({"X-Forwarded-For": "203.0.113.9"}, {"X-Real-IP": "203.0.113.9"},
                   {"Forwarded": "for=203.0.113.9"}):
        status, body, _ = _get(site.url + "/api/v1/summary", headers=header)
        assert status == 200, (header, body)  # the caller IS on this machine


def test_behind_a_trusted_proxy_the_proxy_is_not_a_local_caller(tmp_path):
    proc = CollectorProc(tmp_path / "store", "--trusted-proxies", "127.0.0.1").start()
    try:
        for header in ({"X-Forwarded-For": "203.0.113.9"},
                       {"X-Forwarded-For": "127.0.0.1"},  # what a remote caller may claim
                       {"X-Real-IP": "127.0.0.1"}, {"Forwarded": "for=127.0.0.1"}, {}):
            status, body, _ = _get(proc.url + "/api/v1/summary", headers=header)
            assert status == 401, (header, body)
        # The CLI on this machine still reads, with the collector's local token.
        out = cli("summary", "--data-dir", str(proc.data_dir))
        assert out.returncode == 0, out
    finally:
        proc.stop()


def test_trusted_proxies_must_be_addresses(tmp_path):
    out = cli("collector", "--data-dir", str(tmp_path / "store"), "--trusted-proxies",
              "proxy.example", "--grpc-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0")
    assert out.returncode == 2 and "--trusted-proxies" in out.stderr, out


# ---------------------------------------------------------------- finding 14: TLS

def _self_signed(directory: Path) -> tuple[str, str]:
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = directory / "http.crt", directory / "http.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return str(cert_path), str(key_path)


class TlsCollectorProc(CollectorProc):
    def __init__(self, data_dir: Path, ca: str, *extra: str):
        super().__init__(data_dir, *extra)
        self.context = ssl.create_default_context(cafile=ca)

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.http_port}"

    def start(self, timeout: float = 60) -> "TlsCollectorProc":
        import subprocess
        import sys
        cmd = [sys.executable, "-m", "aitrail.cli", "collector", "--data-dir",
               str(self.data_dir), "--grpc-listen", self.grpc, "--http-listen",
               f"127.0.0.1:{self.http_port}", *self.extra]
        self.proc = subprocess.Popen(cmd, stdout=open(self.log, "ab"), stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log.read_text()
            try:
                with urllib.request.urlopen(self.url + "/healthz", timeout=1,
                                            context=self.context):
                    return self
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"collector did not come up:\n{self.log.read_text()}")


def test_http_tls_serves_https_with_secure_cookies_and_no_plain_http(tmp_path):
    from aitrail_collector.web.auth.accounts import Accounts
    cert, key = _self_signed(tmp_path)
    users = tmp_path / "users.json"
    Accounts(str(users)).add_user("tess", "tess-passw0rd-long", "auditor")
    proc = TlsCollectorProc(tmp_path / "store", cert, "--users", str(users),
                            "--http-tls-cert", cert, "--http-tls-key", key).start()
    try:
        lock = json.loads((proc.data_dir / "collector.json").read_text())
        assert lock["url"] == proc.url
        assert proc.url in proc.log.read_text()
        # Plain HTTP on the same port is not served.
        with pytest.raises((OSError, http.client.HTTPException)):
            urllib.request.urlopen(f"http://127.0.0.1:{proc.http_port}/healthz", timeout=5)
        # Signing in sets the session cookie with the Secure flag.
        conn = http.client.HTTPSConnection("127.0.0.1", proc.http_port, context=proc.context,
                                           timeout=30)
        conn.request("GET", "/login")
        resp = conn.getresponse()
        page = resp.read().decode()
        login_cookie = resp.getheader("set-cookie")
        assert "Secure" in login_cookie
        csrf = re.search(r'name="csrf" value="([^"]+)"', page).group(1)
        form = urllib.parse.urlencode({"username": "tess", "password": "tess-passw0rd-long",
                                       "csrf": csrf, "next": "/console/search"})
        conn.request("POST", "/login", body=form, headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "Cookie": login_cookie.split(";")[0]})
        resp = conn.getresponse()
        resp.read()
        assert resp.status == 303
        session = [v for k, v in resp.getheaders()
                   if k.lower() == "set-cookie" and v.startswith("aitrail_session=")]
        assert session and "Secure" in session[0] and "HttpOnly" in session[0], session
        conn.close()
        # The CLI reads over https with the CA file.
        out = cli("summary", "--data-dir", str(proc.data_dir), "--ca-cert", cert)
        assert out.returncode == 0 and '"records"' in out.stdout, out
        out = cli("summary", "--url", proc.url)
        assert out.returncode == 2 and "certificate" in out.stderr, out
    finally:
        proc.stop()


def test_http_tls_cert_and_key_go_together(tmp_path):
    cert, _ = _self_signed(tmp_path)
    out = cli("collector", "--data-dir", str(tmp_path / "store"), "--http-tls-cert", cert,
              "--grpc-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0")
    assert out.returncode == 2 and "--http-tls-cert and --http-tls-key go together" in out.stderr
