"""Records: search, a task's timeline, CSV export, the summary. Every read is
sealed as a data_access record."""

from __future__ import annotations

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import StreamingResponse

from aitrail.record.csv_format import COLUMN_SETS
from aitrail_collector.store import queries as query
from aitrail_collector.web import audited
from aitrail_collector.web.api.common import (
    Who,
    filter_params,
    hide_payloads,
    known_params,
    parse_filters,
)
from aitrail_collector.web.auth.accounts import allowed
from aitrail_collector.web.services import Services


def mount(api: APIRouter, services: Services, who: Who) -> None:
    store, access = services.store, services.access

    @api.get("/records", tags=["records"])
    def records(request: Request, params: dict = Depends(filter_params),
                limit: str = Query("100", description=f"1..{query.MAX_LIMIT} (for more, page with "
                                   "offset, or use the export)"),
                offset: str = "0") -> dict:
        """Search: matching records (newest last unless order=desc), payloads included
        for roles that may read them, and the total number of matches."""
        principal = who("records")(request)
        known_params(request, ("limit", "offset"))
        f = parse_filters(params, limit, offset)
        found = query.search(store, f, payloads=allowed(principal.role, "payloads"))
        hidden = hide_payloads(found, principal)
        total = query.page_total(store, f, found)  # before this read's own data_access record
        access.record(principal, "search", f.describe(), len(found), via="api")
        return {"total": total, "filters": f.describe(),
                "payloads_hidden": hidden, "records": found}

    @api.get("/export.csv", tags=["records"], response_class=StreamingResponse)
    def export_csv(request: Request, params: dict = Depends(filter_params),
                   columns: str = Query("full", description="full: every column, for "
                                        "systems (the default, as before, three derived "
                                        "columns at the end); compact: for people")
                   ) -> StreamingResponse:
        """Every matching record as CSV: a header, UTF-8, ISO 8601 times, formula-safe
        cells; streamed. Auditors only (the file carries payloads)."""
        principal = who("export")(request)
        known_params(request, ("columns",))
        if columns not in COLUMN_SETS:
            raise HTTPException(status_code=400, detail=f"columns {columns!r}: expected "
                                f"{' or '.join(COLUMN_SETS)}")
        f = parse_filters(params, None, "0")
        return StreamingResponse(audited.export(services, principal, f, via="api",
                                                columns=columns),
                                 media_type="text/csv; charset=utf-8", headers={
                                     "Content-Disposition":
                                         'attachment; filename="aitrail-export.csv"'})

    def timeline(request: Request, task_id: str) -> dict:
        principal = who("records")(request)
        events = query.search(store, query.timeline_filters(task_id),
                              payloads=allowed(principal.role, "payloads"))
        hidden = hide_payloads(events, principal)
        access.record(principal, f"timeline:{task_id}", {"task": task_id}, len(events),
                      via="api", task_id=task_id)
        if not events:
            raise HTTPException(status_code=404, detail=f"no records for task {task_id!r}")
        return {"task_id": task_id, "payloads_hidden": hidden, "events": events}

    @api.get("/timeline", tags=["records"])
    def timeline_of(request: Request, task: str = Query(..., description="the task id")) -> dict:
        """Every event of one task, in order. Takes any task id, including ids with
        ``/``, ``..``, ``?`` or ``#`` that a path cannot carry through every proxy."""
        return timeline(request, task)

    @api.get("/tasks/{task_id:path}/timeline", tags=["records"])
    def task_timeline(request: Request, task_id: str) -> dict:
        """Every event of one task, in order (the task id percent-encoded, ``/`` too)."""
        return timeline(request, task_id)

    @api.get("/summary", tags=["aggregates"])
    def summary(request: Request) -> dict:
        """Records per type, reviews by decision, the override rate, chain heads."""
        principal = who("aggregates")(request)
        result = query.summary(store)
        access.record(principal, "summary", {}, len(result["by_type"]), via="api")
        return result
