"""The figures the console charts, for scripts and Grafana-less users."""

from __future__ import annotations

from datetime import date
from typing import Optional

from fastapi import APIRouter, HTTPException, Query, Request

from aitrail_collector.store import dashboards
from aitrail_collector.web.api.common import Who
from aitrail_collector.web.services import Services


def _period(since: Optional[date], until: Optional[date]) -> tuple[date, date]:
    until = until or date.today()
    since = since or until.replace(day=1)
    if since > until:
        raise HTTPException(status_code=400, detail="since is after until")
    return since, until


def mount(api: APIRouter, services: Services, who: Who) -> None:
    store = services.store
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
        principal = who("aggregates")(request)
        if figure not in figures:
            raise HTTPException(status_code=404, detail=f"no figure {figure!r}; choose one of "
                                f"{', '.join(figures)}")
        since, until = _period(since, until)
        rows = figures[figure](store, since, until)
        services.access.record(principal, f"dashboard:{figure}",
                               {"since": since.isoformat(), "until": until.isoformat()},
                               len(rows), via="api")
        return {"figure": figure, "since": since.isoformat(), "until": until.isoformat(),
                "rows": rows}
