"""The JSON query API, served by the collector (which owns the embedded store).

CLI commands given ``--url`` use it; so will the web console. OpenAPI at /docs.
"""

from __future__ import annotations

from typing import Any, Optional

from fastapi import Depends, FastAPI, HTTPException, Query
from fastapi.responses import Response, StreamingResponse
from cryptography.hazmat.primitives import serialization

from aitrail_collector import proofs, query
from aitrail_collector.export import export_csv as render_csv
from aitrail_collector.store import Store
from aitrail_collector.verify import verify_store


def filter_params(task: Optional[str] = None,
                  reviewer: Optional[str] = Query(None, description="reviews and escalations"),
                  request_id: Optional[str] = None,
                  trace_id: Optional[str] = Query(None, description="32 hex digits"),
                  record_id: Optional[str] = None,
                  type: Optional[list[str]] = Query(None, description="event type; repeatable"),
                  since: Optional[str] = Query(None, description="ISO 8601, or 30m / 24h / 7d ago"),
                  until: Optional[str] = None,
                  sort: str = Query("start_time", description=", ".join(query.SORTABLE)),
                  order: str = Query("asc", description="asc or desc")) -> dict[str, Any]:
    return {"task": task, "reviewer": reviewer, "request_id": request_id, "trace_id": trace_id,
            "record_id": record_id, "types": type or (), "since": since, "until": until,
            "sort": sort, "order": order}


def _parse(params: dict[str, Any], limit: str, offset: str) -> query.Filters:
    try:
        return query.Filters.parse(**params, limit=limit, offset=offset)
    except query.FilterError as exc:
        raise HTTPException(status_code=400, detail=str(exc)) from None


def create_app(store: Store, info: Optional[dict] = None, collector: Any = None) -> FastAPI:
    """The API over ``store``; ``collector`` (the running Collector, when there is one)
    adds what needs the chain's signer: proofs, checkpoints, verification with trust."""
    app = FastAPI(title="aitrail", version="1", description="Query the aitrail audit ledger.")

    @app.get("/healthz")
    def healthz() -> dict:
        return {"ok": True, **(info or {})}

    @app.get("/api/v1/records")
    def records(params: dict = Depends(filter_params),
                limit: str = Query("100", description=f"1..{query.MAX_LIMIT}, or 'all'"),
                offset: str = "0") -> dict:
        f = _parse(params, limit, offset)
        return {"total": query.count(store, f), "filters": f.describe(),
                "records": query.search(store, f)}

    @app.get("/api/v1/export.csv")
    def export_csv(params: dict = Depends(filter_params)) -> StreamingResponse:
        f = _parse(params, "all", "0")
        return StreamingResponse(render_csv(store, f), media_type="text/csv; charset=utf-8", headers={
            "Content-Disposition": 'attachment; filename="aitrail-export.csv"'})

    @app.get("/api/v1/tasks/{task_id}/timeline")
    def timeline(task_id: str) -> dict:
        events = query.timeline(store, task_id)
        if not events:
            raise HTTPException(status_code=404, detail=f"no records for task {task_id!r}")
        return {"task_id": task_id, "events": events}

    @app.get("/api/v1/verify")
    def verify(from_checkpoint: Optional[int] = Query(
            None, ge=1, description="start at this checkpoint (records before it may be gone)")
            ) -> dict:
        trust = collector.trust() if collector is not None else None
        try:
            return verify_store(store, trust=trust, from_checkpoint=from_checkpoint)
        except ValueError as exc:
            raise HTTPException(status_code=400, detail=str(exc)) from None

    def _signer() -> Any:
        if collector is None:
            raise HTTPException(status_code=503, detail="no collector signs this store")
        return collector

    @app.get("/api/v1/records/{record_id}/proof")
    def record_proof(record_id: str) -> Response:
        """A self-contained proof bundle; check it with `aitrail verify-proof`."""
        try:
            text = proofs.record_bundle(store, _signer().checkpointer, record_id)
        except proofs.ProofRequestError as exc:
            raise HTTPException(status_code=404, detail=str(exc)) from None
        return Response(text, media_type="application/json")

    @app.get("/api/v1/proofs/inclusion")
    def inclusion_proof(index: int = Query(..., ge=0), size: int = Query(..., ge=1),
                        chain: str = "main") -> dict:
        try:
            return proofs.inclusion(store, chain, index, size)
        except proofs.ProofRequestError as exc:
            raise HTTPException(status_code=404, detail=str(exc)) from None

    @app.get("/api/v1/proofs/consistency")
    def consistency_proof(size1: int = Query(..., ge=1), size2: int = Query(..., ge=1),
                          chain: str = "main") -> dict:
        try:
            return proofs.consistency(store, chain, size1, size2)
        except proofs.ProofRequestError as exc:
            raise HTTPException(status_code=404, detail=str(exc)) from None

    @app.get("/api/v1/checkpoints")
    def checkpoints(chain: str = "main", limit: int = Query(20, ge=1, le=10_000)) -> dict:
        """The newest signed checkpoints of a chain, newest first."""
        rows = store.checkpoints(chain)[-limit:]
        return {"chain_id": chain, "checkpoints": [
            {"number": n, "size": size, "text": text} for n, size, text, _ in reversed(rows)]}

    @app.get("/api/v1/public-key")
    def public_key() -> Response:
        """The checkpoint signing key (PEM). Verifiers should get it out of band too."""
        pem = _signer().private_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        return Response(pem,
                        media_type="application/x-pem-file")

    @app.get("/api/v1/summary")
    def summary() -> dict:
        return query.summary(store)

    return app
