"""The JSON query API and the console, served by the collector (which owns the store).

CLI commands given ``--url`` use the API; scripts authenticate with
``Authorization: Bearer <token>`` (``aitrail user token-create``), the console with
a sign-in session. Every search, timeline and export is sealed into the ledger as
a ``data_access`` record. OpenAPI at /docs.
"""

from __future__ import annotations

from typing import Any, Optional

from datetime import date
from typing import Callable

from cryptography.hazmat.primitives import serialization
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Request, Security
from fastapi.responses import Response, StreamingResponse
from fastapi.security import HTTPBearer
from pydantic import BaseModel, Field

from aitrail.envelope import PAYLOAD_NAMES
from aitrail_collector import console as console_pages
from aitrail_collector import dashboards, erasure, proofs, query
from aitrail_collector.access_log import AccessLog
from aitrail_collector.accounts import Principal, allowed
from aitrail_collector.store import Store
from aitrail_collector.verify import verify_period, verify_store
from aitrail_collector.webauth import WebAuth


def filter_params(task: Optional[str] = None,
                  reviewer: Optional[str] = Query(None, description="reviews and escalations"),
                  request_id: Optional[str] = None,
                  trace_id: Optional[str] = Query(None, description="32 hex digits"),
                  record_id: Optional[str] = None,
                  service: Optional[str] = Query(None, description="emitting service; the "
                                                 "collector's own records: aitrail-collector"),
                  type: Optional[list[str]] = Query(None, description="event type; repeatable"),
                  since: Optional[str] = Query(None, description="ISO 8601, or 30m / 24h / 7d ago"),
                  until: Optional[str] = None,
                  sort: str = Query("start_time", description=", ".join(query.SORTABLE)),
                  order: str = Query("asc", description="asc or desc")) -> dict[str, Any]:
    return {"task": task, "reviewer": reviewer, "request_id": request_id, "trace_id": trace_id,
            "record_id": record_id, "service": service, "types": type or (), "since": since, "until": until,
            "sort": sort, "order": order}


def _parse(params: dict[str, Any], limit: str, offset: str) -> query.Filters:
    try:
        return query.Filters.parse(**params, limit=limit, offset=offset)
    except query.FilterError as exc:
        raise HTTPException(status_code=400, detail=str(exc)) from None


class EraseRequest(BaseModel):
    """POST /api/v1/erase: one of task and record_id, and why."""
    task: Optional[str] = Field(None, description="erase the payloads of every record of a task")
    record_id: Optional[str] = Field(None, description="or of this one record")
    reason: Optional[str] = Field(None, description="why (required; sealed in the redaction)")
    actor: Optional[str] = Field(None, description="who asked for the erasure")


def create_app(store: Store, info: Optional[dict] = None, collector: Any = None,
               auth: Optional[WebAuth] = None) -> FastAPI:
    """The API and console over ``store``. ``collector`` (the running Collector) adds what
    needs the chain's signer: proofs, checkpoints, verification with trust, erasure, and
    the ledger that ``data_access`` records are sealed into."""
    app = FastAPI(title="aitrail", version="1", description=API_DESCRIPTION)
    auth = auth or collector.auth
    access = AccessLog(collector.ledger if collector is not None else None)
    pages = console_pages.Console(store, auth, access, collector)
    console_pages.mount(app, pages)
    api = APIRouter(prefix="/api/v1", dependencies=[Security(_BEARER)])

    @app.get("/healthz", tags=["status"])
    def healthz() -> dict:
        """Liveness; no credentials needed."""
        return {"ok": True, **(info or {})}

    def who(permission: str) -> Callable[[Request], Principal]:
        return lambda request: auth.api(request, permission)

    _mount_reads(api, store, access, pages, who)
    _mount_integrity(api, store, collector, who)
    _mount_erase(api, store, collector, who)
    _mount_dashboards(api, store, who)
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


def _hide_payloads(records: list[dict], who: Principal) -> bool:
    if allowed(who.role, "payloads"):
        return False
    for rec in records:
        for name in PAYLOAD_NAMES:
            rec[name] = None
    return True


def _mount_reads(api: APIRouter, store: Store, access: AccessLog,
                 pages: "console_pages.Console", who) -> None:
    @api.get("/records", tags=["records"])
    def records(request: Request, params: dict = Depends(filter_params),
                limit: str = Query("100", description=f"1..{query.MAX_LIMIT}, or 'all'"),
                offset: str = "0") -> dict:
        """Search: matching records (newest last unless order=desc), payloads included
        for roles that may read them, and the total number of matches."""
        principal = who("records")(request)
        f = _parse(params, limit, offset)
        found = query.search(store, f, payloads=allowed(principal.role, "payloads"))
        hidden = _hide_payloads(found, principal)
        total = query.count(store, f)  # before this read's own data_access record
        access.record(principal, "search", f.describe(), len(found), via="api")
        return {"total": total, "filters": f.describe(),
                "payloads_hidden": hidden, "records": found}

    @api.get("/export.csv", tags=["records"], response_class=StreamingResponse)
    def export_csv(request: Request, params: dict = Depends(filter_params)) -> StreamingResponse:
        """Every matching record as CSV: a header, UTF-8, ISO 8601 times, formula-safe
        cells; streamed. Auditors only (the file carries payloads)."""
        principal = who("export")(request)
        f = _parse(params, "all", "0")
        return StreamingResponse(pages.audited_export(principal, f, via="api"),
                                 media_type="text/csv; charset=utf-8", headers={
                                     "Content-Disposition":
                                         'attachment; filename="aitrail-export.csv"'})

    @api.get("/tasks/{task_id}/timeline", tags=["records"])
    def timeline(request: Request, task_id: str) -> dict:
        """Every event of one task, in order."""
        principal = who("records")(request)
        events = query.search(store, query.Filters(task=task_id, limit=None),
                              payloads=allowed(principal.role, "payloads"))
        hidden = _hide_payloads(events, principal)
        access.record(principal, f"timeline:{task_id}", {"task": task_id}, len(events),
                      via="api")
        if not events:
            raise HTTPException(status_code=404, detail=f"no records for task {task_id!r}")
        return {"task_id": task_id, "payloads_hidden": hidden, "events": events}

    @api.get("/summary", tags=["aggregates"])
    def summary(request: Request) -> dict:
        """Records per type, reviews by decision, the override rate, chain heads."""
        who("aggregates")(request)
        return query.summary(store)


def _mount_integrity(api: APIRouter, store: Store, collector: Any, who) -> None:
    def signer() -> Any:
        if collector is None:
            raise HTTPException(status_code=503, detail="no collector signs this store")
        return collector

    @api.get("/verify", tags=["integrity"])
    def verify(request: Request, from_checkpoint: Optional[int] = Query(
            None, ge=1, description="start at this checkpoint (records before it may be gone)"),
            since: Optional[date] = Query(
                None, description="verify the period from this day (UTC, YYYY-MM-DD): each "
                "chain from its last checkpoint signed before it, through to the head"),
            until: Optional[date] = Query(
                None, description="the period's end (exclusive); the chain after it is "
                "checked too, as that proves the period was not changed later")) -> dict:
        """Recompute every hash, check every signed checkpoint against the records and
        the anchor store, and check every payload against its commitment."""
        who("verify")(request)
        trust = collector.trust() if collector is not None else None
        if from_checkpoint is not None and (since or until):
            raise HTTPException(status_code=400, detail="from_checkpoint and since/until "
                                "both choose where verification starts; give one")
        try:
            if since or until:
                return verify_period(store, trust, since, until)
            return verify_store(store, trust=trust, from_checkpoint=from_checkpoint)
        except ValueError as exc:
            raise HTTPException(status_code=400, detail=str(exc)) from None

    @api.get("/records/{record_id}/proof", tags=["integrity"])
    def record_proof(request: Request, record_id: str) -> Response:
        """A self-contained proof bundle; check it offline with `aitrail verify-proof`."""
        who("records")(request)
        try:
            text = proofs.record_bundle(store, signer().checkpointer, record_id)
        except proofs.ProofRequestError as exc:
            raise HTTPException(status_code=404, detail=str(exc)) from None
        return Response(text, media_type="application/json")

    @api.get("/proofs/inclusion", tags=["integrity"])
    def inclusion_proof(request: Request, index: int = Query(..., ge=0),
                        size: int = Query(..., ge=1), chain: str = "main") -> dict:
        """RFC 6962 inclusion proof of leaf ``index`` in the tree of ``size`` leaves."""
        who("verify")(request)
        return _proof(lambda: proofs.inclusion(store, chain, index, size))

    @api.get("/proofs/consistency", tags=["integrity"])
    def consistency_proof(request: Request, size1: int = Query(..., ge=1),
                          size2: int = Query(..., ge=1), chain: str = "main") -> dict:
        """RFC 6962 consistency proof between the trees of ``size1`` and ``size2`` leaves."""
        who("verify")(request)
        return _proof(lambda: proofs.consistency(store, chain, size1, size2))

    @api.get("/checkpoints", tags=["integrity"])
    def checkpoints(request: Request, chain: str = "main",
                    limit: int = Query(20, ge=1, le=10_000)) -> dict:
        """The newest signed checkpoints of a chain, newest first."""
        who("verify")(request)
        rows = store.checkpoints(chain)[-limit:]
        return {"chain_id": chain, "checkpoints": [
            {"number": n, "size": size, "text": text} for n, size, text, _ in reversed(rows)]}

    @api.get("/public-key", tags=["integrity"])
    def public_key() -> Response:
        """The checkpoint signing key (PEM). Verifiers should also get it out of band."""
        pem = signer().private_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        return Response(pem, media_type="application/x-pem-file")


def _proof(make: Callable[[], dict]) -> dict:
    try:
        return make()
    except proofs.ProofRequestError as exc:
        raise HTTPException(status_code=404, detail=str(exc)) from None


def _mount_erase(api: APIRouter, store: Store, collector: Any, who) -> None:
    @api.post("/erase", tags=["erasure"])
    def erase(request: Request, body: EraseRequest) -> dict:
        """Erase payloads (GDPR Art. 17) and seal a redaction record saying what and why.
        404: no such task or record; 409: nothing left to erase; 400: a bad request."""
        principal = who("erase")(request)
        if collector is None:
            raise HTTPException(status_code=503, detail="no collector seals this store")
        ledger = collector.ledger
        # The signed-in user is who erased; a named actor is recorded as on whose behalf.
        actor = principal.name if principal.kind != "local" else (body.actor or "local")
        if body.actor and principal.kind != "local" and body.actor != principal.name:
            actor = f"{principal.name} for {body.actor}"

        def ledger_for(chain_id: str):
            if chain_id != ledger.chain_id:
                raise erasure.ErasureError(
                    f"the records are in chain {chain_id!r}; this collector seals chain "
                    f"{ledger.chain_id!r}: erase them with that chain's collector")
            return ledger
        try:
            return erasure.erase(store, ledger_for, task=body.task, record_id=body.record_id,
                                 reason=body.reason, actor=actor, limits=ledger.limits)
        except erasure.ErasureError as exc:
            raise HTTPException(status_code=400, detail=str(exc)) from None
        except erasure.NothingToErase as exc:
            raise HTTPException(status_code=409 if exc.found else 404, detail=str(exc)) from None


def _period(since: Optional[date], until: Optional[date]) -> tuple[date, date]:
    until = until or date.today()
    since = since or until.replace(day=1)
    if since > until:
        raise HTTPException(status_code=400, detail="since is after until")
    return since, until


def _mount_dashboards(api: APIRouter, store: Store, who) -> None:
    figures = {
        "override-daily": dashboards.override_daily,
        "override-by-model": dashboards.override_by_model,
        "override-by-prompt-version": dashboards.override_by_prompt_version,
        "review-times": dashboards.review_time_percentiles,
        "escalations-daily": dashboards.escalations_daily,
        "volume-by-type": dashboards.volume_by_type,
    }

    @api.get("/dashboards/{figure}", tags=["aggregates"])
    def dashboard(request: Request, figure: str,
                  since: Optional[date] = Query(None, description="first day (default: the "
                                                "first of this month)"),
                  until: Optional[date] = Query(None, description="last day, included "
                                                "(default: today)")) -> dict:
        """The figures the console charts (the dashboards/sql views), over whole UTC days:
        override-daily, override-by-model, override-by-prompt-version, review-times,
        escalations-daily, volume-by-type."""
        who("aggregates")(request)
        if figure not in figures:
            raise HTTPException(status_code=404, detail=f"no figure {figure!r}; choose one of "
                                f"{', '.join(figures)}")
        since, until = _period(since, until)
        return {"figure": figure, "since": since.isoformat(), "until": until.isoformat(),
                "rows": figures[figure](store, since, until)}
