"""Console accounts: users with roles, API tokens for the JSON API, sign-in sessions.

Roles and what they may do are one table, ``PERMISSIONS``; the console and the
docs read it from here, and code asks ``allowed(role, permission)``.

The users file (default ``<data dir>/console-users.json``, mode 0600, written
atomically, reread when it changes on disk, like the ingest keys file of
``auth.py``)::

    {"version": 1,
     "users":  [{"username": "ada", "role": "auditor",
                 "password_hash": "$argon2id$v=19$m=65536,t=3,p=4$...",
                 "created": "2025-01-01T00:00:00+00:00", "disabled": false,
                 "stamp": "9f2c..."}],
     "tokens": [{"token_id": "a1b2c3d4e5f6", "name": "nightly-export",
                 "role": "auditor", "owner": "ada", "sha256": "<hex>",
                 "created": "2025-01-01T00:00:00+00:00", "revoked": false,
                 "expires": "2025-04-01T00:00:00+00:00"}]}

Fields are only ever added, with defaults, so older files keep loading.

Writers (the console, ``aitrail user``) take ``<file>.lock`` (flock) for each
read-change-write, so one process does not undo another's change.

Passwords are kept only as argon2id hashes (argon2-cffi), tokens only as
SHA-256 (a token carries 32 random bytes, so a fast hash is enough). A token
reads ``aitk_<token_id>_<random>`` so that it can be recognised in a leak and
looked up by id. ``stamp`` changes whenever a user's password, role or
disabled flag changes; sessions made with ``Sessions(accounts=...)`` end when
it does, even when the change came from ``aitrail user`` in another process.

A token acts for its ``owner``, an existing enabled user named at creation and
never changed: its Principal carries the owner as its name (what the access log
seals as the actor) and the token's id. A token is refused as soon as its owner is
disabled or removed (checked at every use, on the file as it is now; disabling or
removing a user also revokes their tokens, so enabling them again, or adding a
user of the same name, brings none back), and after ``expires``, set at creation
(``DEFAULT_TOKEN_DAYS``, 90 days, unless told otherwise). A token stored before
tokens had an expiry expires ``DEFAULT_TOKEN_DAYS`` after its ``created``.

Sign-in lockout (in memory, per process): after ``LOCKOUT_FAILURES`` (5) failed
attempts for one username within ``LOCKOUT_WINDOW_S`` (15 minutes),
``authenticate`` refuses that username, even with the right password, for
``LOCKOUT_S`` (15 minutes), without computing a hash. Unknown usernames are
counted the same way, so the lockout does not tell which names exist. A restart
clears it. For an enabled admin, failures (and the per-name rate limit below)
count per username *and client address*: an outsider who fails five times locks
the admin out from the outsider's own address only, so nobody outside can lock
the last admin out of the console.

Sign-in work is bounded (throttle.py), checked before any hash is computed: at
most ``ADDRESS_ATTEMPTS`` attempts per client address (the socket peer) and
``NAME_ATTEMPTS`` per username within ``ATTEMPT_WINDOW_S``, else
``SignInThrottled`` (HTTP 429 with Retry-After); and at most ``HASH_SLOTS``
argon2 computations at a time (64 MiB each), an attempt waiting at most
``HASH_WAIT_S`` for one, else ``SignInThrottled`` with status 503.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import logging
import os
import re
import secrets
import threading
import time
from collections import deque
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timedelta, timezone
from typing import Callable, Iterator, Optional

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from aitrail.errors import AitrailError
from aitrail_collector import credentials
from aitrail_collector.web.auth.throttle import HashSlots, SlidingWindow, address_key

log = logging.getLogger("aitrail.collector")

ROLES = ("auditor", "analyst", "admin")

# permission -> (roles that have it, what it covers). The one place roles are defined;
# the README's role table says the same (tests/unit/test_roles_readme.py holds them
# equal). Verification is the auditor's (and, to run the collector, the admin's), not
# the analyst's: proving the records were not rewritten is evidence for an auditor,
# kept apart from reading figures off them (SOC 2 separation of duties; least
# privilege: nothing an analyst does needs it).
PERMISSIONS: dict[str, tuple[tuple[str, ...], str]] = {
    "records": (("auditor", "analyst"), "search and timelines, without payload text"),
    "payloads": (("auditor",), "payload text: inputs, outputs, rationale, diffs"),
    "export": (("auditor",), "CSV export (it carries payloads)"),
    "aggregates": (("auditor", "analyst"), "charts and the summary"),
    "verify": (("auditor", "admin"), "run verification, see its status"),
    "review": (("auditor", "admin"), "sign off a period of the log as reviewed (SOC 2)"),
    "erase": (("auditor",), "GDPR erasure of payloads"),
    "admin": (("admin",), "manage users and API tokens"),
}

USERS_FILE_NAME = "console-users.json"
TOKEN_PREFIX = "aitk_"
MIN_PASSWORD_CHARS = 12
MAX_PASSWORD_CHARS = 1024  # argon2 takes any length; this only bounds the work per attempt
LOCKOUT_FAILURES = 5
LOCKOUT_WINDOW_S = 15 * 60
LOCKOUT_S = 15 * 60
DEFAULT_TOKEN_DAYS = 90
MAX_TOKEN_DAYS = 3650
ATTEMPT_WINDOW_S = 60
ADDRESS_ATTEMPTS = 20   # per client address within ATTEMPT_WINDOW_S
NAME_ATTEMPTS = 10      # per username within ATTEMPT_WINDOW_S
HASH_SLOTS = 2          # concurrent argon2 computations (64 MiB each)
HASH_WAIT_S = 2.0       # how long an attempt waits for a slot
_USERNAME = re.compile(r"[A-Za-z0-9_.@-]{1,64}")
_TOKEN_ID = re.compile(r"[0-9a-f]{12}")
_MAX_TRACKED_NAMES = 10_000  # bounds the lockout table under a spray of made-up names


def allowed(role: str, permission: str) -> bool:
    """Whether ``role`` has ``permission``. An unknown role has nothing (deny by
    default); an unknown permission is a programming error, so ValueError."""
    if permission not in PERMISSIONS:
        raise ValueError(f"unknown permission {permission!r} "
                         f"(one of {', '.join(PERMISSIONS)})")
    return role in PERMISSIONS[permission][0]


def users_file(data_dir: Optional[str] = None) -> str:
    """``<data dir>/console-users.json``; the data dir defaults as the collector's does."""
    data_dir = data_dir or os.environ.get("AITRAIL_DATA_DIR") or os.path.join(
        os.getcwd(), "aitrail-data")
    return os.path.join(data_dir, USERS_FILE_NAME)


class AccountError(AitrailError, ValueError):
    """A request about accounts that cannot be done; the text says why."""


class SignInThrottled(AccountError):
    """Too many sign-in attempts (status 429) or too many at once (503); try again
    after ``retry_after`` seconds. Raised before any password hash is computed."""

    def __init__(self, message: str, retry_after: float, status: int = 429):
        super().__init__(message)
        self.retry_after, self.status = retry_after, status


@dataclass(frozen=True)
class Principal:
    """Who is asking: a signed-in user, an API token, or the local operator."""
    name: str
    role: str
    kind: str  # "user", "token" or "local"
    token_id: str = ""     # with kind "token": which token (name is its owner)
    token_owner: str = ""  # with kind "token": the user it acts for


@dataclass(frozen=True)
class User:
    username: str
    role: str
    password_hash: str
    created: str
    disabled: bool = False
    stamp: str = ""


@dataclass(frozen=True)
class ApiToken:
    token_id: str
    name: str
    role: str
    owner: str
    sha256: str
    created: str
    revoked: bool = False
    expires: str = ""  # ISO 8601; "" (stored before expiry existed): DEFAULT_TOKEN_DAYS
    #                    after created

    def expiry(self) -> datetime:
        when = datetime.fromisoformat(self.expires) if self.expires else \
            datetime.fromisoformat(self.created) + timedelta(days=DEFAULT_TOKEN_DAYS)
        return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _check_role(role: str) -> None:
    if role not in ROLES:
        raise AccountError(f"unknown role {role!r} (one of {', '.join(ROLES)})")


def _check_username(username: str) -> None:
    if not isinstance(username, str) or not _USERNAME.fullmatch(username):
        raise AccountError(f"invalid username {username!r}: 1 to 64 of letters, digits "
                           "and _ . @ -")


def _check_password(username: str, password: str) -> None:
    if not isinstance(password, str) or len(password) < MIN_PASSWORD_CHARS:
        raise AccountError(f"password too short: at least {MIN_PASSWORD_CHARS} characters")
    if len(password) > MAX_PASSWORD_CHARS:
        raise AccountError(f"password too long: at most {MAX_PASSWORD_CHARS} characters")
    if password.casefold() == username.casefold():
        raise AccountError("password must not be the username")


def _check_label(what: str, value: str) -> None:
    if not isinstance(value, str) or not value.strip() or len(value) > 128 \
            or not value.isprintable():
        raise AccountError(f"invalid token {what} {value!r}: 1 to 128 printable characters")


# ------------------------------------------------------------------ the file

def load_accounts(path: str) -> tuple[dict[str, User], dict[str, ApiToken]]:
    """Users by name and tokens by id; a missing file is empty, a bad one ValueError."""
    try:
        with open(path) as fh:
            raw = json.load(fh)
    except FileNotFoundError:
        return {}, {}
    except ValueError as exc:
        raise ValueError(f"{path}: not a valid users file: {exc}") from None
    try:
        users = {u["username"]: User(**u) for u in raw.get("users", [])}
        tokens = {t["token_id"]: ApiToken(**t) for t in raw.get("tokens", [])}
    except (AttributeError, KeyError, TypeError) as exc:
        raise ValueError(f"{path}: not a valid users file: {exc}") from None
    for u in users.values():
        if u.role not in ROLES or not isinstance(u.password_hash, str):
            raise ValueError(f"{path}: user {u.username!r} has an unknown role or no hash")
    for t in tokens.values():
        if t.role not in ROLES:
            raise ValueError(f"{path}: token {t.token_id!r} has an unknown role")
        try:
            t.expiry()
        except (TypeError, ValueError):
            raise ValueError(f"{path}: token {t.token_id!r} has a bad created or expires "
                             "time") from None
    return users, tokens


def save_accounts(path: str, users: dict[str, User], tokens: dict[str, ApiToken]) -> None:
    """Atomically, mode 0600 from the first byte (credentials.write_json)."""
    credentials.write_json(path, {
        "version": 1,
        "users": [asdict(u) for u in sorted(users.values(), key=lambda u: u.username)],
        "tokens": [asdict(t) for t in tokens.values()]})


# ------------------------------------------------------------------ accounts

class Accounts:
    """Users and API tokens in one JSON file, reread whenever it changes on disk.

    ``hasher`` and ``clock`` are for tests: cheaper argon2 parameters, and a
    fake clock for the lockout and the rate limits.
    """

    def __init__(self, path: str, *, hasher: Optional[PasswordHasher] = None,
                 clock: Callable[[], float] = time.monotonic):
        self.path = path
        self._ph = hasher or PasswordHasher()
        self._clock = clock
        self._lock = threading.RLock()
        self._stamp: Optional[tuple] = None
        self._dummy: Optional[str] = None
        self._failures: dict[object, deque] = {}
        self._locked_until: dict[object, float] = {}
        self._by_address = SlidingWindow(ADDRESS_ATTEMPTS, ATTEMPT_WINDOW_S, clock)
        self._by_name = SlidingWindow(NAME_ATTEMPTS, ATTEMPT_WINDOW_S, clock)
        self._slots = HashSlots(HASH_SLOTS, HASH_WAIT_S)
        # At start-up a bad file is an error, not a warning (as in auth.KeyRing).
        try:
            self._users, self._tokens = load_accounts(path)
        except ValueError as exc:
            raise AccountError(str(exc)) from None
        self._stamp = self._file_stamp()

    # -- reading

    def _file_stamp(self) -> Optional[tuple]:
        return credentials.file_stamp(self.path)

    def _refresh(self) -> None:
        stamp = self._file_stamp()
        if stamp == self._stamp:
            return
        with self._lock:
            try:
                self._users, self._tokens = load_accounts(self.path)
            except ValueError as exc:
                # A half-edited file must not lock everyone out (or let anyone in):
                # keep the last good state until it is valid again.
                log.error("console users not reloaded, keeping the previous ones: %s", exc)
            self._stamp = stamp

    @contextlib.contextmanager
    def _editing(self) -> Iterator[tuple[dict[str, User], dict[str, ApiToken]]]:
        """Read the file as it is now, let the caller change it, write it back."""
        with self._lock, credentials.locked(self.path):
            try:
                users, tokens = load_accounts(self.path)
            except ValueError as exc:
                # Writing our last good copy over it would silently undo whatever
                # someone is fixing by hand; make them finish first.
                raise AccountError(f"{exc}; fix or remove it before changing accounts") \
                    from None
            yield users, tokens
            save_accounts(self.path, users, tokens)
            self._users, self._tokens, self._stamp = users, tokens, self._file_stamp()

    def users(self) -> list[dict]:
        """Every user, sorted by name, without the password hash."""
        self._refresh()
        return [{"username": u.username, "role": u.role, "created": u.created,
                 "disabled": u.disabled} for u in sorted(self._users.values(),
                                                         key=lambda u: u.username)]

    def has_users(self) -> bool:
        self._refresh()
        return bool(self._users)

    def tokens(self) -> list[dict]:
        """Every API token, without its hash (the secret is never stored); ``expires``
        is when it expires (also for tokens stored without one), ``expired`` whether
        it has, ``owner_active`` whether its owner exists and is enabled."""
        self._refresh()
        now = datetime.now(timezone.utc)
        out = []
        for t in self._tokens.values():
            owner = self._users.get(t.owner)
            row = {k: v for k, v in asdict(t).items() if k != "sha256"}
            row.update(expires=t.expiry().isoformat(timespec="seconds"),
                       expired=t.expiry() <= now,
                       owner_active=owner is not None and not owner.disabled)
            out.append(row)
        return out

    def user_stamp(self, username: str) -> Optional[str]:
        """Changes whenever the user's password, role or disabled flag does; None
        when the user does not exist or is disabled."""
        self._refresh()
        user = self._users.get(username)
        return None if user is None or user.disabled else user.stamp

    def user_principal(self, username: str) -> Optional[Principal]:
        """The user as they are now (role from the file), or None if gone or disabled."""
        self._refresh()
        user = self._users.get(username)
        return None if user is None or user.disabled else Principal(user.username, user.role,
                                                                     "user")

    # -- users

    def add_user(self, username: str, password: str, role: str) -> None:
        _check_username(username)
        _check_role(role)
        _check_password(username, password)
        password_hash = self._hash(password)  # slow: outside the file lock
        with self._editing() as (users, _):
            self._add(users, username, password_hash, role)

    def bootstrap_admin(self, username: str, password: str) -> Principal:
        """The first admin, on first start; refused once any user exists."""
        _check_username(username)
        _check_password(username, password)
        password_hash = self._hash(password)
        with self._editing() as (users, _):
            if users:
                raise AccountError("users exist already; an admin adds further users")
            self._add(users, username, password_hash, "admin")
        return Principal(username, "admin", "user")

    @staticmethod
    def _add(users: dict[str, User], username: str, password_hash: str, role: str) -> None:
        # Names differing only in case would look like one person in the audit trail.
        if any(name.casefold() == username.casefold() for name in users):
            raise AccountError(f"user {username!r} exists already")
        users[username] = User(username, role, password_hash, _now(),
                               stamp=secrets.token_hex(8))

    def set_password(self, username: str, password: str) -> None:
        _check_username(username)
        _check_password(username, password)
        password_hash = self._hash(password)
        self._change(username, password_hash=password_hash)

    def set_role(self, username: str, role: str) -> None:
        _check_role(role)
        self._change(username, role=role)

    def disable_user(self, username: str) -> list[str]:
        """Disables the user and revokes their API tokens; returns the ids revoked."""
        return self._change(username, disabled=True)

    def enable_user(self, username: str) -> None:
        self._change(username, disabled=False)

    def remove_user(self, username: str) -> list[str]:
        """Removes the user and revokes their API tokens; returns the ids revoked."""
        with self._editing() as (users, tokens):
            self._need(users, username)
            self._keep_an_admin(users, username)
            del users[username]
            return self._revoke_owned(tokens, username)

    def _change(self, username: str, **changes) -> list[str]:
        with self._editing() as (users, tokens):
            user = self._need(users, username)
            if changes.get("role", "admin") != "admin" or changes.get("disabled"):
                self._keep_an_admin(users, username)
            # A new stamp ends the user's console sessions (see Sessions).
            users[username] = replace(user, stamp=secrets.token_hex(8), **changes)
            return self._revoke_owned(tokens, username) if changes.get("disabled") else []

    @staticmethod
    def _revoke_owned(tokens: dict[str, ApiToken], owner: str) -> list[str]:
        """A token dies with its owner: revoked in the same write that disables or
        removes them (use-time checks refuse it anyway; this keeps it dead)."""
        ids = [t.token_id for t in tokens.values() if t.owner == owner and not t.revoked]
        for token_id in ids:
            tokens[token_id] = replace(tokens[token_id], revoked=True)
        return ids

    @staticmethod
    def _need(users: dict[str, User], username: str) -> User:
        if username not in users:
            raise AccountError(f"no user {username!r}")
        return users[username]

    @staticmethod
    def _keep_an_admin(users: dict[str, User], username: str) -> None:
        """Refuses to demote, disable or remove the last enabled admin: nobody
        could manage users from the console any more."""
        admins = [u.username for u in users.values() if u.role == "admin" and not u.disabled]
        if admins == [username]:
            raise AccountError(f"{username!r} is the last enabled admin; make another "
                               "admin first")

    # -- sign-in

    def authenticate(self, username: str, password: str,
                     client: Optional[str] = None) -> Optional[Principal]:
        """The user's Principal if the password is right, the user is enabled and
        not locked out; else None (never says which of these failed).

        ``client`` is the caller's network address (the socket peer); with it the
        per-address rate limit applies, and an admin's lockout is per address.
        Raises ``SignInThrottled`` before computing any hash when a rate limit is
        reached or no hash slot frees up in time."""
        self._refresh()
        user = self._users.get(username) if isinstance(username, str) else None
        name = username if isinstance(username, str) else ""
        address = address_key(client) if client is not None else None
        key = self._lockout_key(name, user, address)
        if address is not None:
            wait = self._by_address.hit(address)
            if wait is not None:
                raise SignInThrottled("too many sign-in attempts from your address; try "
                                      "again later", wait)
        with self._lock:
            if self._is_locked(key):
                return None  # no hash: a locked name costs nothing
        wait = self._by_name.hit(key)
        if wait is not None:
            raise SignInThrottled("too many sign-in attempts for this user name; try again "
                                  "later", wait)
        dummy = self._dummy_hash() if user is None else ""
        if not self._slots.acquire():
            raise SignInThrottled("the console is busy with other sign-ins; try again in a "
                                  "moment", 1, status=503)
        try:
            # One argon2 verification, against a dummy hash for unknown names, so the
            # time taken does not reveal which names exist.
            ok = self._verify(user.password_hash if user else dummy, password)
        finally:
            self._slots.release()
        with self._lock:
            if self._is_locked(key):
                return None
            if not ok or user is None or user.disabled:
                self._note_failure(key)
                return None
            self._failures.pop(key, None)
        self._rehash_if_needed(user, password)
        return Principal(user.username, user.role, "user")

    @staticmethod
    def _lockout_key(name: str, user: Optional[User], address: Optional[str]) -> object:
        """What failures and the per-name limit count against: the name, or for an
        enabled admin the name and the client address (see the module docstring)."""
        if address is not None and user is not None and user.role == "admin" \
                and not user.disabled:
            return (name, address)
        return name

    def _hash(self, password: str) -> str:
        """A new argon2 hash, within the bound on concurrent hashes (waiting for it:
        these are admin actions, not anonymous attempts)."""
        while not self._slots.acquire():
            pass
        try:
            return self._ph.hash(password)
        finally:
            self._slots.release()

    def _verify(self, encoded: str, password: str) -> bool:
        if not isinstance(password, str) or len(password) > MAX_PASSWORD_CHARS:
            return False
        try:
            return self._ph.verify(encoded, password)
        except (VerificationError, InvalidHashError):
            return False

    def _dummy_hash(self) -> str:
        # Made on first need rather than at start, so `aitrail user list` stays quick.
        with self._lock:
            if self._dummy is None:
                self._dummy = self._hash(secrets.token_urlsafe(16))
            return self._dummy

    def _is_locked(self, key: object) -> bool:
        until = self._locked_until.get(key)
        if until is None:
            return False
        if self._clock() < until:
            return True
        del self._locked_until[key]
        return False

    def _note_failure(self, key: object) -> None:
        now = self._clock()
        if key not in self._failures and len(self._failures) >= _MAX_TRACKED_NAMES:
            self._forget_stale(now)
        recent = self._failures.setdefault(key, deque())
        recent.append(now)
        while recent and recent[0] <= now - LOCKOUT_WINDOW_S:
            recent.popleft()
        if len(recent) >= LOCKOUT_FAILURES:
            self._locked_until[key] = now + LOCKOUT_S
            self._failures.pop(key, None)
            log.warning("console sign-in for %r locked for %d s after %d failures",
                        key, LOCKOUT_S, LOCKOUT_FAILURES)

    def _forget_stale(self, now: float) -> None:
        for name in [n for n, d in self._failures.items()
                     if not d or d[-1] <= now - LOCKOUT_WINDOW_S]:
            del self._failures[name]
        for name in [n for n, t in self._locked_until.items() if t <= now]:
            del self._locked_until[name]

    def _rehash_if_needed(self, user: User, password: str) -> None:
        """Moves a hash made with older argon2 parameters to the current ones."""
        if not self._ph.check_needs_rehash(user.password_hash):
            return
        new_hash = self._hash(password)
        try:
            with self._editing() as (users, _):
                current = users.get(user.username)
                # Only if nobody changed the password meanwhile; the stamp stays,
                # since a rehash is no reason to end sessions.
                if current is not None and current.password_hash == user.password_hash:
                    users[user.username] = replace(current, password_hash=new_hash)
        except (OSError, AccountError) as exc:
            log.error("could not store the rehashed password of %r: %s", user.username, exc)

    # -- API tokens

    def create_token(self, name: str, role: str, owner: str,
                     expires_days: int = DEFAULT_TOKEN_DAYS) -> tuple[str, str]:
        """A token for the JSON API, acting for ``owner`` (an existing enabled user,
        fixed for the token's life), expiring after ``expires_days``; returns
        (token_id, secret). The secret is shown once: only its SHA-256 is stored."""
        _check_label("name", name)
        _check_role(role)
        if isinstance(expires_days, bool) or not isinstance(expires_days, int) \
                or not 1 <= expires_days <= MAX_TOKEN_DAYS:
            raise AccountError(f"invalid token expiry {expires_days!r}: 1 to {MAX_TOKEN_DAYS} "
                               "days")
        token_id, secret = credentials.new_token(TOKEN_PREFIX)
        now = datetime.now(timezone.utc).replace(microsecond=0)
        with self._editing() as (users, tokens):
            user = users.get(owner) if isinstance(owner, str) else None
            if user is None or user.disabled:
                raise AccountError(f"token owner {owner!r} is not an existing enabled user "
                                   "(a token acts for a user; add them first)")
            tokens[token_id] = ApiToken(
                token_id, name, role, owner, credentials.digest(secret), now.isoformat(),
                expires=(now + timedelta(days=expires_days)).isoformat())
        return token_id, secret

    def revoke_token(self, token_id: str) -> None:
        """Revoked tokens stay in the file (who had what, when); revoking twice is fine."""
        with self._editing() as (_, tokens):
            if token_id not in tokens:
                raise AccountError(f"no token with id {token_id!r}")
            tokens[token_id] = replace(tokens[token_id], revoked=True)

    def principal_for_token(self, secret: str) -> Optional[Principal]:
        """The token's Principal (named as its owner), or None when it is malformed,
        unknown, revoked or expired, or its owner is gone or disabled."""
        self._refresh()
        if not isinstance(secret, str) or not secret.startswith(TOKEN_PREFIX):
            return None
        token_id, sep, _ = secret[len(TOKEN_PREFIX):].partition("_")
        token = self._tokens.get(token_id) if sep and _TOKEN_ID.fullmatch(token_id) else None
        if token is None or not credentials.matches(token.sha256, secret) or token.revoked:
            return None
        owner = self._users.get(token.owner)
        if owner is None or owner.disabled or token.expiry() <= datetime.now(timezone.utc):
            return None
        return Principal(token.owner, token.role, "token", token_id=token.token_id,
                         token_owner=token.owner)


# ------------------------------------------------------------------ sessions

@dataclass
class Session:
    """One console sign-in. ``csrf`` goes into every form the console serves."""
    id: str
    csrf: str
    principal: Principal
    created: float
    last_seen: float
    stamp: Optional[str] = field(default=None, repr=False)  # None: not checked against accounts
    # Messages for the next page this session sees, shown once (console: admin page).
    flash: list[tuple[str, str]] = field(default_factory=list, repr=False)


class Sessions:
    """The console's sign-in sessions, in memory (a restart signs everyone out).

    A session ends after ``idle_timeout_s`` without use or ``max_age_s`` after
    sign-in, whichever comes first. Given ``accounts``, a user's sessions also
    end as soon as their password, role or disabled flag changes or they are
    removed, including changes made by ``aitrail user`` in another process.
    """

    def __init__(self, idle_timeout_s: float = 1800, max_age_s: float = 12 * 3600,
                 clock: Callable[[], float] = time.monotonic, *,
                 accounts: Optional[Accounts] = None):
        self.idle_timeout_s = idle_timeout_s
        self.max_age_s = max_age_s
        self._clock = clock
        self._accounts = accounts
        self._lock = threading.Lock()
        self._sessions: dict[str, Session] = {}

    def create(self, principal: Principal) -> Session:
        stamp = self._stamp_of(principal)
        if stamp is None and self._accounts is not None and principal.kind == "user":
            raise AccountError(f"user {principal.name!r} does not exist or is disabled")
        now = self._clock()
        session = Session(secrets.token_urlsafe(32), secrets.token_urlsafe(32), principal,
                          now, now, stamp)
        with self._lock:
            self._sweep(now)  # keeps memory bounded by the sessions still alive
            self._sessions[session.id] = session
        return session

    def get(self, session_id: str) -> Optional[Session]:
        """The live session, its last use set to now; None if unknown or expired."""
        if not isinstance(session_id, str):
            return None
        now = self._clock()
        with self._lock:
            session = self._sessions.get(session_id)
            if session is None:
                return None
            if self._expired(session, now):
                del self._sessions[session_id]
                return None
            session.last_seen = now
        if session.stamp is not None and self._stamp_of(session.principal) != session.stamp:
            self.revoke(session_id)
            return None
        return session

    def revoke(self, session_id: str) -> None:
        with self._lock:
            self._sessions.pop(session_id, None)

    def revoke_user(self, name: str) -> int:
        """Ends every session of user ``name``; returns how many there were."""
        with self._lock:
            ids = [sid for sid, s in self._sessions.items()
                   if s.principal.kind == "user" and s.principal.name == name]
            for sid in ids:
                del self._sessions[sid]
        return len(ids)

    @staticmethod
    def check_csrf(session: Session, token: str) -> bool:
        if not isinstance(token, str) or not token:
            return False
        return hmac.compare_digest(session.csrf.encode(), token.encode())

    def _expired(self, session: Session, now: float) -> bool:
        return (now - session.last_seen > self.idle_timeout_s
                or now - session.created > self.max_age_s)

    def _sweep(self, now: float) -> None:
        for sid in [sid for sid, s in self._sessions.items() if self._expired(s, now)]:
            del self._sessions[sid]

    def _stamp_of(self, principal: Principal) -> Optional[str]:
        """The user's current stamp; None when not tracked, or the user is gone or
        disabled (which no tracked session's stamp equals)."""
        if self._accounts is None or principal.kind != "user":
            return None
        return self._accounts.user_stamp(principal.name)
