"""Reading the ledger: search filters, a task's timeline, CSV export, summaries.

Shared by the HTTP API and by CLI commands that open a store directly, so both
give the same answers. Filter values are bound as query parameters.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta, timezone
from typing import Any, Callable, Iterable, Iterator, Optional, Sequence

from aitrail.errors import AitrailError
from aitrail.record.csv_format import PAYLOAD_COLUMNS, RESULT_COLUMNS, csv_lines
from aitrail.record.event_types import COLLECTOR_SERVICE
from aitrail.verify.envelope import V1_ENVELOPE_TEXT
from aitrail.verify.hashes import commitment, salt_bytes
from aitrail_collector.store.client import Store
from aitrail_collector.store.schema import (
    DB,
    ENVELOPE_DAYS,
    ENVELOPE_SELECT,
    FIELD_POSITION,
    HASH_COLUMNS,
    HASHES_BY_KEY,
    PEOPLE_ROW_SELECT,
    split_row,
)

MAX_LIMIT = 10_000
SORTABLE = ("start_time", "seq", "event_type", "task_id", "reviewer_id", "model",
            "prompt_version", "decision", "service", "confidence", "time_spent_ms")
# The columns of a model call variant a search may pick reviews by (a chart's bar).
VARIANT = ("model", "model_version", "prompt_template_id", "prompt_version")
ERASED = "[erased]"
# The hashes of a people row whose envelope row the envelopes do not hold (a row of
# the index that outlived its day part by the TTL's merge delay, or a damaged store):
# said, not shown empty.
NO_ENVELOPE = "[envelope row not found]"
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
    # True: the task, reviewer and request ids match case-insensitively as prefixes
    # (the console's search box); False: exactly (the API, the CLI, a timeline).
    prefix: bool = False
    # The collector's own data_access records (who read what): "include" them,
    # "hide" them (the console's default search, a task's timeline) or "only" them.
    activity: str = "include"

    @classmethod
    def parse(cls, *, task=None, reviewer=None, request_id=None, trace_id=None, record_id=None,
              service=None,
              types=(), since=None, until=None, limit="100", offset="0", sort="start_time",
              order="asc", prefix=False, activity="auto", variant=()) -> "Filters":
        """Build filters from text (command-line or URL values), with clear errors.
        In prefix mode (a person's search box) values are trimmed too: a pasted id
        often carries a space. Exact mode takes them as given (an id may hold one)."""
        def text(value: Optional[str]) -> Optional[str]:
            return ((value or "").strip() if prefix else value) or None
        f = cls(task=text(task), reviewer=text(reviewer), request_id=text(request_id),
                trace_id=(text(trace_id) or "").lower() or None, record_id=text(record_id),
                service=text(service),
                types=tuple(t for t in (types or ()) if t), prefix=bool(prefix),
                variant=tuple((str(c), str(v)) for c, v in variant))
        for column, _ in f.variant:
            if column not in VARIANT:
                raise FilterError(f"{column!r}: not a model call variant column "
                                  f"(one of {', '.join(VARIANT)})")
        f.since = parse_time(since, "since") if since else None
        f.until = parse_time(until, "until") if until else None
        if f.since and f.until and f.since > f.until:
            raise FilterError("since is after until")
        if activity not in ACTIVITY + ("auto",):
            raise FilterError(f"activity {activity!r}: expected one of "
                              f"{', '.join(ACTIVITY + ('auto',))}")
        if activity == "auto":
            # A read names the task it read, so a task search would now list its readers
            # too; by default it stays what it was (the task's own records) unless the
            # reads are asked for by type. Every other search includes them, as before.
            activity = "hide" if f.task and "data_access" not in f.types else "include"
        f.activity = activity
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

    def task_days_clause(self, params: dict[str, Any]) -> str:
        """start_time on one of the task filter's days in the task -> day table (a
        table partitioned by day, envelopes or payloads, then opens only those)."""
        match = (prefix_clause("task", self.task, params) if self.prefix
                 else "task_id = {task:String}")
        return tasks_days_clause(match)

    def where(self, people: bool = False, task_days: bool = False) -> tuple[str, dict[str, Any]]:
        """The WHERE clause and its parameters. ``people``: for the people table
        (schema.people_ddl), which has the envelope's columns and the person each row
        names: the reviewer filter is then on that one sorted column. ``task_days``:
        the store has the task -> day table (schema.COUNT_TABLES), and a task filter
        (exact, or a prefix: every matching task's) also names the task's days there,
        so the engine opens only those day partitions (it builds the set before it
        chooses the parts)."""
        clauses: list[str] = []
        params: dict[str, Any] = {}
        if task_days and self.task is not None:
            clauses.append(self.task_days_clause(params))
        for column, key in (("task_id", "task"), ("reviewer_id", "reviewer"),
                            ("request_id", "request_id"), ("trace_id", "trace_id"),
                            ("record_id", "record_id"), ("service", "service")):
            value = getattr(self, key)
            if value is not None and key == "reviewer" and people:
                clauses.append(person_clause(value, self.prefix, params))
            elif value is not None and self.prefix and key in PREFIX_COLUMNS:
                clauses.append(prefix_clause(key, value, params))
            elif value is not None:
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
        if self.activity != "include":
            own = f"(event_type = 'data_access' AND service = '{COLLECTOR_SERVICE}')"
            clauses.append(own if self.activity == "only" else f"NOT {own}")
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


ACTIVITY = ("include", "hide", "only")
# The id filters that match as prefixes in prefix mode, and the columns each reads (an
# escalation names reviewers in its own columns).
PREFIX_COLUMNS = {"task": ("task_id",),
                  "reviewer": ("reviewer_id", "escalation_from", "escalation_to"),
                  "request_id": ("request_id",)}
PREFIX_LABELS = {"task": "task id", "reviewer": "reviewer id", "request_id": "request id"}
MAX_CASE_VARIANTS = 16


def case_variants(prefix: str) -> list[str]:
    """Spellings of ``prefix`` that cover every id starting with it in any case, each
    cut short before a letter that would make more than MAX_CASE_VARIANTS (a shorter
    prefix still narrows). Only ASCII letters vary; the cut comes before any other
    cased character, so the set is never too narrow."""
    out = [""]
    for c in prefix:
        if c.isascii() and c.isalpha():
            if len(out) * 2 > MAX_CASE_VARIANTS:
                break
            out = [v + x for v in out for x in (c.lower(), c.upper())]
        elif c.lower() != c or c.upper() != c:
            break
        else:
            out = [v + c for v in out]
    return [v for v in out if v]


def prefix_clause(key: str, value: str, params: dict[str, Any]) -> str:
    """``value`` as a case-insensitive prefix of the id, in the engine. On task_id (the
    sorting key's second column) startsWith on each case spelling lets the primary key
    skip granules, and the exact test follows. The other ids are bloom-filtered, and
    a bloom filter answers only equality: the ids that match are found first, in a
    subquery reading that one column, and the rows by ``IN`` that set, which the
    filters can use."""
    params[f"{key}_p"] = value
    match = f"startsWith(lowerUTF8({{x}}), lowerUTF8({{{{{key}_p:String}}}}))"
    if key == "task":
        variants = case_variants(value)
        params.update({f"task_v{i}": v for i, v in enumerate(variants)})
        keyed = " OR ".join(f"startsWith(task_id, {{task_v{i}:String}})"
                            for i in range(len(variants)))
        exact = match.format(x="task_id")
        return f"(({keyed}) AND {exact})" if keyed else exact
    columns = PREFIX_COLUMNS[key]
    ids = (f"(SELECT DISTINCT x FROM (SELECT arrayJoin([{', '.join(columns)}]) AS x"
           f" FROM {DB}.envelopes) WHERE {match.format(x='x')})" if len(columns) > 1 else
           f"(SELECT DISTINCT {columns[0]} FROM {DB}.envelopes"
           f" WHERE {match.format(x=columns[0])})")
    return "(" + " OR ".join(f"{c} IN {ids}" for c in columns) + ")"


def person_clause(value: str, prefix: bool, params: dict[str, Any]) -> str:
    """The people table's person column is the reviewer: exactly, or as a
    case-insensitive prefix, matched the way prefix_clause matches task ids (the
    sorting key's first column: startsWith on each case spelling skips granules)."""
    if not prefix:
        params["reviewer"] = value
        return "person = {reviewer:String}"
    variants = case_variants(value)
    params.update({f"person_v{i}": v for i, v in enumerate(variants)})
    params["person_p"] = value
    exact = "startsWith(lowerUTF8(person), lowerUTF8({person_p:String}))"
    keyed = " OR ".join(f"startsWith(person, {{person_v{i}:String}})"
                        for i in range(len(variants)))
    return f"(({keyed}) AND {exact})" if keyed else exact


def explain_empty(store: Store, f: Filters) -> Optional[str]:
    """Why a prefix search found nothing, when an id filter is the reason: no id of the
    store starts with it, said with the nearest id there is (one engine lookup of the
    id column, an edit distance over its distinct values; run only on an empty
    result). None when every id filter matches some record (then the period or the
    other filters are why)."""
    for key, columns in PREFIX_COLUMNS.items():
        value = getattr(f, key)
        if value is None:
            continue
        params: dict[str, Any] = {}
        clause = prefix_clause(key, value, params) if f.prefix else f"{columns[0]} = {{v:String}}"
        params.setdefault("v", value)
        if store.query(f"SELECT 1 FROM {DB}.envelopes WHERE {clause} LIMIT 1",
                       params).result_rows:
            continue
        label = PREFIX_LABELS[key]
        said = f"no {label} starts with {value!r}" if f.prefix else f"no {label} is {value!r}"
        near = nearest_id(store, columns, value)
        return f"{said}; did you mean {near}?" if near else said + "."
    return None


def nearest_id(store: Store, columns: Sequence[str], value: str) -> Optional[str]:
    """The stored id whose start is nearest ``value`` (case-insensitive edit distance;
    among equally near, the one sharing the longest start with it), when it is near
    enough to be a typo."""
    ids = (f"SELECT DISTINCT arrayJoin([{', '.join(columns)}]) AS x FROM {DB}.envelopes")
    rows = store.query(
        "SELECT x, editDistanceUTF8(lowerUTF8(substringUTF8(x, 1, {n:UInt32})),"
        " lowerUTF8({v:String})) AS d,"
        " arrayFirstIndex(i -> substringUTF8(lowerUTF8(x), i, 1)"
        " != substringUTF8(lowerUTF8({v:String}), i, 1), range(1, {n:UInt32} + 2)) AS common"
        f" FROM ({ids}) WHERE x != ''"
        " ORDER BY d, common DESC, length(x), x LIMIT 1",
        {"n": len(value), "v": value}).result_rows
    if rows and int(rows[0][1]) <= max(2, len(value) // 3):
        return str(rows[0][0])
    return None


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
                     bounds: Optional[tuple[int, int]] = None,
                     rows: Optional[Sequence[tuple[Any, ...]]] = None) -> None:
    """Fill each payload column from the payload table, trusting only the sealed
    commitments: a stored row that hashes (salt || content) to the sealed commitment
    gives the content; stored rows of that name of which none does read as tampered
    (an extra non-matching row beside a matching one is an orphan of a retried write,
    ignored); no row reads as erased. The same rule as ledger.erasure.check_payloads.

    ``rows``: payload rows read already, at once with the records (a timeline's,
    _task_payload_rows). A record they hold none of is read again by key: its rows
    may have landed after that read began, and only the key read may call it erased."""
    sealed = {rec["record_id"]: rec["_commitments"] for rec in records}
    found: dict[str, dict[str, Optional[str]]] = {}
    if rows is not None:
        _match_payloads(rows, sealed, found)
    wanted: dict[str, list[str]] = {}
    for rec in records:
        if rec["_commitments"] and rec["record_id"] not in found:
            wanted.setdefault(rec["chain_id"], []).append(rec["record_id"])
    for chain_id, ids in wanted.items():
        _match_payloads(store.payload_rows(chain_id, ids, bounds), sealed, found)
    for rec in records:
        content = found.get(rec["record_id"], {})
        for name in PAYLOAD_COLUMNS:
            if name in rec["_commitments"]:
                value = content.get(name, ERASED)
                rec[name] = TAMPERED if value is None else value
            else:
                rec[name] = _unsealed_value(rec, name)
        del rec["_commitments"]


def _match_payloads(rows: Iterable[tuple[Any, ...]], sealed: dict[str, dict[str, str]],
                    found: dict[str, dict[str, Optional[str]]]) -> None:
    """Into ``found[record_id][name]``: the content of the row that matches its sealed
    commitment, or None while only rows that do not match were seen."""
    for rid, name, salt, content in rows:
        expected = sealed.get(rid, {}).get(name)
        if expected is None:
            continue  # not a sealed payload of these records: a stray row
        got = found.setdefault(rid, {})
        if commitment(salt_bytes(salt), content) == expected:
            got[name] = content
        else:
            got.setdefault(name, None)


def _task_payload_rows(store: Store, filters: Filters) -> list[tuple[Any, ...]]:
    """(record_id, name, salt, content) of the payloads of the records a whole task's
    read (_whole_tasks) selects, found by the same filter: so the read runs at once
    with the records' own, not after it (10M store: a timeline's two reads 35-43 and
    18-40 ms one after another, 44-48 ms at once). The payload rows lie in their
    envelopes' day partitions, so the task's days prune them too."""
    where, params = filters.where(task_days=store.has_counts())
    days = f" AND {filters.task_days_clause(params)}" if store.has_counts() else ""
    sql = (f"SELECT record_id, name, salt, content FROM {DB}.payloads"
           f" WHERE (chain_id, record_id) IN (SELECT chain_id, record_id"
           f" FROM {DB}.envelopes{where}{_settings(filters, False)}){days}")
    return store.query(sql, params).result_rows


_START = FIELD_POSITION["start_time"]


def _bounds(rows: Sequence[Sequence[Any]]) -> Optional[tuple[int, int]]:
    times = [r[_START] for r in rows]
    return (min(times), max(times)) if times else None


def _attach_hashes(store: Store, records: list[dict[str, Any]], starts: Sequence[int]) -> None:
    """leaf_hash and chain_hash of records read from the people table, which holds
    no hashes (schema.PEOPLE_COLUMNS): one read of the envelopes by sorting key for
    the whole batch. A record whose envelope row is not there gets NO_ENVELOPE."""
    if not records:
        return
    keys = [(r["chain_id"], r["task_id"], r["event_type"], t, r["seq"])
            for r, t in zip(records, starts)]
    found = {(c, int(q)): (bytes(leaf).hex(), bytes(chain).hex()) for c, q, leaf, chain
             in store.query(HASHES_BY_KEY, {"keys": keys, "tasks": sorted({k[1] for k in keys}),
                                            "lo": min(starts), "hi": max(starts)}).result_rows}
    for rec in records:
        rec["leaf_hash"], rec["chain_hash"] = found.get((rec["chain_id"], rec["seq"]),
                                                        (NO_ENVELOPE, NO_ENVELOPE))


def _from_people(store: Store, filters: Filters) -> bool:
    """Whether the search reads the people table (see _select)."""
    return filters.reviewer is not None and store.has_people()


def _select(filters: Filters, has_people: bool = False,
            task_days: bool = False) -> tuple[str, dict[str, Any]]:
    """The SELECT of a search: from the envelopes, or, for a reviewer search on a
    store that has it (``has_people``), from the people table (the same columns and
    values, see schema.people_ddl). A prefix may name a record through two of its
    people: once. ``task_days``: see Filters.where."""
    people = has_people and filters.reviewer is not None
    where, params = filters.where(people, task_days and not people)
    order = "DESC" if filters.order == "desc" else "ASC"
    if people:
        once = " LIMIT 1 BY chain_id, seq" if filters.prefix else ""
        sql = (f"SELECT {PEOPLE_ROW_SELECT} FROM {DB}.people{where}"
               f" ORDER BY {filters.sort} {order}, seq {order}{once}")
    else:
        sql = (f"SELECT {ENVELOPE_SELECT} FROM {DB}.envelopes{where}"
               f" ORDER BY {filters.sort} {order}, seq {order}")
    if filters.limit is not None:
        sql += " LIMIT {limit:UInt64} OFFSET {offset:UInt64}"
        params.update(limit=filters.limit, offset=filters.offset)
    return sql + _settings(filters, people), params


def _settings(f: Filters, people: bool, count: bool = False) -> str:
    """Index work a search cannot use, turned off: the engine otherwise weighs every
    skip index and the record_id projection of each part it opens, and that costs
    more than reading a timeline's rows (10M store: the timeline's envelope SELECT
    21 ms with skip indexes off, 37-53 ms with them, the same rows). ``people``: the
    search reads the people table, which has neither."""
    if people:
        return ""
    off = []
    blooms = ("request_id", "trace_id") + (() if f.prefix else ("reviewer",))
    if all(getattr(f, k) is None for k in blooms) and not f.prefix:
        off.append("use_skip_indexes = 0")
    # (A count keeps them: the parts' implicit min-max-count projection answers it.)
    if f.record_id is None and not f.variant and not count:
        off.append("optimize_use_projections = 0")
    return f" SETTINGS {', '.join(off)}" if off else ""


def tasks_days_clause(match: str) -> str:
    """start_time on a day the task -> day table holds for the tasks ``match`` picks
    (SQL over task_id): the engine builds the set before it picks the parts, so only
    those day partitions are opened."""
    return f"toDate(start_time) IN (SELECT day FROM {DB}.task_days WHERE {match})"


def task_model_sql(days: bool) -> str:
    """The model call a review reviewed: its task's latest model call at or before it.
    The export joins the same in the engine (store/export.py, TASK_MODEL_JOIN). The
    reviews come as values (the page already read them); only their tasks' model calls
    up to the newest review are read, through the task -> day table when the store has
    it (``days``). 10M store, a reviewer search's 40 tasks: 59 -> 45 ms with the days
    and the settings."""
    return (
        "SELECT r.record_id, m.model, m.prompt_version FROM"
        " (SELECT x.1 AS record_id, x.2 AS task_id, fromUnixTimestamp64Nano(x.3) AS start_time"
        " FROM (SELECT arrayJoin({reviews:Array(Tuple(String, String, Int64))}) AS x)) AS r"
        " ASOF INNER JOIN (SELECT task_id, start_time, model, prompt_version"
        f" FROM {DB}.envelopes WHERE event_type = 'model_call'"
        " AND task_id IN {tasks:Array(String)}"
        " AND start_time <= fromUnixTimestamp64Nano({hi:Int64})"
        # Every day of the tasks, not only the reviews' days: a model call may be earlier.
        + (" AND " + tasks_days_clause("task_id IN {tasks:Array(String)}") if days else "")
        + ")"
        " AS m ON m.task_id = r.task_id AND m.start_time <= r.start_time"
        # The tasks are few and their rows adjacent in the sort order: weighing each
        # opened part's skip indexes and record_id projection costs more than it saves.
        " SETTINGS use_skip_indexes = 0, optimize_use_projections = 0")


def _whole_tasks(f: Filters) -> bool:
    """The filters select every record of one task but the collector's reads (a
    timeline): its model calls are then all among the rows."""
    return (f.task is not None and not f.prefix and f.limit is None and not f.offset
            and not f.types and not f.variant and f.since is None and f.until is None
            and f.activity != "only"
            and all(getattr(f, k) is None
                    for k in ("reviewer", "request_id", "trace_id", "record_id", "service")))


def _attach_task_models(store: Store, records: list[dict[str, Any]], starts: Sequence[int],
                        whole: bool = False) -> None:
    """task_model and task_prompt_version on every record: a review's are its task's
    model call's (one engine query per batch), any other record's are None. ``starts``:
    each record's start_time in ns. ``whole``: the records hold every model call of
    their task (_whole_tasks), so they answer it themselves, without a query."""
    found: dict[str, tuple[str, str]] = {}
    if whole:
        # By time, a model call before a review of the same instant (the join's <=).
        last: dict[str, tuple[str, str]] = {}
        for _, rec in sorted(zip(starts, records),
                             key=lambda x: (x[0], x[1]["event_type"] != "model_call")):
            if rec["event_type"] == "model_call":
                last[rec["task_id"]] = (rec["model"], rec["prompt_version"])
            elif rec["event_type"] == "review" and rec.get("task_id") in last:
                found[rec["record_id"]] = last[rec["task_id"]]
    else:
        reviews = [(r["record_id"], r["task_id"], t) for r, t in zip(records, starts)
                   if r["event_type"] == "review" and r.get("task_id")]
        if reviews:
            rows = store.query(task_model_sql(store.has_counts()), {
                "reviews": reviews, "tasks": sorted({r[1] for r in reviews}),
                "hi": max(r[2] for r in reviews)}).result_rows
            found = {rid: (model, prompt) for rid, model, prompt in rows}
    for rec in records:
        model, prompt = found.get(rec["record_id"], (None, None))
        rec["task_model"], rec["task_prompt_version"] = model, prompt


# The newest-first page of a period: tried on its newest day, then week, then month,
# before the whole period (see _page_rows).
RECENT_WINDOWS = (timedelta(days=1), timedelta(days=7), timedelta(days=30))


def _utc(dt: datetime) -> datetime:
    # A naive time is taken as UTC, the time zone of every time the store holds.
    return dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)


def _page_rows(store: Store, filters: Filters) -> list[Sequence[Any]]:
    """The rows of one page. A page of the newest records (by start_time, descending)
    with no id filter is first read from the period's newest day only, then week, then
    month: the envelopes are sorted by task, so the engine would otherwise read the
    start_time of every record of the period to find the newest, while the day
    partitions let it open only the window's. Exact: every record outside a window is
    older than every record in it, so a window that fills the page (offset + limit
    rows) holds the page."""
    indexes = store.has_people(), store.has_counts()
    if (filters.sort == "start_time" and filters.order == "desc" and filters.limit
            and all(getattr(filters, k) is None for k in
                    ("task", "reviewer", "request_id", "trace_id", "record_id"))):
        top = _utc(filters.until) if filters.until else datetime.now(timezone.utc)
        for span in RECENT_WINDOWS:
            since = top - span
            if filters.since and since <= _utc(filters.since):
                break
            window = replace(filters, since=since)
            rows = store.query(*_select(window, *indexes)).result_rows
            if len(rows) == filters.limit:
                return rows
    return store.query(*_select(filters, *indexes)).result_rows


def search(store: Store, filters: Filters, payloads: bool = True,
           task_models: bool = True, hashes: bool = True) -> list[dict[str, Any]]:
    """Matching records; with ``task_models`` each review's task model call's model and
    prompt version too (what the CSV shows; a page that shows neither skips the query).
    ``hashes``: each record's leaf_hash and chain_hash; without, the records have
    neither (a page that shows no hash: a page read from the people table then skips
    the lookup of its rows in the envelopes, _attach_hashes)."""
    whole = _whole_tasks(filters)
    payload_rows: Optional[list[tuple[Any, ...]]] = None
    if payloads and whole:
        read: list[Callable[[], list[Any]]] = [lambda: _page_rows(store, filters),
                                               lambda: _task_payload_rows(store, filters)]
        rows, payload_rows = store.concurrently(read)
    else:
        rows = _page_rows(store, filters)
    records = [_row_to_record(r) for r in rows]
    starts = [r[_START] for r in rows]
    # The page's hashes, task models and payloads are independent reads, each of rows
    # scattered over day parts: run at once, not one after another. Each fills keys of
    # its own in the records. A timeline's task models need no read.
    reads: list[Callable[[], None]] = []
    if not hashes:
        for rec in records:
            del rec["leaf_hash"], rec["chain_hash"]
    elif _from_people(store, filters):
        reads.append(lambda: _attach_hashes(store, records, starts))
    if task_models and whole:
        _attach_task_models(store, records, starts, whole)
    elif task_models:
        reads.append(lambda: _attach_task_models(store, records, starts))
    if payloads:
        reads.append(lambda: _attach_payloads(store, records, _bounds(rows), payload_rows))
    store.concurrently(reads if records else [])
    if not payloads:
        for rec in records:
            del rec["_commitments"]
    return records


def count(store: Store, filters: Filters) -> int:
    if _from_people(store, filters):
        where, params = filters.where(people=True)
        what = "uniqExact(chain_id, seq)" if filters.prefix else "count()"
        sql = f"SELECT {what} FROM {DB}.people{where}"
    elif store.has_counts() and _counted(filters):
        return _count_by_day(store, filters)
    else:
        where, params = filters.where(task_days=store.has_counts())
        sql = f"SELECT count() FROM {DB}.envelopes{where}{_settings(filters, False, True)}"
    return int(store.query(sql, params).result_rows[0][0])


def page_total(store: Store, filters: Filters, page: Sequence[Any]) -> int:
    """The total of a search whose page ``page`` (search's records) was just read:
    a page shorter than the limit, and not past the end, ends the matches, so the
    total is the records before it and on it (a task's search, most others of a few
    records: no second query); else count()."""
    if filters.limit is not None and page and len(page) < filters.limit:
        return filters.offset + len(page)
    if filters.limit is not None and not page and not filters.offset:
        return 0
    return count(store, filters)


def _counted(f: Filters) -> bool:
    """Whether the type_counts table answers the total better: it filters on event
    type or service (the collector's reads are a type and a service) and on nothing
    else but time. A total of every record of a period is cheaper from the envelopes:
    the parts' count metadata and a read of start_time on the partial days."""
    return (not f.variant and bool(f.types or f.service or f.activity != "include")
            and all(getattr(f, k) is None for k in
                    ("task", "reviewer", "request_id", "trace_id", "record_id")))


def _and(where: str, clause: str) -> str:
    return f"{where} AND {clause}" if where else f" WHERE {clause}"


def _day(d: date) -> datetime:
    return datetime(d.year, d.month, d.day, tzinfo=timezone.utc)


def _edge_days(f: Filters) -> list[date]:
    """The days the period covers only in part (its first and last, unless they start
    at midnight)."""
    edges = []
    if f.since:
        since = _utc(f.since)
        if _day(since.date()) != since:
            edges.append(since.date())
    if f.until:
        until = _utc(f.until)
        if _day(until.date()) != until:
            edges.append(until.date())
    return sorted(set(edges))


def _count_by_day(store: Store, f: Filters) -> int:
    """The total of a search _counted answers, in one query in the common case: per
    day, the envelopes' count of records (from the parts' count metadata), the
    type_counts sum of that day and of its matching rows, and for the days the period
    covers only in part the matching envelope rows (those days' partitions only). A
    day wholly inside the period counts its matching type_counts rows when its sum
    equals the envelopes' count; a day where it does not (being written, lost in a
    crash, dropped by the TTL) is counted from its envelope rows, a second query."""
    lo = _utc(f.since) if f.since else EARLIEST
    hi = _utc(f.until) if f.until else LATEST
    edges = _edge_days(f)
    kinds, params = replace(f, since=None, until=None).where()
    branches = [f"SELECT d, n AS e, 0 AS t, 0 AS m, 0 AS p FROM ({ENVELOPE_DAYS})",
                f"SELECT day, 0, sum(n), sumIf(n, {kinds.removeprefix(' WHERE ') or '1'}), 0"
                f" FROM {DB}.type_counts GROUP BY day"]
    if edges:
        where, more = f.where()
        params.update(more, edges=edges)
        branches.append(f"SELECT toDate(start_time) AS d, 0, 0, 0, count() FROM {DB}.envelopes"
                        f"{_and(where, 'toDate(start_time) IN {edges:Array(Date)}')} GROUP BY d")
    sql = (f"SELECT d, sum(e), sum(t), sum(m), sum(p) FROM ({' UNION ALL '.join(branches)})"
           f" GROUP BY d{_settings(f, False, True)}")
    total, stale = 0, []
    for day, e, t, m, p in store.query(sql, params).result_rows:
        if not e or _day(day) + timedelta(days=1) <= lo or _day(day) >= hi:
            continue  # no records that day (the TTL dropped it), or outside the period
        if day in edges:
            total += p
        elif e == t:
            total += m
        else:
            stale.append(day)
    if stale:
        where, params = f.where()
        params["stale"] = stale
        total += int(store.query(
            f"SELECT count() FROM {DB}.envelopes"
            f"{_and(where, 'toDate(start_time) IN {stale:Array(Date)}')}"
            f"{_settings(f, False, True)}", params).result_rows[0][0])
    return int(total)


def iter_records(store: Store, filters: Filters, chunk: int = 2000) -> Iterator[dict[str, Any]]:
    """Every matching record, streamed from the store, payloads attached per chunk."""
    sql, params = _select(filters, store.has_people(), store.has_counts())
    people = _from_people(store, filters)
    rows: list[Sequence[Any]] = []
    for row in store.stream(sql, params):
        rows.append(row)
        if len(rows) >= chunk:
            yield from _with_payloads(store, rows, people)
            rows = []
    if rows:
        yield from _with_payloads(store, rows, people)


def _with_payloads(store: Store, rows: list[Sequence[Any]],
                   people: bool = False) -> list[dict[str, Any]]:
    records = [_row_to_record(r) for r in rows]
    starts = [r[_START] for r in rows]
    if people:
        _attach_hashes(store, records, starts)
    _attach_task_models(store, records, starts)
    _attach_payloads(store, records, _bounds(rows))
    return records


def timeline(store: Store, task_id: str) -> list[dict[str, Any]]:
    return search(store, timeline_filters(task_id))


def timeline_filters(task_id: str) -> Filters:
    """A task's events, in order: exactly that id, without the records of who read it
    (a read names the task it read, and reading must not change the timeline)."""
    return Filters(task=task_id, limit=None, sort="start_time", order="asc", activity="hide")


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


__all__ = ["Filters", "FilterError", "explain_empty", "timeline_filters", "search", "count",
           "page_total",
           "iter_records", "timeline", "csv_lines",
           "summary", "parse_time", "RESULT_COLUMNS", "HASH_COLUMNS"]
