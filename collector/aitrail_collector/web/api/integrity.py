"""Integrity: verification (whole, from a checkpoint, or a period), proofs,
checkpoints and the signing key."""

from __future__ import annotations

from datetime import date
from typing import Callable, Optional

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import Response

from aitrail.verify.audit import AuditError
from aitrail_collector.audit import proofs
from aitrail_collector.audit.verify import verify_period, verify_store
from aitrail_collector.ledger.checkpointer import Checkpointer
from aitrail_collector.web.api.common import Who
from aitrail_collector.web.services import Services


def mount(api: APIRouter, services: Services, who: Who) -> None:
    store = services.store

    def checkpointer() -> Checkpointer:
        if services.checkpointer is None:
            raise HTTPException(status_code=503, detail="no collector signs this store")
        return services.checkpointer

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
        trust = services.trust()
        if from_checkpoint is not None and (since or until):
            raise HTTPException(status_code=400, detail="from_checkpoint and since/until "
                                "both choose where verification starts; give one")
        try:
            # As this running collector stands: up to what it has stored in full, and its
            # newest checkpoints on their way to the anchor (audit.verify.Writer).
            if since or until:
                return verify_period(store, trust, since, until, services)
            return verify_store(store, trust=trust, from_checkpoint=from_checkpoint,
                                writer=services)
        except AuditError as exc:
            raise HTTPException(status_code=400, detail=str(exc)) from None

    @api.get("/records/{record_id}/proof", tags=["integrity"])
    def record_proof(request: Request, record_id: str) -> Response:
        """A self-contained proof bundle; check it offline with `aitrail verify-proof`."""
        principal = who("records")(request)
        try:
            text = proofs.record_bundle(store, checkpointer(), record_id)
        except proofs.ProofRequestError as exc:
            raise HTTPException(status_code=404, detail=str(exc)) from None
        except proofs.UnprovableRecord as exc:  # the stored row was changed after sealing
            raise HTTPException(status_code=409, detail=str(exc)) from None
        services.access.record(principal, f"proof:{record_id}", {"record_id": record_id}, 1,
                               via="api")
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
        if services.public_key_pem is None:
            raise HTTPException(status_code=503, detail="no collector signs this store")
        return Response(services.public_key_pem, media_type="application/x-pem-file")


def _proof(make: Callable[[], dict]) -> dict:
    try:
        return make()
    except proofs.ProofRequestError as exc:
        raise HTTPException(status_code=404, detail=str(exc)) from None


