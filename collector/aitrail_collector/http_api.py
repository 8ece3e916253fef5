"""The JSON query API, served by the collector (which owns the embedded store).

CLI commands given ``--url`` use it; so will the web console. OpenAPI at /docs.
"""

from __future__ import annotations

from typing import Optional

from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.responses import JSONResponse, StreamingResponse

from aitrail_collector import query
from aitrail_collector.store import Store
from aitrail_collector.verify import verify_store


def _filters(task, reviewer, request_id, trace_id, record_id, type_, since, until, limit,
             offset, sort, order) -> query.Filters:
    try:
        return query.Filters.parse(task=task, reviewer=reviewer, request_id=request_id,
                                   trace_id=trace_id, record_id=record_id, types=type_ or (),
                                   since=since, until=until, limit=limit, offset=offset,
                                   sort=sort, order=order)
    except query.FilterError as exc:
        raise HTTPException(status_code=400, detail=str(exc)) from None


def create_app(store: Store, info: Optional[dict] = None) -> FastAPI:
    app = FastAPI(title="aitrail", version="1", description="Query the aitrail audit ledger.")

    def filters(task: Optional[str] = None, reviewer: Optional[str] = None,
                request_id: Optional[str] = None, trace_id: Optional[str] = None,
                record_id: Optional[str] = None,
                type: Optional[list[str]] = Query(None, description="event type; repeatable"),
                since: Optional[str] = None, until: Optional[str] = None,
                limit: str = "100", offset: str = "0", sort: str = "start_time",
                order: str = "asc") -> query.Filters:
        return _filters(task, reviewer, request_id, trace_id, record_id, type, since, until,
                        limit, offset, sort, order)

    @app.get("/healthz")
    def healthz() -> dict:
        return {"ok": True, **(info or {})}

    @app.get("/api/v1/records")
    def records(request: Request, task: Optional[str] = None, reviewer: Optional[str] = None,
                request_id: Optional[str] = None, trace_id: Optional[str] = None,
                record_id: Optional[str] = None, type: Optional[list[str]] = Query(None),
                since: Optional[str] = None, until: Optional[str] = None, limit: str = "100",
                offset: str = "0", sort: str = "start_time", order: str = "asc") -> dict:
        f = filters(task, reviewer, request_id, trace_id, record_id, type, since, until, limit,
                    offset, sort, order)
        return {"total": query.count(store, f), "filters": f.describe(),
                "records": query.search(store, f)}

    @app.get("/api/v1/export.csv")
    def export_csv(task: Optional[str] = None, reviewer: Optional[str] = None,
                   request_id: Optional[str] = None, trace_id: Optional[str] = None,
                   record_id: Optional[str] = None, type: Optional[list[str]] = Query(None),
                   since: Optional[str] = None, until: Optional[str] = None,
                   sort: str = "start_time", order: str = "asc") -> StreamingResponse:
        f = filters(task, reviewer, request_id, trace_id, record_id, type, since, until, "all",
                    "0", sort, order)
        lines = query.csv_lines(query.iter_records(store, f))
        return StreamingResponse(lines, media_type="text/csv; charset=utf-8", headers={
            "Content-Disposition": 'attachment; filename="aitrail-export.csv"'})

    @app.get("/api/v1/tasks/{task_id}/timeline")
    def timeline(task_id: str) -> dict:
        events = query.timeline(store, task_id)
        if not events:
            raise HTTPException(status_code=404, detail=f"no records for task {task_id!r}")
        return {"task_id": task_id, "events": events}

    @app.get("/api/v1/verify")
    def verify() -> JSONResponse:
        report = verify_store(store)
        return JSONResponse(report)

    @app.get("/api/v1/summary")
    def summary() -> dict:
        return query.summary(store)

    return app
