"""Reading the ledger: search filters, a task's timeline, CSV export, summaries.

Shared by the HTTP API and by CLI commands that open a store directly, so both
give the same answers. Filter values are bound as query parameters.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Iterator, Optional, Sequence

from aitrail.errors import AitrailError
from aitrail.record.csv_format import PAYLOAD_COLUMNS, RESULT_COLUMNS, csv_lines
from aitrail.verify.envelope import V1_ENVELOPE_TEXT
from aitrail.verify.hashes import commitment, salt_bytes
from aitrail_collector.store.client import Store
from aitrail_collector.store.schema import (
    DB,
    ENVELOPE_SELECT,
    FIELD_POSITION,
    HASH_COLUMNS,
    split_row,
)

MAX_LIMIT = 10_000
SORTABLE = ("start_time", "seq", "event_type", "task_id", "reviewer_id", "model",
            "prompt_version", "decision", "service", "confidence", "time_spent_ms")
# The columns of a model call variant a search may pick reviews by (a chart's bar).
VARIANT = ("model", "model_version", "prompt_template_id", "prompt_version")
ERASED = "[erased]"
TAMPERED = "[payload does not match its sealed commitment]"

class FilterError(AitrailError, ValueError):
    """A filter value is malformed; the message names it and says what is expected."""


_RELATIVE = re.compile(r"(\d+)\s*(s|m|h|d|w)")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
# What start_time can hold: Int64 nanoseconds since 1970 (ClickHouse DateTime64(9)),
# so at most 2**63 - 1 ns, 2262-04-11T23:47:16.854775807Z (here to the microsecond).
EARLIEST = datetime(1970, 1, 1, tzinfo=timezone.utc)
LATEST = datetime(2262, 4, 11, 23, 47, 16, 854775, tzinfo=timezone.utc)


def parse_time(value: str, name: str, now: Optional[datetime] = None) -> datetime:
    """ISO 8601 (date or date-time; naive means UTC), ``now``, or a span ago: 30m, 24h, 7d.
    Times the store cannot hold (before 1970, after 2262-04-11) are refused."""
    text = value.strip()
    now = now or datetime.now(timezone.utc)
    out_of_range = FilterError(f"{name} {value!r}: outside the times the store holds "
                               f"({EARLIEST:%Y-%m-%d} to {LATEST:%Y-%m-%d}, UTC)")
    if text == "now":
        return now
    m = _RELATIVE.fullmatch(text)
    if m:
        try:
            parsed = now - timedelta(**{_UNITS[m.group(2)]: int(m.group(1))})
        except OverflowError:
            raise out_of_range from None
    else:
        try:
            parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise FilterError(f"{name} {value!r}: expected an ISO 8601 date or time "
                              "(2026-11-28, 2026-11-28T09:30:00Z), 'now', or a span ago like "
                              "30m, 24h, 7d") from None
        parsed = parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)
    try:
        parsed = parsed.astimezone(timezone.utc)
    except OverflowError:  # a time zone offset past the year 1 or 9999
        raise out_of_range from None
    if not EARLIEST <= parsed <= LATEST:
        raise out_of_range
    return parsed


def _ns(dt: datetime) -> int:
    return int(dt.timestamp()) * 10**9 + dt.microsecond * 1000


@dataclass
class Filters:
    task: Optional[str] = None
    reviewer: Optional[str] = None
    request_id: Optional[str] = None
    trace_id: Optional[str] = None
    record_id: Optional[str] = None
    service: Optional[str] = None
    types: Sequence[str] = field(default_factory=tuple)
    # (column of VARIANT, value): only the decided reviews attributed to a model call
    # of that variant, as the override charts count them (v_attributed_reviews); ''
    # is a value here (no prompt template; no model call at all).
    variant: tuple[tuple[str, str], ...] = ()
    since: Optional[datetime] = None
    until: Optional[datetime] = None
    limit: Optional[int] = 100
    offset: int = 0
    sort: str = "start_time"
    order: str = "asc"

    @classmethod
    def parse(cls, *, task=None, reviewer=None, request_id=None, trace_id=None, record_id=None,
              service=None,
              types=(), since=None, until=None, limit="100", offset="0", sort="start_time",
              order="asc", variant=()) -> "Filters":
        """Build filters from text (command-line or URL values), with clear errors."""
        f = cls(task=task or None, reviewer=reviewer or None, request_id=request_id or None,
                trace_id=(trace_id or "").lower() or None, record_id=record_id or None,
                service=service or None,
                types=tuple(t for t in (types or ()) if t),
                variant=tuple((str(c), str(v)) for c, v in variant))
        for column, _ in f.variant:
            if column not in VARIANT:
                raise FilterError(f"{column!r}: not a model call variant column "
                                  f"(one of {', '.join(VARIANT)})")
        f.since = parse_time(since, "since") if since else None
        f.until = parse_time(until, "until") if until else None
        if f.since and f.until and f.since > f.until:
            raise FilterError("since is after until")
        # No limit is only for callers that stream everything (the export), never a
        # value a user gives: "all" and 0 are refused like any other out-of-range limit.
        if limit is None:
            f.limit = None
        elif str(limit).strip().lower() == "all":
            raise FilterError(f"limit {limit!r}: expected 1..{MAX_LIMIT}; page with offset, "
                              "or export to get every matching record")
        else:
            f.limit = _int("100" if limit == "" else limit, "limit", 1, MAX_LIMIT)
        f.offset = _int(offset or 0, "offset", 0, 10**12)
        if sort not in SORTABLE:
            raise FilterError(f"sort {sort!r}: expected one of {', '.join(SORTABLE)}")
        if order not in ("asc", "desc"):
            raise FilterError(f"order {order!r}: expected asc or desc")
        f.sort, f.order = sort, order
        for t in f.types:
            if not re.fullmatch(r"[a-z][a-z0-9_.]{0,63}", t):
                raise FilterError(f"type {t!r}: not an event type name")
        if f.trace_id and not re.fullmatch(r"[0-9a-f]{32}", f.trace_id):
            raise FilterError(f"trace_id {trace_id!r}: expected 32 hex digits")
        return f

    def where(self) -> tuple[str, dict[str, Any]]:
        clauses, params = [], {}
        for column, key in (("task_id", "task"), ("reviewer_id", "reviewer"),
                            ("request_id", "request_id"), ("trace_id", "trace_id"),
                            ("record_id", "record_id"), ("service", "service")):
            value = getattr(self, key)
            if value is not None:
                # An escalation names reviewers in its own columns.
                if column == "reviewer_id":
                    clauses.append("(reviewer_id = {reviewer:String} OR escalation_from = "
                                   "{reviewer:String} OR escalation_to = {reviewer:String})")
                else:
                    clauses.append(f"{column} = {{{key}:String}}")
                params[key] = value
        if self.variant:
            same = " AND ".join(f"{c} = {{variant_{c}:String}}" for c, _ in self.variant)
            clauses.append(f"record_id IN (SELECT record_id FROM {DB}.v_attributed_reviews"
                           f" WHERE {same})")
            params.update({f"variant_{c}": v for c, v in self.variant})
        if self.types:
            clauses.append("event_type IN {types:Array(String)}")
            params["types"] = list(self.types)
        if self.since:
            clauses.append("start_time >= fromUnixTimestamp64Nano({since:Int64})")
            params["since"] = _ns(self.since)
        if self.until:
            clauses.append("start_time < fromUnixTimestamp64Nano({until:Int64})")
            params["until"] = _ns(self.until)
        return (" WHERE " + " AND ".join(clauses)) if clauses else "", params

    def describe(self) -> dict[str, Any]:
        out = {k: v for k, v in self.__dict__.items() if v not in (None, (), [])}
        for k in ("since", "until"):
            if k in out:
                out[k] = out[k].isoformat()
        out["types"] = list(self.types)
        return out


def _int(value: Any, name: str, low: int, high: int) -> int:
    try:
        n = int(value)
    except (TypeError, ValueError):
        raise FilterError(f"{name} {value!r}: expected a whole number") from None
    if not low <= n <= high:
        raise FilterError(f"{name} {n}: expected {low}..{high}")
    return n


def iso(ns: int) -> str:
    dt = datetime.fromtimestamp(ns // 10**9, timezone.utc)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ns % 10**9 // 1000:06d}Z"


_NOT_SHOWN = ("start_time", "end_time", "received_time", "commitments")


def _row_to_record(row: Sequence[Any]) -> dict[str, Any]:
    seq, env, _, leaf, chain = split_row(row)
    rec: dict[str, Any] = {
        "time": iso(env["start_time"]), "end_time": iso(env["end_time"]),
        "received_time": iso(env["received_time"]), "seq": seq,
    }
    for name, value in env.items():
        if name not in _NOT_SHOWN:
            rec[name] = value
    rec["leaf_hash"], rec["chain_hash"] = leaf.hex(), chain.hex()
    rec["_commitments"] = env["commitments"]
    return rec


def _unsealed_value(rec: dict[str, Any], name: str) -> str:
    """A payload column of a record that has no such payload: a v1 row holds its
    free text (escalation reason, final decision, error message) in the envelope,
    and a v1 redaction its reason in ``purpose``; anything else is empty."""
    if rec["envelope_version"] == 1:
        if name in V1_ENVELOPE_TEXT:
            return str(rec.get(name) or "")
        if name == "erase_reason" and rec["event_type"] == "redaction":
            return str(rec.get("purpose") or "")
    return ""


def _attach_payloads(store: Store, records: list[dict[str, Any]],
                     bounds: Optional[tuple[int, int]] = None) -> None:
    """Fill each payload column from the payload table, trusting only the sealed
    commitments: a stored row that hashes (salt || content) to the sealed commitment
    gives the content; stored rows of that name of which none does read as tampered
    (an extra non-matching row beside a matching one is an orphan of a retried write,
    ignored); no row reads as erased. The same rule as ledger.erasure.check_payloads."""
    wanted: dict[str, list[str]] = {}
    for rec in records:
        if rec["_commitments"]:
            wanted.setdefault(rec["chain_id"], []).append(rec["record_id"])
    sealed = {rec["record_id"]: rec["_commitments"] for rec in records}
    found: dict[str, dict[str, Optional[str]]] = {}
    for chain_id, ids in wanted.items():
        for rid, name, salt, content in store.payload_rows(chain_id, ids, bounds):
            expected = sealed[rid].get(name)
            if expected is None:
                continue  # not a sealed payload of this record: a stray row
            got = found.setdefault(rid, {})
            if commitment(salt_bytes(salt), content) == expected:
                got[name] = content
            else:
                got.setdefault(name, None)
    for rec in records:
        content = found.get(rec["record_id"], {})
        for name in PAYLOAD_COLUMNS:
            if name in rec["_commitments"]:
                value = content.get(name, ERASED)
                rec[name] = TAMPERED if value is None else value
            else:
                rec[name] = _unsealed_value(rec, name)
        del rec["_commitments"]


_START = FIELD_POSITION["start_time"]


def _bounds(rows: Sequence[Sequence[Any]]) -> Optional[tuple[int, int]]:
    times = [r[_START] for r in rows]
    return (min(times), max(times)) if times else None


def _select(filters: Filters) -> tuple[str, dict[str, Any]]:
    where, params = filters.where()
    order = "DESC" if filters.order == "desc" else "ASC"
    sql = (f"SELECT {ENVELOPE_SELECT} FROM {DB}.envelopes{where}"
           f" ORDER BY {filters.sort} {order}, seq {order}")
    if filters.limit is not None:
        sql += " LIMIT {limit:UInt64} OFFSET {offset:UInt64}"
        params.update(limit=filters.limit, offset=filters.offset)
    return sql, params


def search(store: Store, filters: Filters, payloads: bool = True) -> list[dict[str, Any]]:
    sql, params = _select(filters)
    rows = store.query(sql, params).result_rows
    records = [_row_to_record(r) for r in rows]
    if payloads:
        _attach_payloads(store, records, _bounds(rows))
    else:
        for rec in records:
            del rec["_commitments"]
    return records


def count(store: Store, filters: Filters) -> int:
    where, params = filters.where()
    return int(store.query(f"SELECT count() FROM {DB}.envelopes{where}", params).result_rows[0][0])


def iter_records(store: Store, filters: Filters, chunk: int = 2000) -> Iterator[dict[str, Any]]:
    """Every matching record, streamed from the store, payloads attached per chunk."""
    sql, params = _select(filters)
    rows: list[Sequence[Any]] = []
    for row in store.stream(sql, params):
        rows.append(row)
        if len(rows) >= chunk:
            yield from _with_payloads(store, rows)
            rows = []
    if rows:
        yield from _with_payloads(store, rows)


def _with_payloads(store: Store, rows: list[Sequence[Any]]) -> list[dict[str, Any]]:
    records = [_row_to_record(r) for r in rows]
    _attach_payloads(store, records, _bounds(rows))
    return records


def timeline(store: Store, task_id: str) -> list[dict[str, Any]]:
    f = Filters(task=task_id, limit=None, sort="start_time", order="asc")
    return search(store, f)


def highest_task_number(store: Store, prefix: str) -> int:
    """The largest N of the task ids ``<prefix>N`` stored (0 when there is none)."""
    rows = store.query(f"SELECT max(toUInt64OrZero(substring(task_id, {{n:UInt32}})))"
                       f" FROM {DB}.envelopes WHERE startsWith(task_id, {{p:String}})",
                       {"n": len(prefix) + 1, "p": prefix}).result_rows
    return int(rows[0][0] or 0)


# ---------------------------------------------------------------- summary

def summary(store: Store) -> dict[str, Any]:
    by_type = dict(store.query(f"SELECT event_type, count() FROM {DB}.envelopes"
                               " GROUP BY event_type ORDER BY event_type").result_rows)
    reviews = store.query(
        f"SELECT countIf(decision = 'approve'), countIf(decision = 'reject'),"
        f" countIf(decision = 'modify'), countIf(decision = 'none')"
        f" FROM {DB}.envelopes WHERE event_type = 'review'").result_rows[0]
    approve, reject, modify, undecided = (int(x) for x in reviews)
    decided = approve + reject + modify
    chains = store.query(f"SELECT chain_id, max(seq), count() FROM {DB}.envelopes"
                         " GROUP BY chain_id ORDER BY chain_id").result_rows
    return {
        "records": sum(by_type.values()),
        "by_type": by_type,
        "reviews": {"approve": approve, "reject": reject, "modify": modify, "none": undecided},
        # Overrides are reviews that did not accept the model's output as it was.
        "override_rate": (reject + modify) / decided if decided else None,
        "chains": [{"chain_id": c, "head_seq": int(h), "records": int(n)} for c, h, n in chains],
    }


__all__ = ["Filters", "FilterError", "search", "count", "iter_records", "timeline", "csv_lines",
           "summary", "parse_time", "RESULT_COLUMNS", "HASH_COLUMNS"]
