"""What the API's routers share: filters from query parameters, the caller's
principal for a permission, payload hiding for roles without it."""

from __future__ import annotations

from typing import Any, Callable, Optional

from fastapi import HTTPException, Query, Request

from aitrail.verify.envelope import PAYLOAD_NAMES
from aitrail_collector.store import queries as query
from aitrail_collector.web.auth.accounts import Principal, allowed
from aitrail_collector.web.services import Services

Who = Callable[[str], Callable[[Request], Principal]]


def who_for(services: Services) -> Who:
    """``who(permission)(request)``: the caller, or 401 / 403."""
    def who(permission: str) -> Callable[[Request], Principal]:
        return lambda request: services.auth.api(request, permission)
    return who


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
                  order: str = Query("asc", description="asc or desc"),
                  activity: str = Query("auto", description="the collector's own "
                                        "data_access records (who read what): include, "
                                        "hide, only, or auto (hidden from a search by "
                                        "task unless type=data_access, else included)")
                  ) -> dict[str, Any]:
    return {"task": task, "reviewer": reviewer, "request_id": request_id, "trace_id": trace_id,
            "record_id": record_id, "service": service, "types": type or (), "since": since,
            "until": until,
            "sort": sort, "order": order, "activity": activity}


FILTER_PARAMS = ("task", "reviewer", "request_id", "trace_id", "record_id", "service", "type",
                 "since", "until", "sort", "order", "activity")


def known_params(request: Request, extra: tuple[str, ...] = ()) -> None:
    """A 400 naming the known parameters for one this endpoint does not take
    (``event_type=review`` for ``type=review``): ignored, it would widen the answer
    without a word."""
    known = FILTER_PARAMS + extra
    unknown = sorted({k for k in request.query_params if k not in known})
    if unknown:
        raise HTTPException(status_code=400, detail=(
            f"unknown parameter{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}; "
            f"this endpoint takes {', '.join(known)}"))


def parse_filters(params: dict[str, Any], limit: Optional[str], offset: str) -> query.Filters:
    try:
        return query.Filters.parse(**params, limit=limit, offset=offset)
    except query.FilterError as exc:
        raise HTTPException(status_code=400, detail=str(exc)) from None


def hide_payloads(records: list[dict], who: Principal) -> bool:
    if allowed(who.role, "payloads"):
        return False
    for rec in records:
        for name in PAYLOAD_NAMES:
            rec[name] = None
    return True


