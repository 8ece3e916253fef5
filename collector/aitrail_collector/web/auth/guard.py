"""Who is asking: sign-in sessions for the console, bearer tokens for the JSON API.

Roles and permissions live in ``accounts.py``; this module turns a request into a
``Principal`` and refuses what its role may not do.

Before anyone has an account (a fresh store), requests from this machine
(loopback) are served as the ``local`` principal with the auditor's rights, so
the CLI and scripts keep working out of the box; anything from another host is
refused, and the collector refuses to listen beyond loopback in that state. Once
a user exists, every request needs a session or a token.

"From this machine" is the TCP peer's address, never a header: X-Forwarded-For,
X-Real-IP and Forwarded are written by whoever sends the request. A peer listed in
``--trusted-proxies`` is a reverse proxy relaying other people's requests, so it
is never a local caller either (the CLI on this machine uses the local token).
"""

from __future__ import annotations

import hmac
import ipaddress
import secrets
from typing import Optional, Sequence, Union

from fastapi import HTTPException, Request

from aitrail.errors import AitrailError
from aitrail_collector.web.auth.accounts import Accounts, Principal, Session, Sessions, allowed

SESSION_COOKIE = "aitrail_session"
PEER = "aitrail.peer"  # the ASGI scope key asgi_app stores the TCP peer under
LOGIN_CSRF_COOKIE = "aitrail_login_csrf"
IPNetwork = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]
LOCAL = Principal(name="local", role="auditor", kind="local")


class NotSignedIn(AitrailError):
    """Raised by console dependencies: the page redirects to the sign-in form."""

    def __init__(self, next_url: str):
        self.next_url = next_url


def is_loopback(host: Optional[str]) -> bool:
    try:
        return host is not None and ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _networks(addresses: Sequence[str]) -> tuple[IPNetwork, ...]:
    return tuple(ipaddress.ip_network(a, strict=False) for a in addresses)


class WebAuth:
    def __init__(self, accounts: Accounts, sessions: Optional[Sessions] = None,
                 secure_cookies: bool = False, trusted_proxies: Sequence[str] = ()):
        self.accounts = accounts
        self.sessions = sessions or Sessions()
        self.secure_cookies = secure_cookies
        self.trusted_proxies = _networks(trusted_proxies)
        # The CLI's credential on this machine (server.py writes it into the data dir).
        self.local_token = "aitl_" + secrets.token_urlsafe(32)

    # ------------------------------------------------------------ identifying
    def session(self, request: Request) -> Optional[Session]:
        sid = request.cookies.get(SESSION_COOKIE)
        return self.sessions.get(sid) if sid else None

    def principal(self, request: Request) -> Optional[Principal]:
        header = request.headers.get("authorization", "")
        if header:
            scheme, _, secret = header.partition(" ")
            secret = secret.strip()
            if scheme.lower() != "bearer" or not secret:
                return None
            if hmac.compare_digest(secret.encode(), self.local_token.encode()):
                return LOCAL
            return self.accounts.principal_for_token(secret)
        session = self.session(request)
        if session is not None:
            return session.principal
        if not self.accounts.has_users() and self.is_local(request):
            return LOCAL
        return None

    def is_local(self, request: Request) -> bool:
        """Whether the TCP peer is this machine and not a proxy relaying for others."""
        peer = request.scope.get(PEER, request.scope.get("client"))
        host = peer[0] if peer else None
        if not is_loopback(host):
            return False
        address = ipaddress.ip_address(host)
        return not any(address in net for net in self.trusted_proxies)

    # ------------------------------------------------------------ guarding
    def api(self, request: Request, permission: str) -> Principal:
        """For JSON endpoints: 401 without credentials, 403 when the role may not."""
        who = self.principal(request)
        if who is None:
            raise HTTPException(status_code=401, detail="sign in or send "
                                "'Authorization: Bearer <token>'",
                                headers={"WWW-Authenticate": "Bearer"})
        if not allowed(who.role, permission):
            raise HTTPException(status_code=403, detail=f"role {who.role!r} may not "
                                f"{_WHAT.get(permission, permission)}")
        return who

    def page(self, request: Request, permission: str) -> Principal:
        """For console pages: a redirect to sign in, or 403 for the role."""
        who = self.principal(request)
        if who is None:
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            raise NotSignedIn(target)
        if not allowed(who.role, permission):
            raise HTTPException(status_code=403, detail=f"Your role ({who.role}) may not "
                                f"{_WHAT.get(permission, permission)}.")
        return who

    def check_form(self, request: Request, token: str) -> Session:
        """A console form post: it must come with the session's CSRF token."""
        session = self.session(request)
        if session is None:
            raise HTTPException(status_code=401, detail="your session has expired; sign in again")
        if not self.sessions.check_csrf(session, token or ""):
            raise HTTPException(status_code=403, detail="the form is stale or was not sent by "
                                "this console (CSRF token mismatch); reload the page")
        return session

    @staticmethod
    def new_login_csrf() -> str:
        return secrets.token_urlsafe(24)


_WHAT = {
    "records": "read records", "payloads": "read payload text (inputs, outputs, rationale)",
    "export": "export CSV", "aggregates": "see aggregates", "verify": "run verification",
    "erase": "erase payloads", "admin": "manage users and API tokens",
}
