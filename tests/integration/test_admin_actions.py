"""Every admin action is sealed into the chain (red-team finding 7), whether made in
the console or with `aitrail user` / `aitrail apikey`, with or without a collector
running; reads through a token are sealed with the token's id and owner."""

from __future__ import annotations

import json
import re
import time
import urllib.parse

from support import CollectorProc, cli
from test_signin import ADA_PW, _login, _login_form, _request

from aitrail_collector.web.auth.accounts import Accounts


def _admin_actions(proc: CollectorProc, token: str) -> list[dict]:
    status, _, text = _request(proc.http_port, "GET",
                               "/api/v1/records?type=admin_action&limit=10000",
                               headers={"Authorization": f"Bearer {token}"})
    assert status == 200, text
    return json.loads(text)["records"]


def _wait_for(proc: CollectorProc, token: str, what: str, target: str,
              timeout: float = 30) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        for r in _admin_actions(proc, token):
            if r["purpose"] == what and r["resource"] == target:
                return r
        assert time.monotonic() < deadline, f"{what} {target} not sealed"
        time.sleep(0.2)


def test_admin_actions_are_sealed_from_the_console_and_the_cli(tmp_path):
    users = tmp_path / "users.json"
    accounts = Accounts(str(users))
    accounts.add_user("ada", ADA_PW, "admin")
    accounts.add_user("aud", "aud-passw0rd-long!", "auditor")
    reader = accounts.create_token("reader", "auditor", "aud")[1]
    proc = CollectorProc(tmp_path / "store", "--users", str(users)).start()
    try:
        port = proc.http_port
        status, headers = _login(port, _login_form(port, "127.0.0.1"), "ada", ADA_PW)
        assert status == 303
        session = next(c for c in headers["cookies"] if c.startswith("aitrail_session="))
        _, _, page = _request(port, "GET", "/console/admin", headers={"Cookie": session})
        csrf = re.search(r'name="csrf" value="([^"]+)"', page).group(1)  # type: ignore[union-attr]

        def post(**form: str) -> tuple[int, str]:
            status, _, text = _request(port, "POST", "/console/admin",
                                       urllib.parse.urlencode({"csrf": csrf, **form}),
                                       {"Cookie": session, "Content-Type":
                                        "application/x-www-form-urlencoded"})
            return status, text

        assert post(action="add_user", username="bob", password="bob-passw0rd-long!",
                    role="analyst")[0] == 303
        assert post(action="set_role", username="bob", role="auditor")[0] == 303
        # A token for bob, named as another user: it acts for bob, not for 'aud'.
        status, text = post(action="create_token", name="aud", role="auditor", owner="bob",
                            expires_days="7")
        assert status == 200, text
        bobs = re.search(r"<code>(aitk_[^<]+)</code>", text).group(1)  # type: ignore[union-attr]
        token_id = bobs[len("aitk_"):].split("_", 1)[0]
        status, text = post(action="create_token", name="x", role="auditor", owner="ghost")
        # The refusal is a flash message shown once on the admin page after the redirect.
        assert status == 303
        _, _, page = _request(port, "GET", "/console/admin", headers={"Cookie": session})
        assert "not an existing enabled user" in page
        # A read through bob's token names bob and the token.
        assert _request(port, "GET", "/api/v1/tasks/T-none/timeline",
                        headers={"Authorization": f"Bearer {bobs}"})[0] in (200, 404)
        assert post(action="disable", username="bob")[0] == 303
        assert _request(port, "GET", "/api/v1/records?limit=1",
                        headers={"Authorization": f"Bearer {bobs}"})[0] == 401
        assert post(action="enable", username="bob")[0] == 303
        assert post(action="revoke_token", token_id=token_id)[0] == 303
        assert post(action="remove", username="bob")[0] == 303

        sealed = {(r["purpose"], r["resource"]): r for r in _admin_actions(proc, reader)}
        for what in ("user_added", "role_changed", "user_disabled", "user_enabled",
                     "user_removed"):
            r = sealed[(what, "user:bob")]
            assert r["actor"] == "ada" and r["attributes"]["via"] == "console"
        created = sealed[("token_created", f"token:{token_id}")]
        assert created["attributes"]["detail.owner"] == "bob"
        assert created["attributes"]["detail.name"] == "aud"
        assert created["attributes"]["detail.expires"]
        assert sealed[("user_disabled", "user:bob")]["attributes"]["detail.tokens_revoked"] \
            == token_id
        assert ("token_revoked", f"token:{token_id}") in sealed
        assert "bob-passw0rd" not in str(sealed)
        reads = json.loads(_request(port, "GET", "/api/v1/records?type=data_access&limit=10000",
                                    headers={"Authorization": f"Bearer {reader}"})[2])
        bobs_read = [r for r in reads["records"]
                     if r["attributes"].get("token_id") == token_id]
        assert len(bobs_read) == 1 and bobs_read[0]["actor"] == "bob"
        assert bobs_read[0]["attributes"]["token_owner"] == "bob"
        assert bobs_read[0]["resource"] == "timeline:T-none"

        # The CLI while the collector runs: sealed within seconds.
        out = cli("user", "role", "aud", "analyst", "--users", str(users))
        assert out.returncode == 0, out.stderr
        r = _wait_for(proc, reader, "role_changed", "user:aud")
        assert r["attributes"]["via"] == "cli" and r["attributes"]["detail.role"] == "analyst"
        out = cli("apikey", "create", "--keys-file", str(tmp_path / "keys.json"),
                  "--service", "svc")
        assert out.returncode == 0, out.stderr
        _wait_for(proc, reader, "apikey_created",
                  "apikey:" + out.stdout.strip()[len("ait_"):].split("_", 1)[0])
    finally:
        proc.stop()

    # The CLI while no collector runs: sealed at its next start.
    out = cli("user", "token-create", "later", "--role", "auditor", "--owner", "aud",
              "--expires-days", "3", "--users", str(users))
    assert out.returncode == 0, out.stderr
    later_id = out.stdout.strip()[len("aitk_"):].split("_", 1)[0]
    assert "expires" in out.stderr
    proc.start()
    try:
        reader = Accounts(str(users)).create_token("reader2", "auditor", "aud")[1]
        r = _wait_for(proc, reader, "token_created", f"token:{later_id}", timeout=5)
        assert r["attributes"]["detail.owner"] == "aud"
    finally:
        proc.stop()
