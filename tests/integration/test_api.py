"""The JSON query API behind the console: sign-in, roles, every filter, paging, sorting,
bad values, and the data_access record each read leaves in the ledger."""

from __future__ import annotations

import csv
import io
import urllib.parse

import pytest
from support import BULK_TASKS, FORMULA


def _q(**params) -> str:
    return urllib.parse.urlencode(params, doseq=True)


@pytest.fixture(scope="module")
def auditor(console_site):
    return console_site.token("auditor")


def test_requests_without_valid_credentials_are_refused(console_site):
    for path in ("/api/v1/records", "/api/v1/summary", "/api/v1/export.csv", "/api/v1/verify"):
        status, body = console_site.api(path)
        assert status == 401 and "Bearer" in body["detail"], (path, body)
    status, _ = console_site.api("/api/v1/records", token="aitk_000000000000_forged")
    assert status == 401
    assert console_site.api("/healthz")[0] == 200  # liveness stays open


def test_healthz_says_the_compiled_hashing_is_in_use(console_site):
    # aitrail_collector.native: "python" would mean the install did not build it.
    status, body = console_site.api("/healthz")
    assert status == 200 and body["hashing"] == "native", body


def test_roles_decide_what_a_token_may_read(console_site, auditor):
    analyst, admin = console_site.token("analyst"), console_site.token("admin")
    status, body = console_site.api("/api/v1/tasks/T-console-1/timeline", token=analyst)
    assert status == 200 and body["payloads_hidden"] is True
    assert all(e["input"] is None and e["output"] is None for e in body["events"])
    status, body = console_site.api("/api/v1/tasks/T-console-1/timeline", token=auditor)
    assert body["payloads_hidden"] is False
    assert body["events"][0]["input"] == "Ticket: I was charged twice, please help"
    assert console_site.api("/api/v1/export.csv", token=analyst)[0] == 403
    assert console_site.api("/api/v1/dashboards/override-daily", token=analyst)[0] == 200
    status, body = console_site.api("/api/v1/records", token=admin)
    assert status == 403 and "may not read records" in body["detail"]
    assert console_site.api("/api/v1/verify", token=admin)[0] == 200


def _records(site, token, **params) -> dict:
    status, body = site.api("/api/v1/records?" + _q(**params), token=token)
    assert status == 200, body
    return body


def test_every_filter(console_site, auditor):
    site = console_site
    task = _records(site, auditor, task="T-console-1")
    assert [r["event_type"] for r in task["records"]] == [
        "model_call", "review", "escalation", "resolution"]
    # A reviewer is found in reviews and in the escalations that name them, either side.
    assert {r["event_type"] for r in _records(site, auditor, reviewer="rev-sam")["records"]} \
        == {"escalation"}
    assert {r["event_type"] for r in _records(site, auditor, reviewer="rev-ann")["records"]} \
        == {"review", "escalation"}
    assert _records(site, auditor, request_id="req-console-1")["total"] == 4
    assert _records(site, auditor, trace_id=site.trace_id.upper())["total"] == 4
    rid = task["records"][2]["record_id"]
    assert [r["record_id"] for r in _records(site, auditor, record_id=rid)["records"]] == [rid]
    typed = _records(site, auditor, type=["review", "escalation"], limit="10000")
    assert {r["event_type"] for r in typed["records"]} == {"review", "escalation"}
    assert typed["total"] == BULK_TASKS + 2
    assert _records(site, auditor, since="2000-01-01", until="2000-01-02")["total"] == 0
    assert _records(site, auditor, task="T-console-1", since="2h")["total"] == 4
    assert _records(site, auditor, task="T-console-1", until="2h")["total"] == 0


def test_paging_and_sorting(console_site, auditor):
    site = console_site
    pages = [_records(site, auditor, type="review", limit=50, offset=o, sort="seq")
             for o in (0, 50, 100)]
    seqs = [r["seq"] for p in pages for r in p["records"]]
    assert len(seqs) == BULK_TASKS + 1 == len(set(seqs)) and seqs == sorted(seqs)
    assert [len(p["records"]) for p in pages] == [50, 50, BULK_TASKS + 1 - 100]
    for column in ("time_spent_ms", "reviewer_id", "decision", "start_time"):
        key = "time" if column == "start_time" else column
        for order in ("asc", "desc"):
            rows = _records(site, auditor, type="review", sort=column, order=order,
                            limit="10000")["records"]
            values = [r[key] for r in rows]
            assert values == sorted(values, reverse=order == "desc"), (column, order)


@pytest.mark.parametrize("params, message", [
    ({"limit": "abc"}, "limit 'abc': expected a whole number"),
    ({"limit": "100000"}, "limit 100000: expected 1..10000"),
    ({"offset": "-1"}, "offset -1: expected 0..1000000000000"),
    ({"sort": "password"}, "sort 'password': expected one of"),
    ({"order": "sideways"}, "order 'sideways': expected asc or desc"),
    ({"trace_id": "xyz"}, "trace_id 'xyz': expected 32 hex digits"),
    ({"since": "last tuesday"}, "since 'last tuesday': expected an ISO 8601 date"),
    ({"since": "2026-02-01", "until": "2026-01-01"}, "since is after until"),
    ({"type": "DROP TABLE"}, "type 'DROP TABLE': not an event type name"),
])
def test_bad_filter_values_get_a_clear_400(console_site, auditor, params, message):
    status, body = console_site.api("/api/v1/records?" + _q(**params), token=auditor)
    assert status == 400 and message in body["detail"], body


def test_bad_dashboard_requests(console_site, auditor):
    status, body = console_site.api("/api/v1/dashboards/nope", token=auditor)
    assert status == 404 and "override-daily" in body["detail"]
    status, body = console_site.api("/api/v1/dashboards/override-daily?" + _q(
        since="2026-02-01", until="2026-01-01"), token=auditor)
    assert status == 400
    assert console_site.api("/api/v1/dashboards/volume-by-type?since=yesterday",
                            token=auditor)[0] == 422


def _accesses(site, token) -> list[dict]:
    return _records(site, token, type="data_access", limit="10000", sort="seq")["records"]


def test_each_read_is_sealed_as_a_data_access_record(console_site):
    site = console_site
    token = site.token("auditor")
    before = len(_accesses(site, token))
    _records(site, token, task="T-console-1")
    site.api("/api/v1/tasks/T-console-1/timeline", token=token)
    status, text = site.api("/api/v1/export.csv?" + _q(task="T-console-1"), token=token)
    assert status == 200
    rows = list(csv.DictReader(io.StringIO(text)))
    assert len(rows) == 4 and rows[3]["final_decision"] == "'" + FORMULA
    # Listing the reads is a read too: the first listing's own record comes first.
    reads = _accesses(site, token)[before + 1:]
    assert [r["resource"] for r in reads[:3]] == ["search", "timeline:T-console-1", "export"]
    for r in reads[:3]:
        # Who read: the token's owner, and which token (finding 7: not its name).
        # (support.ConsoleSite.token makes an auditor token owned by the auditor, audrey)
        assert r["actor"] == "audrey" and r["attributes"]["token_owner"] == "audrey"
        assert r["attributes"]["token_id"] == token[len("aitk_"):].split("_", 1)[0]
        assert r["attributes"]["role"] == "auditor" and r["attributes"]["via"] == "api"
        assert '"task": "T-console-1"' in r["attributes"]["filters"]
    assert [r["attributes"]["rows"] for r in reads[:3]] == ["4", "4", "4"]
    # The API verifies, whole or a period, on the engine path of `aitrail verify`.
    for query in ("", "?since=2000-01-01"):
        report = site.api("/api/v1/verify" + query, token=token)[1]
        assert report["ok"] is True and report["path"] == "engine", report


def test_cli_takes_its_token_from_a_private_file_or_the_environment(console_site, tmp_path,
                                                                    monkeypatch):
    """--token is visible to every user in `ps`; --token-file and $AITRAIL_TOKEN are not."""
    import json

    from support import cli
    site = console_site
    query = ("query", "--url", site.url, "--task", "T-console-1", "--format", "json")
    token_file = tmp_path / "token"
    token_file.write_text(site.token("analyst") + "\n(the first line is the token)\n")
    token_file.chmod(0o600)
    out = cli(*query, "--token-file", str(token_file))
    assert out.returncode == 0 and json.loads(out.stdout)["total"] == 4, out.stderr

    token_file.chmod(0o640)
    out = cli(*query, "--token-file", str(token_file))
    assert out.returncode == 2 and out.stdout == ""
    assert f"--token-file {token_file}: open to others than you (mode 0640)" in out.stderr
    assert f"chmod 600 {token_file}" in out.stderr
    for bad, why in ((tmp_path / "absent", "No such file"), (tmp_path / "empty", "the first line is empty")):
        if bad.name == "empty":
            bad.write_text("\n")
            bad.chmod(0o600)
        out = cli(*query, "--token-file", str(bad))
        assert out.returncode == 2 and why in out.stderr, out.stderr
    out = cli(*query, "--token-file", str(token_file), "--token", "x")
    assert out.returncode == 2 and "not allowed with argument" in out.stderr

    monkeypatch.setenv("AITRAIL_TOKEN", site.token("analyst"))
    out = cli(*query)
    assert out.returncode == 0 and json.loads(out.stdout)["total"] == 4, out.stderr

    helptext = " ".join(cli("query", "--help").stdout.split())
    assert "--token-file FILE" in helptext and "$AITRAIL_TOKEN" in helptext
    assert "visible to other users in `ps`" in helptext


def test_openapi_documents_the_api_and_its_bearer_auth(console_site):
    status, spec = console_site.api("/openapi.json")
    assert status == 200
    for path in ("/api/v1/records", "/api/v1/export.csv", "/api/v1/tasks/{task_id}/timeline",
                 "/api/v1/dashboards/{figure}", "/api/v1/verify", "/api/v1/erase"):
        assert path in spec["paths"], path
    assert any(s.get("scheme") == "bearer"
               for s in spec["components"]["securitySchemes"].values())
    assert not any(p.startswith("/console") for p in spec["paths"])


def test_cli_needs_a_token_for_url_and_uses_the_local_one_for_the_data_dir(console_site):
    import json
    import os
    import stat

    from support import cli
    site = console_site
    out = cli("query", "--url", site.url, "--task", "T-console-1", "--format", "json")
    assert out.returncode == 2 and "HTTP 401" in out.stderr, out.stderr
    out = cli("query", "--url", site.url, "--task", "T-console-1", "--format", "json",
              "--token", site.token("analyst"))
    assert out.returncode == 0 and json.loads(out.stdout)["total"] == 4
    # Pointed at the directory the collector holds, the CLI goes through the collector
    # with the token it left there for this machine's users (mode 0600).
    token_file = site.data_dir / "local-token"
    assert stat.S_IMODE(os.stat(token_file).st_mode) == 0o600
    out = cli("timeline", "T-console-1", "--data-dir", str(site.data_dir))
    assert out.returncode == 0 and "rev-ann" in out.stdout, out.stderr


def test_an_unknown_parameter_is_a_400_naming_the_known_ones(console_site, auditor):
    status, body = console_site.api("/api/v1/records?event_type=review", token=auditor)
    assert status == 400 and body["detail"].startswith(
        "unknown parameter event_type; this endpoint takes task, reviewer,"), body
    assert "type" in body["detail"].split("takes ")[1].split(", ")
    status, body = console_site.api("/api/v1/export.csv?limit=5", token=auditor)
    assert status == 400 and "unknown parameter limit" in body["detail"], body


def test_export_columns_are_full_by_default_or_compact(console_site, auditor):
    from aitrail.record.csv_format import COLUMN_SETS
    for asked, expected in (("", "full"), ("&columns=full", "full"),
                            ("&columns=compact", "compact")):
        status, text = console_site.api(
            f"/api/v1/export.csv?task=T-console-1&type=review{asked}", token=auditor)
        assert status == 200
        rows = list(csv.DictReader(io.StringIO(text)))
        assert tuple(rows[0]) == COLUMN_SETS[expected]
        # The review carries its task's model call's model and prompt version.
        model = "task_model" if expected == "full" else "model"
        assert (rows[0][model], rows[0]["time_spent_s"]) == ("triage-llm", "42")
    status, body = console_site.api("/api/v1/export.csv?columns=wide", token=auditor)
    assert status == 400 and "expected full or compact" in body["detail"]


def test_a_timeline_read_names_its_task_and_stays_out_of_the_timeline(console_site, auditor):
    for _ in range(2):
        status, body = console_site.api("/api/v1/timeline?task=T-console-1", token=auditor)
        assert status == 200 and len(body["events"]) == 4
    reads = _records(console_site, auditor, task="T-console-1", activity="only")["records"]
    assert {r["event_type"] for r in reads} == {"data_access"}
    assert [r["resource"] for r in reads].count("timeline:T-console-1") >= 2
