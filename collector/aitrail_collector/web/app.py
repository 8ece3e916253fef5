"""The HTTP side of the collector: the JSON API (``web/api``, one router per
resource, OpenAPI at /docs) and the console (``web/console``), over one
``Services``. CLI commands given ``--url`` use the API; scripts authenticate with
``Authorization: Bearer <token>`` (``aitrail user token-create``), the console with
a sign-in session. Every search, timeline and export is sealed into the ledger as
a ``data_access`` record, and so is every proof, summary and dashboard read.
Every answer carries the security headers (``SecurityHeaders``). With an OTLP
receiver in ``Services``, ``POST /v1/traces`` takes OpenTelemetry traces
(ingest/otlp.py): it authenticates with the ingest API keys, not these tokens.
"""

from __future__ import annotations

from typing import Any, Sequence

from fastapi import APIRouter, FastAPI, Security
from fastapi.security import HTTPBearer
from fastapi_offline import FastAPIOffline
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from aitrail_collector.ingest.otlp import mount_http
from aitrail_collector.web.api import dashboards, erasure, integrity, records
from aitrail_collector.web.api.common import who_for
from aitrail_collector.web.auth.guard import PEER
from aitrail_collector.web.console import pages as console_pages
from aitrail_collector.web.services import Services


def create_app(services: Services) -> FastAPI:
    """The API and console over ``services.store``. With a signer (a running collector),
    also what needs it: proofs on demand, verification with trust, erasure, and the
    ledger that ``data_access`` records are sealed into."""
    # /docs with Swagger UI's files served from here (fastapi-offline ships them): no
    # CDN, so it works offline and air-gapped. validatorUrl None: Swagger UI would
    # otherwise send the spec to an online validator. No /redoc: ReDoc's page loads its
    # logo from the vendor's CDN whatever the options; /docs says the same.
    app = FastAPIOffline(title="aitrail", version="1", description=API_DESCRIPTION,
                         static_url=DOCS_STATIC, favicon_url=DOCS_STATIC + "/favicon.png",
                         redoc_url=None, swagger_ui_parameters={"validatorUrl": None})
    app.add_middleware(SecurityHeaders)
    console_pages.mount(app, console_pages.Console(services))
    api = APIRouter(prefix="/api/v1", dependencies=[Security(_BEARER)])

    otlp = services.otlp
    if otlp is not None:
        mount_http(app, otlp)

    @app.get("/healthz", tags=["status"])
    def healthz() -> dict:
        """Liveness; no credentials needed. ``otlp``: the OTLP receivers' counters since
        the collector started (ingest/otlp.py OtlpStats)."""
        return {"ok": True, **services.info,
                **({"otlp": otlp.stats.snapshot()} if otlp is not None else {})}

    who = who_for(services)
    records.mount(api, services, who)
    integrity.mount(api, services, who)
    erasure.mount(api, services, who)
    dashboards.mount(api, services, who)
    app.include_router(api)
    return app


def asgi_app(app: ASGIApp, trusted_proxies: Sequence[str] = ()) -> ASGIApp:
    """What the HTTP server runs: ``app``, with the TCP peer kept in the scope (guard.PEER:
    loopback trust looks at it and nothing else) and, only for ``trusted_proxies``,
    the client named by their X-Forwarded-For as ``request.client``."""
    inner = ProxyHeadersMiddleware(app, trusted_hosts=list(trusted_proxies)) \
        if trusted_proxies else app

    async def keep_peer(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            scope[PEER] = scope.get("client")
        await inner(scope, receive, send)
    return keep_peer


# No inline script anywhere in the console; pygal's SVG charts (inlined in the page)
# carry <style> elements and style attributes, hence style-src 'unsafe-inline', which
# cannot run code. No frames, no plugins, forms post only here.
CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
       "img-src 'self' data:; object-src 'none'; base-uri 'none'; form-action 'self'; "
       "frame-ancestors 'none'")
# /docs (Swagger UI, its files served from DOCS_STATIC) starts with an inline script
# (FastAPI's page). It shows no ledger data itself: the calls it makes go to /api/v1,
# which answers under CSP.
DOCS_CSP = ("default-src 'self'; script-src 'self' 'unsafe-inline'; "
            "style-src 'self' 'unsafe-inline'; img-src 'self' data:; object-src 'none'; "
            "base-uri 'none'; frame-ancestors 'none'")
DOCS_STATIC = "/docs/static"
DOCS_PATHS = ("/docs",)
STATIC_PREFIX = "/console/static/"


class SecurityHeaders:
    """On every answer: the CSP, no framing, no MIME sniffing, no referrer; and
    ``Cache-Control: no-store`` on everything but the static files (console, docs), since
    pages and API answers carry ledger data that must not linger in caches."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope.get("path", "")
        docs = path in DOCS_PATHS or path.startswith("/docs/")
        extra: list[tuple[bytes, bytes]] = [
            (b"content-security-policy", (DOCS_CSP if docs else CSP).encode()),
            (b"x-frame-options", b"DENY"), (b"x-content-type-options", b"nosniff"),
            (b"referrer-policy", b"no-referrer")]
        if not path.startswith((STATIC_PREFIX, DOCS_STATIC + "/")):
            extra.append((b"cache-control", b"no-store"))
        names = {name for name, _ in extra}

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers: list[Any] = [(k, v) for k, v in message.get("headers", [])
                                      if k.lower() not in names]
                message["headers"] = headers + extra
            await send(message)
        await self.app(scope, receive, with_headers)


API_DESCRIPTION = (
    "Query the aitrail audit ledger. Every endpoint under /api/v1 needs "
    "`Authorization: Bearer <token>` (tokens: `aitrail user token-create NAME --role ROLE`, "
    "or the console's Users & tokens page) or a console session; before any account "
    "exists, callers on the collector's own machine are served without one. Roles: "
    "auditor (everything, payloads and export included), analyst (records and "
    "aggregates, payload text hidden), admin (users and tokens). Every search, timeline "
    "and export (and every proof, summary and dashboard read) is itself sealed into the "
    "ledger as a data_access record.")
_BEARER = HTTPBearer(auto_error=False, description="an API token (aitk_...)")


