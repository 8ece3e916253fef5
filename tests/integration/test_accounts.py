"""Console accounts: roles, users, lockout, API tokens, sessions, `aitrail user`."""

from __future__ import annotations

import json
import logging
import os
import stat
import subprocess

import pytest
from argon2 import PasswordHasher
from support import PY, cli

from aitrail_collector.web.auth.accounts import (
    PERMISSIONS,
    ROLES,
    AccountError,
    Accounts,
    Principal,
    Sessions,
    allowed,
)

# Cheap argon2 parameters keep the unit tests fast; the CLI tests use the defaults.
FAST = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
PW = "correct horse battery"


class Clock:
    def __init__(self, now: float = 1000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def path(tmp_path):
    return str(tmp_path / "console-users.json")


@pytest.fixture
def acc(path):
    return Accounts(path, hasher=FAST)


def _raw(path: str) -> dict:
    with open(path) as fh:
        return json.load(fh)


# ------------------------------------------------------------------ permissions

EXPECTED = {
    "auditor": {"records", "payloads", "export", "aggregates", "verify", "erase", "review"},
    "analyst": {"records", "aggregates"},
    "admin": {"verify", "admin", "review"},
}


def test_permission_matrix():
    assert set(PERMISSIONS) == {"records", "payloads", "export", "aggregates", "verify",
                                "erase", "admin", "review"}
    assert set(ROLES) == set(EXPECTED)
    for role in ROLES:
        for permission in PERMISSIONS:
            assert allowed(role, permission) == (permission in EXPECTED[role]), \
                (role, permission)


def test_unknown_permission_raises_and_unknown_role_has_nothing():
    with pytest.raises(ValueError, match="unknown permission 'payload'"):
        allowed("auditor", "payload")
    assert not any(allowed("root", p) for p in PERMISSIONS)


# ------------------------------------------------------------------ users

def test_add_and_authenticate(acc):
    acc.add_user("ada", PW, "auditor")
    assert acc.authenticate("ada", PW) == Principal("ada", "auditor", "user")
    assert acc.authenticate("ada", PW + "x") is None
    assert acc.authenticate("nobody", PW) is None
    assert acc.authenticate("ada", None) is None  # type: ignore[arg-type]
    assert acc.has_users()
    assert acc.users() == [{"username": "ada", "role": "auditor",
                            "created": acc.users()[0]["created"], "disabled": False}]


def test_disabled_and_removed_users_fail(acc):
    acc.add_user("ada", PW, "auditor")
    acc.disable_user("ada")
    assert acc.authenticate("ada", PW) is None
    assert acc.users()[0]["disabled"] is True
    acc.enable_user("ada")
    assert acc.authenticate("ada", PW) is not None
    acc.remove_user("ada")
    assert acc.authenticate("ada", PW) is None
    assert not acc.has_users()
    with pytest.raises(AccountError, match="no user 'ada'"):
        acc.remove_user("ada")


def test_set_password_and_role(acc):
    acc.add_user("ada", PW, "auditor")
    acc.set_password("ada", "another long passphrase")
    assert acc.authenticate("ada", PW) is None
    acc.set_role("ada", "analyst")
    assert acc.authenticate("ada", "another long passphrase") == Principal("ada", "analyst",
                                                                           "user")
    with pytest.raises(AccountError, match="unknown role 'boss'"):
        acc.set_role("ada", "boss")


def test_file_holds_argon2_hashes_only_and_is_0600(acc, path):
    acc.add_user("ada", PW, "auditor")
    _, secret = acc.create_token("ci", "analyst", "ada")
    text = open(path).read()
    assert _raw(path)["users"][0]["password_hash"].startswith("$argon2id$")
    assert PW not in text and secret not in text and secret.split("_", 2)[2] not in text
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert sorted(os.listdir(os.path.dirname(path))) == ["console-users.json",
                                                         "console-users.json.lock"]


def test_users_never_show_the_hash(acc):
    acc.add_user("ada", PW, "auditor")
    assert "password_hash" not in acc.users()[0]
    assert "$argon2" not in json.dumps(acc.users())


def test_password_policy(acc):
    with pytest.raises(AccountError, match="at least 12 characters"):
        acc.add_user("ada", "short", "auditor")
    with pytest.raises(AccountError, match="must not be the username"):
        acc.add_user("ada.lovelace", "Ada.Lovelace", "auditor")
    with pytest.raises(AccountError, match="invalid username"):
        acc.add_user("ada lovelace", PW, "auditor")
    with pytest.raises(AccountError, match="invalid username"):
        acc.add_user("x" * 65, PW, "auditor")
    with pytest.raises(AccountError, match="unknown role"):
        acc.add_user("ada", PW, "superuser")
    acc.add_user("ada", PW, "auditor")
    with pytest.raises(AccountError, match="exists already"):
        acc.add_user("ADA", PW, "analyst")
    with pytest.raises(AccountError, match="at least 12"):
        acc.set_password("ada", "")
    assert not os.path.exists(acc.path + ".tmp")


def test_last_enabled_admin_is_kept(acc):
    acc.add_user("root", PW, "admin")
    for change in (lambda: acc.set_role("root", "auditor"), lambda: acc.disable_user("root"),
                   lambda: acc.remove_user("root")):
        with pytest.raises(AccountError, match="last enabled admin"):
            change()
    acc.add_user("root2", PW, "admin")
    acc.remove_user("root")
    assert [u["username"] for u in acc.users()] == ["root2"]


def test_bootstrap_admin_only_when_there_are_no_users(acc):
    assert not acc.has_users()
    assert acc.bootstrap_admin("root", PW) == Principal("root", "admin", "user")
    with pytest.raises(AccountError, match="users exist already"):
        acc.bootstrap_admin("eve", PW)
    assert [u["username"] for u in acc.users()] == ["root"]


def test_rereads_the_file_after_an_external_change(path):
    console, cli_side = Accounts(path, hasher=FAST), Accounts(path, hasher=FAST)
    assert not console.has_users()
    cli_side.add_user("ada", PW, "auditor")
    assert console.authenticate("ada", PW) is not None
    raw = _raw(path)  # a hand edit, in place (same inode)
    raw["users"][0]["disabled"] = True
    with open(path, "w") as fh:
        json.dump(raw, fh)
    assert console.authenticate("ada", PW) is None


def test_corrupt_file_keeps_the_last_good_state(acc, path, caplog):
    acc.add_user("ada", PW, "auditor")
    with open(path, "w") as fh:
        fh.write('{"users": [{"username": "ada", ')
    with caplog.at_level(logging.ERROR, logger="aitrail.collector"):
        assert acc.authenticate("ada", PW) == Principal("ada", "auditor", "user")
    assert "keeping the previous ones" in caplog.text
    with pytest.raises(AccountError, match="fix or remove it"):  # no silent overwrite
        acc.add_user("bob", PW, "analyst")
    with pytest.raises(AccountError, match="not a valid users file"):  # at start: an error
        Accounts(path, hasher=FAST)


def test_a_wrong_shape_counts_as_corrupt(path):
    with open(path, "w") as fh:
        json.dump({"users": [{"username": "ada", "role": "god", "password_hash": "x",
                              "created": ""}]}, fh)
    with pytest.raises(AccountError, match="unknown role"):
        Accounts(path)


def test_old_argon2_parameters_are_rehashed_on_sign_in(acc, path):
    acc.add_user("ada", PW, "auditor")
    assert "m=8," in _raw(path)["users"][0]["password_hash"]
    strong = Accounts(path)  # default parameters
    assert strong.authenticate("ada", PW) is not None
    assert "m=65536," in _raw(path)["users"][0]["password_hash"]
    assert strong.authenticate("ada", PW) is not None


# ------------------------------------------------------------------ lockout

def test_lockout_after_five_failures_for_fifteen_minutes(path):
    clock = Clock()
    acc = Accounts(path, hasher=FAST, clock=clock)
    acc.add_user("ada", PW, "auditor")
    for _ in range(4):
        assert acc.authenticate("ada", "wrong password!") is None
    assert acc.authenticate("ada", PW) is not None  # 4 failures: not yet, and success resets
    for _ in range(5):
        assert acc.authenticate("ada", "wrong password!") is None
    assert acc.authenticate("ada", PW) is None  # locked, even with the right password
    clock.now += 15 * 60 - 1
    assert acc.authenticate("ada", PW) is None
    clock.now += 2
    assert acc.authenticate("ada", PW) is not None


def test_failures_outside_the_window_do_not_lock(path):
    clock = Clock()
    acc = Accounts(path, hasher=FAST, clock=clock)
    acc.add_user("ada", PW, "auditor")
    for _ in range(10):
        assert acc.authenticate("ada", "wrong password!") is None
        clock.now += 4 * 60  # 4 minutes apart: never 5 within 15 minutes
    assert acc.authenticate("ada", PW) is not None


def test_unknown_names_lock_out_too(path):
    acc = Accounts(path, hasher=FAST, clock=Clock())
    acc.add_user("ada", PW, "auditor")
    for name in ("ada", "ghost"):
        for _ in range(5):
            acc.authenticate(name, "wrong password!")
    assert acc._is_locked("ada") and acc._is_locked("ghost")  # alike: names not revealed


# ------------------------------------------------------------------ tokens

@pytest.fixture
def acc_ada(acc):
    acc.add_user("ada", PW, "admin")  # a token's owner must be an existing user
    return acc


def test_tokens_create_look_up_revoke(acc_ada):
    acc = acc_ada
    token_id, secret = acc.create_token("nightly-export", "auditor", "ada")
    assert secret.startswith(f"aitk_{token_id}_") and len(secret) > 40
    assert acc.principal_for_token(secret) == Principal("ada", "auditor", "token",
                                                        token_id=token_id, token_owner="ada")
    listed = acc.tokens()
    assert listed == [{"token_id": token_id, "name": "nightly-export", "role": "auditor",
                       "owner": "ada", "created": listed[0]["created"], "revoked": False,
                       "expires": listed[0]["expires"], "expired": False,
                       "owner_active": True}]
    acc.revoke_token(token_id)
    assert acc.principal_for_token(secret) is None
    assert acc.tokens()[0]["revoked"] is True
    acc.revoke_token(token_id)  # twice is fine
    with pytest.raises(AccountError, match="no token with id 'nope'"):
        acc.revoke_token("nope")


def test_tampered_or_malformed_tokens_fail(acc_ada):
    acc = acc_ada
    token_id, secret = acc.create_token("ci", "analyst", "ada")
    other_id, _ = acc.create_token("other", "auditor", "ada")
    tampered = secret[:-1] + ("A" if secret[-1] != "A" else "B")
    for bad in (tampered, secret.replace(token_id, other_id), secret + "x", "aitk_",
                f"aitk_{token_id}", secret[5:], "", None, "ait_" + secret[5:],
                f"aitk_../{token_id}_x"):
        assert acc.principal_for_token(bad) is None, bad  # type: ignore[arg-type]
    assert acc.principal_for_token(secret) is not None


def test_token_input_is_checked(acc_ada):
    acc = acc_ada
    with pytest.raises(AccountError, match="unknown role"):
        acc.create_token("ci", "root", "ada")
    with pytest.raises(AccountError, match="invalid token name"):
        acc.create_token(" ", "analyst", "ada")


# ------------------------------------------------------------------ sessions

def test_session_expires_after_idle_time():
    clock = Clock()
    sessions = Sessions(idle_timeout_s=60, max_age_s=3600, clock=clock)
    s = sessions.create(Principal("ada", "auditor", "user"))
    assert len(s.id) >= 43 and len(s.csrf) >= 43 and s.id != s.csrf
    clock.now += 59
    assert sessions.get(s.id) is s  # and this use resets the idle time
    clock.now += 59
    assert sessions.get(s.id) is s
    clock.now += 61
    assert sessions.get(s.id) is None
    clock.now -= 61
    assert sessions.get(s.id) is None  # dropped, not merely hidden


def test_session_expires_at_max_age_even_when_used():
    clock = Clock()
    sessions = Sessions(idle_timeout_s=60, max_age_s=300, clock=clock)
    s = sessions.create(Principal("ada", "auditor", "user"))
    for _ in range(5):
        clock.now += 50
        assert sessions.get(s.id) is s
    clock.now += 51
    assert sessions.get(s.id) is None


def test_revoke_and_revoke_user():
    sessions = Sessions()
    ada1, ada2 = (sessions.create(Principal("ada", "auditor", "user")) for _ in range(2))
    bob = sessions.create(Principal("bob", "analyst", "user"))
    tok = sessions.create(Principal("ada", "analyst", "token"))
    assert sessions.revoke_user("ada") == 2
    assert sessions.get(ada1.id) is None and sessions.get(ada2.id) is None
    assert sessions.get(bob.id) is bob and sessions.get(tok.id) is tok
    sessions.revoke(bob.id)
    assert sessions.get(bob.id) is None
    assert sessions.get("unknown") is None and sessions.get(None) is None  # type: ignore


def test_csrf_check():
    sessions = Sessions()
    s = sessions.create(Principal("ada", "auditor", "user"))
    t = sessions.create(Principal("ada", "auditor", "user"))
    assert sessions.check_csrf(s, s.csrf)
    assert not sessions.check_csrf(s, t.csrf)
    assert not sessions.check_csrf(s, "")
    assert not sessions.check_csrf(s, None)  # type: ignore[arg-type]
    assert not sessions.check_csrf(s, s.csrf + "x")
    assert not sessions.check_csrf(s, "é" * 43)


def test_account_changes_in_another_process_end_sessions(path):
    console = Accounts(path, hasher=FAST)
    console.add_user("ada", PW, "auditor")
    console.add_user("bob", PW, "analyst")
    sessions = Sessions(accounts=console)
    ada = sessions.create(console.authenticate("ada", PW))
    bob = sessions.create(console.authenticate("bob", PW))
    other = Accounts(path, hasher=FAST)  # like `aitrail user` run meanwhile
    other.set_role("ada", "analyst")
    assert sessions.get(ada.id) is None
    assert sessions.get(bob.id) is bob
    other.set_password("bob", "a brand new passphrase")
    assert sessions.get(bob.id) is None
    carl = Principal("carl", "auditor", "user")
    with pytest.raises(AccountError, match="does not exist or is disabled"):
        sessions.create(carl)


# ------------------------------------------------------------------ the CLI

def _cli_in(stdin: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([PY, "-m", "aitrail.cli", *args], input=stdin, capture_output=True,
                          text=True, timeout=120)


def test_cli_users_and_tokens(tmp_path):
    users = str(tmp_path / "users.json")
    out = _cli_in(PW + "\n", "user", "add", "ada", "--role", "auditor", "--password-stdin",
                  "--users", users)
    assert out.returncode == 0, out.stderr
    assert Accounts(users).authenticate("ada", PW) == Principal("ada", "auditor", "user")
    out = cli("user", "role", "ada", "analyst", "--users", users)
    assert out.returncode == 0, out.stderr
    out = cli("user", "list", "--users", users)
    assert out.returncode == 0 and out.stdout.split()[:2] == ["ada", "analyst"], out

    out = cli("user", "token-create", "nightly", "--role", "auditor", "--owner", "ada",
              "--users", users)
    assert out.returncode == 0, out.stderr
    secret = out.stdout.strip()
    assert secret.startswith("aitk_") and "only its hash is kept" in out.stderr
    assert secret not in open(users).read()
    token_id = secret[len("aitk_"):].split("_", 1)[0]
    token_id = secret[len("aitk_"):].split("_", 1)[0]
    assert Accounts(users).principal_for_token(secret) == Principal(
        "ada", "auditor", "token", token_id=token_id, token_owner="ada")
    listing = cli("user", "tokens", "--users", users)
    assert token_id in listing.stdout and secret not in listing.stdout
    out = cli("user", "token-revoke", token_id, "--users", users)
    assert out.returncode == 0, out.stderr
    assert Accounts(users).principal_for_token(secret) is None
    assert "REVOKED" in cli("user", "tokens", "--users", users).stdout


def test_cli_default_file_is_in_the_data_dir(tmp_path):
    out = _cli_in(PW + "\n", "user", "add", "ada", "--role", "admin", "--password-stdin",
                  "--data-dir", str(tmp_path / "data"))
    assert out.returncode == 0, out.stderr
    path = tmp_path / "data" / "console-users.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


@pytest.mark.parametrize("args, stdin, message", [
    (("add", "ada", "--role", "boss", "--password-stdin"), PW, "unknown role 'boss'"),
    (("add", "ada", "--password-stdin"), PW, "add needs --role"),
    (("add", "ada", "--role", "auditor", "--password-stdin"), "short", "at least 12"),
    (("add", "ada", "--role", "auditor"), "", "use --password-stdin"),
    (("add", "--role", "auditor", "--password-stdin"), PW, "add needs USERNAME"),
    (("passwd", "ghost", "--password-stdin"), PW, "no user 'ghost'"),
    (("role", "ghost"), "", "role needs USERNAME ROLE"),
    (("token-revoke", "nope"), "", "no token with id 'nope'"),
    (("token-create", "ci", "--role", "auditor"), "", "token-create needs --owner"),
    (("token-create", "ci", "--role", "auditor", "--owner", "ghost"), "",
     "token owner 'ghost' is not an existing enabled user"),
    (("token-create", "ci", "--role", "auditor", "--owner", "x", "--expires-days", "0"), "",
     "invalid token expiry 0"),
])
def test_cli_bad_input_exits_2_with_one_line(tmp_path, args, stdin, message):
    out = _cli_in(stdin, "user", *args, "--users", str(tmp_path / "users.json"))
    assert out.returncode == 2, out
    assert message in out.stderr and out.stderr.count("\n") == 1, out.stderr
    assert "Traceback" not in out.stderr


# ------------------------------------------------------------------ red-team findings 7, 8, 11

def test_token_owner_must_be_an_existing_enabled_user(acc):
    acc.add_user("ada", PW, "admin")
    acc.add_user("bob", PW, "analyst")
    for owner in ("ghost", "", None, "ADA"):
        with pytest.raises(AccountError, match="not an existing enabled user"):
            acc.create_token("ci", "auditor", owner)  # type: ignore[arg-type]
    acc.disable_user("bob")
    with pytest.raises(AccountError, match="'bob' is not an existing enabled user"):
        acc.create_token("ci", "auditor", "bob")
    assert acc.tokens() == []


def test_a_token_named_as_another_user_acts_for_its_owner(acc):
    acc.add_user("ada", PW, "admin")
    acc.add_user("bob", PW, "auditor")
    token_id, secret = acc.create_token("bob", "auditor", "ada")  # named as bob, owned by ada
    who = acc.principal_for_token(secret)
    assert who == Principal("ada", "auditor", "token", token_id=token_id, token_owner="ada")


def test_a_token_dies_with_its_owner(acc, path):
    acc.add_user("ada", PW, "admin")
    acc.add_user("bob", PW, "auditor")
    _, first = acc.create_token("ci", "auditor", "bob")
    _, second = acc.create_token("ci2", "auditor", "bob")
    assert acc.principal_for_token(first) is not None
    # Disabled by hand in the file (no revocation): refused at once, at use.
    raw = _raw(path)
    raw["users"] = [dict(u, disabled=u["username"] == "bob") for u in raw["users"]]
    with open(path, "w") as fh:
        json.dump(raw, fh)
    assert acc.principal_for_token(first) is None
    raw["users"] = [dict(u, disabled=False) for u in raw["users"]]
    with open(path, "w") as fh:
        json.dump(raw, fh)
    assert acc.principal_for_token(first) is not None
    # Disabled through Accounts: revoked, and enabling again brings none back.
    revoked = acc.disable_user("bob")
    assert sorted(revoked) == sorted(t["token_id"] for t in acc.tokens())
    acc.enable_user("bob")
    assert acc.principal_for_token(first) is None and acc.principal_for_token(second) is None
    # Removed, then a user of the same name added: the new bob gets no old token.
    _, third = acc.create_token("ci3", "auditor", "bob")
    assert acc.remove_user("bob") != []
    acc.add_user("bob", PW, "auditor")
    assert acc.principal_for_token(third) is None


def test_tokens_expire(acc, path):
    from datetime import datetime, timedelta, timezone
    acc.add_user("ada", PW, "admin")
    token_id, secret = acc.create_token("ci", "auditor", "ada")
    listed = acc.tokens()[0]
    expires = datetime.fromisoformat(listed["expires"])
    assert abs(expires - datetime.now(timezone.utc) - timedelta(days=90)) < timedelta(minutes=1)
    assert listed["expired"] is False
    short_id, short = acc.create_token("short", "auditor", "ada", expires_days=1)
    for bad in (0, -1, 3651, "7", 1.5, True):
        with pytest.raises(AccountError, match="invalid token expiry"):
            acc.create_token("x", "auditor", "ada", expires_days=bad)  # type: ignore[arg-type]
    # Past its expiry: refused. Old tokens without one expire 90 days after created.
    past = (datetime.now(timezone.utc) - timedelta(seconds=1)).isoformat()
    old = (datetime.now(timezone.utc) - timedelta(days=91)).isoformat()
    recent = (datetime.now(timezone.utc) - timedelta(days=89)).isoformat()
    _, old_secret = acc.create_token("old", "auditor", "ada")
    _, recent_secret = acc.create_token("recent", "auditor", "ada")
    raw = _raw(path)
    for t in raw["tokens"]:
        if t["token_id"] == short_id:
            t["expires"] = past
        if t["name"] in ("old", "recent"):  # the stored form before tokens expired
            del t["expires"]
            t["created"] = old if t["name"] == "old" else recent
    with open(path, "w") as fh:
        json.dump(raw, fh)
    assert acc.principal_for_token(short) is None
    assert acc.principal_for_token(old_secret) is None
    assert acc.principal_for_token(recent_secret) is not None
    assert acc.principal_for_token(secret) is not None
    by_name = {t["name"]: t for t in acc.tokens()}
    assert by_name["short"]["expired"] and by_name["old"]["expired"]
    assert not by_name["recent"]["expired"]


class CountingHasher(PasswordHasher):
    def __init__(self):
        super().__init__(time_cost=1, memory_cost=8, parallelism=1)
        self.verified = 0

    def verify(self, hash, password):  # type: ignore[override]
        self.verified += 1
        return super().verify(hash, password)


def test_sign_in_rate_limit_per_address_comes_before_any_hash(path):
    from aitrail_collector.web.auth import accounts as mod
    clock, hasher = Clock(), CountingHasher()
    acc = Accounts(path, hasher=hasher, clock=clock)
    acc.add_user("ada", PW, "auditor")
    for i in range(mod.ADDRESS_ATTEMPTS):
        assert acc.authenticate(f"spray{i}", "wrong password!", "203.0.113.9") is None
    hashed = hasher.verified
    with pytest.raises(mod.SignInThrottled) as exc:
        acc.authenticate("ada", PW, "203.0.113.9")
    assert exc.value.status == 429 and 0 < exc.value.retry_after <= mod.ATTEMPT_WINDOW_S
    assert hasher.verified == hashed  # refused before hashing
    # Another address is not limited; an IPv6 client counts by its /64.
    assert acc.authenticate("ada", PW, "198.51.100.7") is not None
    for i in range(mod.ADDRESS_ATTEMPTS):
        acc.authenticate(f"v6{i}", "wrong password!", f"2001:db8::{i + 1:x}")
    with pytest.raises(mod.SignInThrottled):
        acc.authenticate("ada", PW, "2001:db8::ffff")
    clock.now += mod.ATTEMPT_WINDOW_S + 1
    assert acc.authenticate("ada", PW, "203.0.113.9") is not None


def test_sign_in_rate_limit_per_name(path):
    from aitrail_collector.web.auth import accounts as mod
    clock, hasher = Clock(), CountingHasher()
    acc = Accounts(path, hasher=hasher, clock=clock)
    acc.add_user("bob", PW, "auditor")
    for i in range(mod.NAME_ATTEMPTS):  # right password each time: no lockout, still limited
        assert acc.authenticate("bob", PW, f"198.51.100.{i}") is not None
    with pytest.raises(mod.SignInThrottled, match="this user name"):
        acc.authenticate("bob", PW, "198.51.100.200")
    # A locked-out name is refused without a hash.
    for i in range(5):
        acc.authenticate("eve", "wrong password!", f"192.0.2.{i}")
    hashed = hasher.verified
    assert acc.authenticate("eve", "wrong password!", "192.0.2.99") is None
    assert hasher.verified == hashed


def test_concurrent_hashes_are_bounded(path):
    import threading

    from aitrail_collector.web.auth import accounts as mod
    acc = Accounts(path, hasher=FAST)
    acc.add_user("ada", PW, "auditor")
    acc._slots.wait_s = 0.05
    for _ in range(mod.HASH_SLOTS):
        assert acc._slots.acquire()  # every slot busy
    try:
        with pytest.raises(mod.SignInThrottled) as exc:
            acc.authenticate("ada", PW, "198.51.100.7")
        assert exc.value.status == 503
    finally:
        for _ in range(mod.HASH_SLOTS):
            acc._slots.release()
    assert acc.authenticate("ada", PW, "198.51.100.7") is not None
    # Under a burst, never more than HASH_SLOTS verifications run at once.
    running, peak, lock = [0], [0], threading.Lock()
    verify = acc._verify

    def counted(encoded, password):
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        try:
            return verify(encoded, password)
        finally:
            with lock:
                running[0] -= 1
    acc._verify = counted  # type: ignore[method-assign]
    acc._slots.wait_s = 5
    threads = [threading.Thread(target=acc.authenticate, args=(f"n{i}", "wrong password!",
                                                               f"192.0.2.{i}"))
               for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert 1 <= peak[0] <= mod.HASH_SLOTS


def test_an_outsider_cannot_lock_out_an_admin(path):
    acc = Accounts(path, hasher=FAST, clock=Clock())
    acc.add_user("ada", PW, "admin")
    acc.add_user("bob", PW, "auditor")
    for name in ("ada", "bob"):
        for _ in range(5):
            assert acc.authenticate(name, "wrong password!", "203.0.113.9") is None
    # From the attacker's address both are locked, even with the right password ...
    assert acc.authenticate("ada", PW, "203.0.113.9") is None
    assert acc.authenticate("bob", PW, "203.0.113.9") is None
    # ... but the admin still signs in from anywhere else; other users stay locked.
    assert acc.authenticate("ada", PW, "198.51.100.7") is not None
    assert acc.authenticate("bob", PW, "198.51.100.7") is None


class FakeLedger:
    def __init__(self, fail_after: int = 10**9):
        self.records: list = []
        self.fail_after = fail_after

    def append_own(self, rec):
        if len(self.records) >= self.fail_after:
            raise OSError("store unavailable")
        self.records.append(rec)


def test_access_log_names_the_token_and_its_owner():
    from aitrail_collector.ledger.access_log import AccessLog
    ledger = FakeLedger()
    log = AccessLog(ledger)  # type: ignore[arg-type]
    log.record(Principal("ada", "auditor", "token", token_id="a1b2c3d4e5f6", token_owner="ada"),
               "timeline:T-1", {"task": "T-1"}, 3, via="api")
    rec = ledger.records[0]
    assert rec.data_access.actor == "ada"
    assert rec.attributes["token_id"] == "a1b2c3d4e5f6"
    assert rec.attributes["token_owner"] == "ada"
    assert rec.attributes["principal_kind"] == "token"


def test_admin_actions_are_sealed_or_queued(tmp_path):
    from aitrail_collector.ledger import admin_log
    from aitrail_collector.ledger.access_log import AccessLog
    queue = str(tmp_path / admin_log.QUEUE_NAME)
    ledger = FakeLedger()
    log = AccessLog(ledger, queue)  # type: ignore[arg-type]
    ada = Principal("ada", "admin", "user")
    log.admin(ada, "user_added", "user:bob", {"role": "auditor", "password": "hunter2hunter2"})
    rec = ledger.records[0]
    assert (rec.event_type, rec.data_access.actor, rec.data_access.purpose,
            rec.data_access.resource) == ("admin_action", "ada", "user_added", "user:bob")
    assert rec.attributes["detail.role"] == "auditor"
    assert "hunter2" not in str(rec)
    with pytest.raises(ValueError, match="unknown admin action"):
        log.admin(ada, "made_coffee", "user:bob")
    # The store unavailable: the action is queued, and sealed by the next drain.
    ledger.fail_after = 1
    log.admin(ada, "user_removed", "user:bob")
    log.admin(ada, "token_revoked", "token:a1b2c3d4e5f6")
    assert len(ledger.records) == 1 and stat.S_IMODE(os.stat(queue).st_mode) == 0o600
    drain = admin_log.AdminQueue(ledger, queue)
    assert drain.drain() == 0  # still failing: nothing lost
    ledger.fail_after = 2
    assert drain.drain() == 1  # the first sealed, the second kept
    ledger.fail_after = 10**9
    assert drain.drain() == 1 and drain.drain() == 0
    assert [r.data_access.purpose for r in ledger.records] == [
        "user_added", "user_removed", "token_revoked"]
