"""The JSON query API, served by the collector (which owns the embedded store).

CLI commands given ``--url`` use it; so will the web console. OpenAPI at /docs.
"""

from __future__ import annotations

from typing import Any, Optional

from fastapi import Depends, FastAPI, HTTPException, Query
from fastapi.responses import StreamingResponse

from aitrail_collector import query
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


def create_app(store: Store, info: Optional[dict] = None) -> FastAPI:
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
    def verify() -> dict:
        return verify_store(store)

    @app.get("/api/v1/summary")
    def summary() -> dict:
        return query.summary(store)

    return app
