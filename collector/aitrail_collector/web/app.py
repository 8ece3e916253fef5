"""The HTTP side of the collector: the JSON API (``web/api``, one router per
resource, OpenAPI at /docs) and the console (``web/console``), over one
``Services``. CLI commands given ``--url`` use the API; scripts authenticate with
``Authorization: Bearer <token>`` (``aitrail user token-create``), the console with
a sign-in session. Every search, timeline and export is sealed into the ledger as
a ``data_access`` record.
"""

from __future__ import annotations

from fastapi import APIRouter, FastAPI, Security
from fastapi.security import HTTPBearer

from aitrail_collector.web.api import dashboards, erasure, integrity, records
from aitrail_collector.web.api.common import who_for
from aitrail_collector.web.console import pages as console_pages
from aitrail_collector.web.services import Services


def create_app(services: Services) -> FastAPI:
    """The API and console over ``services.store``. With a signer (a running collector),
    also what needs it: proofs on demand, verification with trust, erasure, and the
    ledger that ``data_access`` records are sealed into."""
    app = FastAPI(title="aitrail", version="1", description=API_DESCRIPTION)
    console_pages.mount(app, console_pages.Console(services))
    api = APIRouter(prefix="/api/v1", dependencies=[Security(_BEARER)])

    @app.get("/healthz", tags=["status"])
    def healthz() -> dict:
        """Liveness; no credentials needed."""
        return {"ok": True, **services.info}

    who = who_for(services)
    records.mount(api, services, who)
    integrity.mount(api, services, who)
    erasure.mount(api, services, who)
    dashboards.mount(api, services.store, who)
    app.include_router(api)
    return app


API_DESCRIPTION = (
    "Query the aitrail audit ledger. Every endpoint under /api/v1 needs "
    "`Authorization: Bearer <token>` (tokens: `aitrail user token-create NAME --role ROLE`, "
    "or the console's Users & tokens page) or a console session; before any account "
    "exists, callers on the collector's own machine are served without one. Roles: "
    "auditor (everything, payloads and export included), analyst (records and "
    "aggregates, payload text hidden), admin (users and tokens). Every search, timeline "
    "and export is itself sealed into the ledger as a data_access record.")
_BEARER = HTTPBearer(auto_error=False, description="an API token (aitk_...)")


