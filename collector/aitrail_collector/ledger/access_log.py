"""The ledger audits its own readers: every search, timeline view and export is
sealed into the chain as a ``data_access`` record (SOC 2: who read what, when).

Made by the collector and sealed like any other record, so a reader cannot
remove the trace of a read without breaking verification.
"""

from __future__ import annotations

import json
import logging
import socket
import time
from typing import Any, Mapping, Optional

from aitrail.record.event_types import COLLECTOR_SERVICE
from aitrail.record.ids import uuid7
from aitrail.v1 import audit_pb2 as pb
from aitrail_collector.ledger import admin_log
from aitrail_collector.ledger.group_commit import Ledger
from aitrail_collector.web.auth.accounts import Principal

log = logging.getLogger("aitrail.collector")
SERVICE = COLLECTOR_SERVICE
MAX_FILTER_CHARS = 4000


class AccessLog:
    def __init__(self, ledger: Optional[Ledger], admin_queue: Optional[str] = None):
        self.ledger = ledger
        self.admin_queue = admin_queue  # where an admin action goes when it cannot be sealed
        self.host = socket.gethostname()

    def record(self, who: Principal, resource: str, filters: Mapping[str, Any], rows: int,
               via: str, task_id: str = "") -> Optional[str]:
        """Seal one read; returns its record id. A read is not refused when this fails
        (the store may be briefly unavailable), but the failure is logged loudly.

        The record names what was read in ``resource`` (``search``, ``timeline:T-1``,
        ``record:<id>``, ``export``), the filters and the row count in its attributes,
        and, for a read of one task, that task's id, so a search for the task shows
        who read it ("who viewed T-1?"). Such a read stays out of the task's timeline
        (queries.timeline_filters): reading a timeline must not change it."""
        if self.ledger is None:
            return None
        described = json.dumps(filters, sort_keys=True, default=str)[:MAX_FILTER_CHARS]
        now = time.time_ns()
        attributes = {"role": who.role, "principal_kind": who.kind, "via": via,
                      "filters": described, "rows": str(rows)}
        if who.kind == "token":  # the actor is the token's owner; which token, here
            attributes.update(token_id=who.token_id, token_owner=who.token_owner)
        rec = pb.AuditRecord(
            record_id=uuid7(), event_type="data_access", task_id=task_id,
            start_time_unix_nano=now, end_time_unix_nano=now, service=SERVICE,
            environment="collector", host=self.host,
            data_access=pb.DataAccess(actor=who.name, resource=resource,
                                      purpose=f"{via} read"),
            attributes=attributes)
        try:
            self.ledger.append_own(rec)
        except Exception:  # noqa: BLE001 - see docstring
            log.exception("could not seal the data_access record of %s reading %s",
                          who.name, resource)
            return None
        return rec.record_id

    def admin(self, who: Principal, what: str, target: str,
              details: Optional[Mapping[str, Any]] = None, via: str = "console") -> None:
        """Seal one admin action (admin_log.py) made by ``who``. Unlike a read, the
        change is already made: when it cannot be sealed now it is queued for the
        collector to seal later (the admin queue), and only if that fails too is it
        lost, loudly."""
        entry = admin_log.action(who.name, who.kind, what, target, details, via=via)
        if who.kind == "token":
            entry["details"].update(token_id=who.token_id)
        try:
            if self.ledger is None:
                raise RuntimeError("no ledger in this process")
            self.ledger.append_own(admin_log.to_record(entry, self.host))
            return
        except Exception:  # noqa: BLE001 - see docstring
            if self.admin_queue is None:
                log.exception("could not seal the admin action %s %s of %s", what, target,
                              who.name)
                return
            log.warning("admin action %s %s of %s not sealed now; queued in %s", what,
                        target, who.name, self.admin_queue, exc_info=True)
        try:
            admin_log.enqueue(self.admin_queue, entry)
        except OSError:
            log.exception("could not queue the admin action %s %s of %s", what, target,
                          who.name)
