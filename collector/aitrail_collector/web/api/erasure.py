"""Erasure (GDPR Art. 17): payloads deleted, a redaction record sealed."""

from __future__ import annotations

from typing import Optional

from fastapi import APIRouter, HTTPException, Request
from pydantic import BaseModel, Field

from aitrail_collector.ledger import erasure
from aitrail_collector.web.api.common import Who
from aitrail_collector.web.services import Services


class EraseRequest(BaseModel):
    """POST /api/v1/erase: one of task and record_id, and why."""
    task: Optional[str] = Field(None, description="erase the payloads of every record of a task")
    record_id: Optional[str] = Field(None, description="or of this one record")
    reason: Optional[str] = Field(None, description="why (required; sealed in the redaction)")
    actor: Optional[str] = Field(None, description="who asked for the erasure")


def mount(api: APIRouter, services: Services, who: Who) -> None:
    store = services.store

    @api.post("/erase", tags=["erasure"])
    def erase(request: Request, body: EraseRequest) -> dict:
        """Erase payloads (GDPR Art. 17) and seal a redaction record saying what and why.
        404: no such task or record; 409: nothing left to erase; 400: a bad request."""
        principal = who("erase")(request)
        if services.ledger is None:
            raise HTTPException(status_code=503, detail="no collector seals this store")
        ledger = services.ledger
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


