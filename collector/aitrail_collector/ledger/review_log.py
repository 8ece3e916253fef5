"""Log review sign-offs (SOC 2: logs are reviewed, regularly, and the review is shown).

An auditor or admin signs off a period of the ledger as reviewed, with a note. The
sign-off is sealed into the chain as a ``log_review`` record, made by the collector
(a reserved type, like ``admin_action``): the reviewer in ``data_access.actor``, the
period in ``resource`` (``period:2026-W48``), ``purpose`` ``log_review``, and in
attributes the period's first and last day, the note, the reviewer's role and how
they signed in. Sealed, so a sign-off cannot be removed or back-dated without
verification showing it.

The cadence is the ISO week, Monday to Sunday, UTC days: the integrity page lists
recent weeks, reviewed (by whom, when) or not. A week can be signed off once it has
ended; signing off a week again adds a sign-off (each is kept).
"""

from __future__ import annotations

import re
import socket
import time
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import Any, Optional

from aitrail.errors import AitrailError
from aitrail.record.event_types import COLLECTOR_SERVICE
from aitrail.record.ids import uuid7
from aitrail.v1 import audit_pb2 as pb

EVENT_TYPE = "log_review"
MAX_NOTE_CHARS = 1000
RESOURCE_PREFIX = "period:"
_WEEK = re.compile(r"(\d{4})-W(\d{2})")


class ReviewError(AitrailError, ValueError):
    """A sign-off that cannot be made as asked; the message says why."""


@dataclass(frozen=True)
class Week:
    year: int
    week: int

    @property
    def label(self) -> str:
        return f"{self.year}-W{self.week:02d}"

    @property
    def first(self) -> date:
        return date.fromisocalendar(self.year, self.week, 1)

    @property
    def last(self) -> date:
        return self.first + timedelta(days=6)

    @classmethod
    def of(cls, day: date) -> "Week":
        iso = day.isocalendar()
        return cls(iso.year, iso.week)

    @classmethod
    def parse(cls, text: str) -> "Week":
        m = _WEEK.fullmatch(text.strip())
        if not m:
            raise ReviewError(f"period {text!r}: expected an ISO week like 2026-W48")
        try:
            return cls.of(date.fromisocalendar(int(m[1]), int(m[2]), 1))
        except ValueError:
            raise ReviewError(f"period {text!r}: {m[1]} has no week {m[2]}") from None


def recent_weeks(today: date, count: int) -> list[Week]:
    """The ``count`` weeks up to the one holding ``today``, newest first."""
    return [Week.of(today - timedelta(weeks=i)) for i in range(count)]


def sign_off(ledger: Any, who: Any, period: str, note: str, via: str = "console",
             now_ns: Optional[int] = None) -> pb.AuditRecord:
    """Seal ``who``'s sign-off of the week ``period``; returns the record. Raises
    ReviewError for a bad period or note; a failure to seal is raised as it is (the
    sign-off is the record: none was made)."""
    week = Week.parse(period)
    now = time.time_ns() if now_ns is None else now_ns
    today = datetime.fromtimestamp(now / 1e9, timezone.utc).date()
    if week.last >= today:
        raise ReviewError(f"week {week.label} ({week.first} to {week.last}) has not ended yet: "
                          "sign it off once it has")
    note = note.strip()
    if not note:
        raise ReviewError("say what was reviewed in the note (it is sealed with the sign-off)")
    if len(note) > MAX_NOTE_CHARS:
        raise ReviewError(f"the note is {len(note)} characters; at most {MAX_NOTE_CHARS}")
    attributes = {"period_start": week.first.isoformat(), "period_end": week.last.isoformat(),
                  "note": note, "role": who.role, "principal_kind": who.kind, "via": via}
    if who.kind == "token":
        attributes["token_id"] = who.token_id
    rec = pb.AuditRecord(
        record_id=uuid7(), event_type=EVENT_TYPE, start_time_unix_nano=now,
        end_time_unix_nano=now, service=COLLECTOR_SERVICE, environment="collector",
        host=socket.gethostname(),
        data_access=pb.DataAccess(actor=who.name, resource=RESOURCE_PREFIX + week.label,
                                  purpose=EVENT_TYPE),
        attributes=attributes)
    if ledger is None:
        raise ReviewError("this process seals no records (no collector runs here)")
    ledger.append_own(rec)
    return rec


def cadence(signoffs: list[dict], today: date, count: int = 12) -> list[dict]:
    """The recent weeks, newest first, each with its sign-offs (search results of
    ``log_review`` records): reviewed or not, and whether the week has ended."""
    by_week: dict[str, list[dict]] = {}
    for rec in signoffs:
        resource = rec.get("resource") or ""
        if rec.get("event_type") == EVENT_TYPE and resource.startswith(RESOURCE_PREFIX):
            by_week.setdefault(resource[len(RESOURCE_PREFIX):], []).append(rec)
    return [{"label": w.label, "first": w.first.isoformat(), "last": w.last.isoformat(),
             "ended": w.last < today,
             "signoffs": sorted(by_week.get(w.label, []), key=lambda r: r["time"])}
            for w in recent_weeks(today, count)]
