"""Ingest in the engine: a group of ExportRequests decoded, checked, split and hashed
by the embedded ClickHouse engine, never record by record in Python.

The ledger (``ledger/engine_lane.py``) hands this module the requests' bytes as one
``ExportRequest`` (concatenated requests are one request: ``records`` is a repeated
field) in a file on tmpfs, and the engine reads it with its ``ProtobufList`` input
format and the committed ``audit.proto``. Everything here is generated from the table
of event types (``aitrail.record.event_types``) and the envelope fields
(``aitrail.verify.envelope``), so it cannot drift from the reference path in
``ledger/group_commit.py``:

* ``stage``  -- every record of the group as the envelope columns and payloads of
  ``split_record``, and ``suspect``: a vectorized, *conservative* version of
  ``ingest.validate`` (and of the API key's scope). Every record the reference
  refuses is a suspect; the ledger hands the (few) suspects to ``validate`` itself,
  which gives the exact reason or clears them.
* ``seal``   -- the records to store: not refused, first of their record id in the
  group and not already in the ledger; their seq, payload salts and commitments, and
  their leaf hash (the canonical bytes of ``store/verify_sql.canonical_expr``).
* ``store``  -- payloads first, then envelopes, with the chain hashes the ledger
  computed (sequential, so compiled code, not SQL) from the leaf hashes.

Only the embedded engine, inside the collector's process, may run this: in server
mode the collector computes what it signs itself (DESIGN.md, "Hot paths").
"""

from __future__ import annotations

import os
import weakref
from dataclasses import dataclass
from importlib import resources
from typing import Any, Optional, Sequence

from aitrail.record import event_types
from aitrail.record.event_types import PARTS, Limit, Part, PartField, Rule, Value
from aitrail.verify.envelope import CURRENT_VERSION, PAYLOAD_NAMES, STORED_FIELDS
from aitrail_collector.config import Limits
from aitrail_collector.errors import StoreError
from aitrail_collector.store.client import NO_JIT_CLAUSE, Store
from aitrail_collector.store.schema import DB, ENVELOPE_COLUMNS, PAYLOAD_COLUMNS
from aitrail_collector.store.verify_sql import canonical_expr

# The group's work tables are temporary (Memory) tables of the committing thread's
# session: their rows never reach the disk, and no metadata is written for them.
# The committed wire schema (a link to proto/aitrail/v1/audit.proto, shipped as package
# data): the engine reads the requests with it.
PROTO_FILE = str(resources.files("aitrail_collector") / "audit.proto")

_LEAF_PREFIX = b"\x00"  # RFC 6962 leaf (aitrail.verify.hashes.leaf_hash)
_ALL_PARTS: tuple[Part, ...] = PARTS + (event_types.ERROR_PART,)
_SCALAR_TYPES = {Value.TEXT: "String", Value.UINT: "UInt64", Value.BOOL: "UInt8",
                 Value.OPTIONAL_F64: "Nullable(Float64)", Value.MAP: "Map(String, String)"}


def _col(part: str, f: PartField) -> str:
    return f"`{part}.{f.path}`"


def _lp(part: str, f: PartField, leaf: str) -> str:
    return f"`{part}.{f.path}.{leaf}`"


def input_columns() -> list[tuple[str, str]]:
    """(name, type) of the columns read from the wire: the record's own fields and
    every part's, nested ones by their dotted path."""
    cols = [(name, "String") for name, _ in event_types.RECORD_COLUMNS
            if name not in ("start_time_unix_nano", "end_time_unix_nano")]
    cols += [("start_time_unix_nano", "UInt64"), ("end_time_unix_nano", "UInt64"),
             ("attributes", "Map(String, String)")]
    for part in _ALL_PARTS:
        for f in part.fields:
            if f.value is Value.LOGPROBS:
                cols += [(f"{part.name}.{f.path}.token", "Array(String)"),
                         (f"{part.name}.{f.path}.logprob", "Array(Float64)")]
            else:
                cols.append((f"{part.name}.{f.path}", _SCALAR_TYPES[f.value]))
    return cols


def input_structure() -> str:
    return ", ".join(f"`{name}` {kind}" for name, kind in input_columns())


def _types_of(part: Part) -> tuple[str, ...]:
    """The event types whose part is ``part`` (the error part: every type)."""
    if part is event_types.ERROR_PART:
        return ()
    return tuple(t.name for t in event_types.EVENT_TYPES if t.part == part.name)


def _layouts() -> list[tuple[tuple[str, ...], Part, PartField]]:
    """(event types, part, field) for every field of every part. The redaction layout
    (data_access.purpose sealed as erase_reason) is left out: redactions are made by
    the collector only, so a client's is refused and never stored by this lane."""
    return [(_types_of(part), part, f) for part in _ALL_PARTS for f in part.fields]


def _for_types(types: tuple[str, ...], expr: str, zero: str) -> str:
    if not types:
        return expr
    names = ", ".join(f"'{t}'" for t in types)
    return f"if(event_type IN ({names}), {expr}, {zero})"


def _zero_sql(kind: str) -> str:
    return {"str": "''", "lstr": "''", "u64": "toUInt64(0)", "map": "map()",
            "f64?": "CAST(NULL, 'Nullable(Float64)')",
            "time": "toDateTime64(0, 9, 'UTC')"}[kind]


def _envelope_exprs() -> dict[str, str]:
    """Envelope column -> SQL over the input columns (split_record, in SQL)."""
    exprs = {
        "chain_id": "{chain:String}",
        "start_time": "fromUnixTimestamp64Nano(toInt64(start_time_unix_nano), 'UTC')",
        "end_time": ("fromUnixTimestamp64Nano(toInt64(if(end_time_unix_nano = 0,"
                     " start_time_unix_nano, end_time_unix_nano)), 'UTC')"),
        "received_time": "fromUnixTimestamp64Nano({received:Int64}, 'UTC')",
        "principal_kind": "{kinds:Array(String)}[call]",  # see stage()
        "principal_id": "{ids:Array(String)}[call]",
        "attributes": "attributes",
        "commitments": "map()",  # filled by seal, once the payloads are final
    }
    for proto, column in event_types.RECORD_COLUMNS:
        exprs.setdefault(column, proto)
    kinds = {f.name: f.kind for f in STORED_FIELDS}
    # A column two parts share (response_id: model_call's and evaluation's) takes the
    # value of the part the record's type carries.
    sources: dict[str, list[tuple[tuple[str, ...], str]]] = {}
    for types, part, f in _layouts():
        if f.column and f.column not in exprs:
            value = _col(part.name, f)
            if f.value is Value.BOOL:
                value = f"toUInt64({value})"
            sources.setdefault(f.column, []).append((types, value))
    for column, found in sources.items():
        expr = _zero_sql(kinds[column])
        for types, value in reversed(found):
            expr = _for_types(types, value, expr)
        exprs[column] = expr
    for f in STORED_FIELDS:  # v1's free-text columns: empty in a later version's row
        exprs.setdefault(f.name, _zero_sql(f.kind))
    return exprs


def _payload_exprs() -> dict[str, str]:
    """Payload name -> its text in SQL ('' when the record has none). The logprobs
    payload is JSON rendered by the reference (``event_types._logprobs_json``): Python's
    float and string spelling is not the engine's, so the ledger renders it for the
    records that carry logprobs and this column is filled in by ``seal``."""
    exprs: dict[str, str] = {}
    for types, part, f in _layouts():
        if f.payload and f.payload not in exprs and f.value is not Value.LOGPROBS:
            exprs[f.payload] = _for_types(types, _col(part.name, f), "''")
    return {name: exprs.get(name, "''") for name in PAYLOAD_NAMES}


# ------------------------------------------------------------------ the suspects

def _len(expr: str, limit: int) -> str:
    # Characters never outnumber bytes: count them only for the rare long value.
    return f"(length({expr}) > {int(limit)} AND lengthUTF8({expr}) > {int(limit)})"


def _map_bad(expr: str, limits: Limits, key_limit: int = 0) -> str:
    conds = [f"length({expr}) > {int(limits.max_attributes)}",
             f"arrayExists(v -> {_len('v', limits.max_attribute_chars)}, mapValues({expr}))"]
    if key_limit:
        conds.append(f"arrayExists(k -> {_len('k', key_limit)}, mapKeys({expr}))")
    return " OR ".join(conds)


def _carries(part: Part) -> str:
    """The part has a value that is not its default: what ``validate`` calls set."""
    conds = []
    for f in part.fields:
        c = _col(part.name, f)
        if f.value is Value.LOGPROBS:
            conds.append(f"notEmpty({_lp(part.name, f, 'token')})")
        elif f.value is Value.TEXT:
            conds.append(f"{c} != ''")
        elif f.value is Value.MAP:
            conds.append(f"notEmpty({c})")
        elif f.value is Value.OPTIONAL_F64:
            conds.append(f"isNotNull({c})")
        else:
            conds.append(f"{c} != 0")
    return " OR ".join(conds)


def _field_bad(part: Part, f: PartField, limits: Limits) -> list[str]:
    c = _col(part.name, f)
    out = []
    if f.limit is Limit.ATTRIBUTE:
        out.append(_map_bad(c, limits))
    elif f.limit is not None:
        out.append(_len(c, getattr(limits, f.limit.value)))
    if f.rule is Rule.UNIT_INTERVAL:
        out.append(f"(isNotNull({c}) AND NOT (isFinite(assumeNotNull({c}))"
                   f" AND assumeNotNull({c}) >= 0 AND assumeNotNull({c}) <= 1))")
    elif f.rule is Rule.FINITE:
        out.append(f"(isNotNull({c}) AND NOT isFinite(assumeNotNull({c})))")
    elif f.rule is Rule.LOGPROBS:
        lp = _lp(part.name, f, "logprob")
        out.append(f"length({lp}) > {int(limits.max_logprobs)}"
                   f" OR arrayExists(x -> NOT isFinite(x) OR x > 0, {lp})")
    elif f.rule is Rule.DECISION:
        decisions = ", ".join(f"'{d}'" for d in event_types.DECISIONS)
        modified = _col(part.name, part.by_key("modified_output"))
        out.append(f"{c} NOT IN ({decisions}) OR ({c} = 'modify' AND {modified} = '')")
    return out


def _part_bad(part: Part, limits: Limits) -> str:
    conds = [f"{_col(part.name, f)} = ''" for f in part.required]
    for f in part.fields:
        conds += _field_bad(part, f, limits)
    return " OR ".join(f"({c})" for c in conds) if conds else "0"


def _size_bound() -> str:
    """An upper bound of the record's serialized size: each string at most 16 bytes of
    tag and length beyond its content, each map entry and logprob at most 32, and every
    fixed-width field and part header together well under 512."""
    strings = [n for n, _ in event_types.RECORD_COLUMNS if not n.endswith("unix_nano")]
    maps, arrays = ["attributes"], []
    for part in _ALL_PARTS:
        for f in part.fields:
            if f.value is Value.TEXT:
                strings.append(_col(part.name, f))
            elif f.value is Value.MAP:
                maps.append(_col(part.name, f))
            elif f.value is Value.LOGPROBS:
                arrays.append(_lp(part.name, f, "token"))
    terms = [f"length({s})" for s in strings]
    terms += [f"arraySum(arrayMap((k, v) -> length(k) + length(v) + 32, mapKeys({m}),"
              f" mapValues({m})))" for m in maps]
    terms += [f"arraySum(arrayMap(t -> length(t) + 32, {a}))" for a in arrays]
    return " + ".join(terms) + f" + {16 * len(strings) + 512}"


def suspect_expr(limits: Limits, sizes: bool = True) -> str:
    """The suspect test; ``sizes``: with the record size bound (needed only when a call's
    request is itself larger than a record may be)."""
    conds = suspect_conditions(limits)
    return " OR ".join(f"({c})" for c in (conds if sizes else conds[1:]))


def suspect_conditions(limits: Limits) -> list[str]:
    """True for every record ``validate`` or the API key's scope would refuse (and a
    few more, which ``validate`` then clears): the order of the checks does not
    matter here, the reference gives the reason."""
    hex32, hex16 = "'^[0-9a-f]{32}$'", "'^[0-9a-f]{16}$'"
    uuid = "'^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$'"
    reserved = ", ".join(f"'{t}'" for t in event_types.RESERVED_TYPES)
    skew, age = int(limits.future_skew_s) * 10**9, int(limits.max_age_s) * 10**9
    conds = [
        f"({_size_bound()}) > {int(limits.max_record_bytes)}",  # first: see suspect_expr
        f"NOT match(record_id, {uuid})",
        "NOT match(event_type, '^[a-z][a-z0-9_.]{0,63}$')",
        f"event_type IN ({reserved})",
        _len("task_id", limits.max_id_chars), _len("request_id", limits.max_id_chars),
        f"trace_id != '' AND (NOT match(trace_id, {hex32}) OR trace_id = repeat('0', 32))",
        f"span_id != '' AND (NOT match(span_id, {hex16}) OR span_id = repeat('0', 16))",
        f"parent_span_id != '' AND (NOT match(parent_span_id, {hex16})"
        " OR parent_span_id = repeat('0', 16))",
        "span_id != '' AND trace_id = ''",
        "start_time_unix_nano = 0",
        "end_time_unix_nano != 0 AND end_time_unix_nano < start_time_unix_nano",
        f"start_time_unix_nano > {{now:UInt64}} + {skew}",
        f"start_time_unix_nano + {age} < {{now:UInt64}}",
        f"end_time_unix_nano > {{now:UInt64}} + {skew}",
        "service = ''",
        # is_collector_service casefolds and strips: any non-ASCII or blank-padded
        # service goes to the reference, which decides.
        "NOT match(service, '^[!-~]+( [!-~]+)*$')",
        f"lowerUTF8(service) = '{event_types.COLLECTOR_SERVICE}'",
        _map_bad("attributes", limits, limits.max_name_chars),
    ]
    conds += [_len(n, limits.max_name_chars)
              for n in ("service", "service_version", "environment", "host", "sdk_version")]
    err = event_types.ERROR_PART
    conds += [c for f in err.fields for c in _field_bad(err, f, limits)]
    for part in PARTS:
        types = _types_of(part)
        names = ", ".join(f"'{t}'" for t in types)
        conds.append(f"event_type NOT IN ({names}) AND ({_carries(part)})")
        conds.append(f"event_type IN ({names}) AND ({_part_bad(part, limits)})")
    return conds


# The API key of each call: its service and its task scope (Sender.refuses). Only in a
# group where some call has them: a per-row lookup into per-call arrays is not free.
SCOPE_SUSPECT = (
    "({services:Array(String)}[call] != '' AND service != {services:Array(String)}[call])"
    " OR (notEmpty({scopes:Array(Array(String))}[call]) AND NOT arrayExists("
    "p -> startsWith(task_id, p), {scopes:Array(Array(String))}[call]))")


# ------------------------------------------------------------------ the statements

@dataclass(frozen=True)
class Call:
    """One caller's request in the group: how many records, and who sent it."""
    records: int
    principal_kind: str
    principal_id: str
    service: str = ""                  # the API key's service ('' any)
    task_prefixes: tuple[str, ...] = ()  # the API key's scope (() any)
    size: int = 2**63                  # the request's bytes (unknown: any size)


def _literal(text: str) -> str:
    """A SQL string literal (for a setting's value, which cannot be a parameter)."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _payload_col(name: str) -> str:
    return f"p_{name}"


class EngineIngest:
    """The statements of one ledger's engine lane. Used under the ledger's commit
    lock: the work tables are one group's at a time.

    Every statement runs without JIT compilation (store.client.NO_JIT_CLAUSE, in the
    statement itself: a settings argument costs the chDB driver seven more queries, a
    snapshot, a SET and a restore of each, about 10 ms a statement): the group's
    values (head seq, call sizes, the salt key) reach it as constants, so what one
    group compiles is unlikely to serve the next, and compiling cost more than it
    saved (bench_ingest --quick, alternating, three pairs under load: 14.1, 18.9,
    17.5k records/s without, 12.7, 17.6, 13.5k with; faster in each pair, but within
    noise)."""

    def __init__(self, store: Store, chain_id: str, limits: Limits, work_dir: str):
        if not store.embedded:
            raise ValueError("the engine lane runs on the embedded engine only")
        self.store = store
        self.chain_id = chain_id
        self.work_dir = work_dir
        self.records_dir = os.path.join(work_dir, "requests")
        os.makedirs(self.records_dir, mode=0o700, exist_ok=True)
        self.logprobs_path = os.path.join(work_dir, "logprobs.bin")
        self.chains_path = os.path.join(work_dir, "chains.bin")
        self.prevs_path = os.path.join(work_dir, "prevs.bin")
        self.ids_path = os.path.join(work_dir, "sealed-ids.bin")
        self.limits = limits
        self._suspect = suspect_expr(limits)
        self._suspect_small = suspect_expr(limits, sizes=False)
        self._structure = input_structure()
        # work table -> the engine session it was made in; weak, so a session whose
        # thread ended is closed, not kept open by this (chDB holds its directory while
        # any session is open)
        self._made: dict[str, weakref.ref] = {}

    def _file(self, path: str, fmt: str, structure: str) -> str:
        # Paths are the ledger's own temporary files, never client input.
        return f"file('{path}', '{fmt}', '{structure}')"

    def records_file(self, call: int) -> str:
        """Where the ledger puts call ``call``'s request (1, 2, ...), length-prefixed."""
        return os.path.join(self.records_dir, f"{call:06d}.bin")

    def stage(self, calls: Sequence[Call], now_ns: int, received_ns: int) -> None:
        """Decode and split the group's requests; flag the suspects.

        One file per call: the engine reads them in parallel, and a row's call is its
        file's number, its index within the call the file's row number. ``n``, the
        row's place in the group, is (call << 32) | index.
        """
        env = _envelope_exprs()
        if len({(c.principal_kind, c.principal_id) for c in calls}) == 1:
            # One sender (the usual group): constants, not a lookup per row.
            env["principal_kind"], env["principal_id"] = "{kind:String}", "{id:String}"
        # No record is larger than the request that carries it.
        large = any(c.size > self.limits.max_record_bytes for c in calls)
        suspect = self._suspect if large else self._suspect_small
        if any(c.service or c.task_prefixes for c in calls):
            suspect = f"{suspect} OR {SCOPE_SUSPECT}"
        payloads = _payload_exprs()
        cols = [f"{expr} AS {name}" for name, expr in env.items()]
        cols += [f"{expr} AS {_payload_col(name)}" for name, expr in payloads.items()]
        lp = event_types.PARTS_BY_NAME["model_call"].by_key("logprobs")
        cols.append(f"event_type = 'model_call' AND notEmpty({_lp('model_call', lp, 'token')})"
                    " AS has_logprobs")
        files = os.path.join(self.records_dir, "*.bin")
        sql = (f"SELECT n, call, {', '.join(cols)}, ({suspect}) AS suspect"
               " FROM (SELECT *, toUInt32(substring(CAST(_file AS String), 1, 6)) AS call,"
               " bitOr(bitShiftLeft(toUInt64(call), 32), _row_number) AS n"
               f" FROM {self._file(files, 'ProtobufList', self._structure)})"
               f"{NO_JIT_CLAUSE}, format_schema = {_literal(PROTO_FILE + ':AuditRecord')}")
        self._fill("stage", sql, {
            "chain": self.chain_id, "received": received_ns, "now": now_ns,
            "kinds": [c.principal_kind for c in calls], "ids": [c.principal_id for c in calls],
            "kind": calls[0].principal_kind, "id": calls[0].principal_id,
            "services": [c.service for c in calls],
            "scopes": [list(c.task_prefixes) for c in calls]})

    def flagged(self) -> list[tuple[int, bool, bool]]:
        """(row, suspect, has_logprobs) of the rows the reference must look at."""
        rows = self.store.query("SELECT n, suspect, has_logprobs FROM ingest_stage"
                                " WHERE suspect OR has_logprobs ORDER BY n").result_rows
        return [(int(n), bool(s), bool(h)) for n, s, h in rows]

    def seal(self, head_seq: int, cleared: Sequence[int], logprobs: bool,
             salt_key: bytes, in_flight: Optional[str] = None) -> bytes:
        """Choose and hash the records to store; returns their leaf hashes by seq.
        ``in_flight``: a file of record ids (``write_ids``) that count as stored."""
        names = list(PAYLOAD_NAMES)
        salt = {n: f"if({_payload_col(n)} = '', '', substring(SHA256(concat(unhex({{key:String}}),"
                   f" record_id, '{n}')), 1, 16))" for n in names}
        lp_col = _payload_col("logprobs")
        source = "ingest_stage"
        if logprobs:
            # n is never 0 (calls count from 1), so a row without logprobs matches no r.
            source = (f"(SELECT s.* REPLACE (if(lp.r = s.n, lp.t, '') AS {lp_col})"
                      f" FROM ingest_stage AS s LEFT JOIN"
                      f" {self._file(self.logprobs_path, 'RowBinary', 'r UInt64, t String')}"
                      " AS lp ON s.n = lp.r)")
        sealed_before = ""
        if in_flight is not None:
            sealed_before = (" AND record_id NOT IN (SELECT record_id FROM"
                             f" {self._file(in_flight, 'RowBinary', 'record_id String')})")
        chosen = (f"SELECT * FROM {source} WHERE (NOT suspect OR n IN {{cleared:Array(UInt64)}})"
                  f" AND record_id NOT IN (SELECT record_id FROM {DB}.envelopes WHERE record_id IN"
                  f" (SELECT record_id FROM ingest_stage)){sealed_before}"
                  " ORDER BY n LIMIT 1 BY record_id")
        salted = ", ".join(f"{salt[n]} AS s_{n}" for n in names)
        committed = ", ".join(
            f"if({_payload_col(n)} = '', '', lower(hex(SHA256(concat(s_{n},"
            f" {_payload_col(n)}))))) AS c_{n}" for n in names)
        commitments = ("mapFilter((k, v) -> v != '', map("
                       + ", ".join(f"'{n}', c_{n}" for n in names) + "))")
        self._fill(
            "sealed",
            f"SELECT *, {CURRENT_VERSION} AS envelope_version,"
            f" SHA256({canonical_expr(CURRENT_VERSION, _LEAF_PREFIX)}) AS leaf_hash"
            f" FROM (SELECT * REPLACE ({commitments} AS commitments) FROM"
            f" (SELECT *, {committed} FROM"
            f" (SELECT *, {salted} FROM"
            f" (SELECT *, {{head:UInt64}} + row_number() OVER (ORDER BY n) AS seq"
            f" FROM ({chosen})))))" + NO_JIT_CLAUSE,
            {"head": head_seq, "cleared": list(cleared), "key": salt_key.hex()})
        return self.store.client.raw_query(
            "SELECT leaf_hash FROM ingest_sealed ORDER BY seq FORMAT RowBinary")

    def write_ids(self) -> None:
        """The record ids of the last ``seal``, to ``ids_path`` (RowBinary): the next
        group is sealed while this one is stored, and must take them as stored."""
        ids = self.store.client.raw_query("SELECT record_id FROM ingest_sealed FORMAT RowBinary")
        with open(self.ids_path, "wb") as fh:
            fh.write(ids)

    def outcome(self) -> dict[int, int]:
        """Records sealed per call (1, 2, ...) by the last ``seal``."""
        rows = self.store.query("SELECT call, count() FROM ingest_sealed GROUP BY call")
        return {int(c): int(k) for c, k in rows.result_rows}

    def store_sealed(self, head_seq: int) -> None:
        """Payloads, then envelopes, with the chain hashes in ``chains_path`` (and the
        previous ones in ``prevs_path``), both by seq from ``head_seq + 1``."""
        tuples = ", ".join(f"('{n}', s_{n}, {_payload_col(n)}, c_{n})" for n in PAYLOAD_NAMES)
        c = self.store.client
        c.command(f"INSERT INTO {DB}.payloads ({', '.join(PAYLOAD_COLUMNS)})"
                  " SELECT chain_id, record_id, p.1, start_time, lower(hex(p.2)), p.3, p.4"
                  f" FROM ingest_sealed ARRAY JOIN arrayFilter(t -> t.3 != '', [{tuples}]) AS p"
                  + NO_JIT_CLAUSE)
        hashes = (f"SELECT {{head:UInt64}} + 1 + _row_number AS hs, h FROM"
                  f" {self._file('{path}', 'RowBinary', 'h FixedString(32)')}")
        cols = [c_ for c_ in ENVELOPE_COLUMNS if c_ not in ("prev_hash", "chain_hash")]
        picked = ", ".join("s." + x for x in cols)
        c.command(f"INSERT INTO {DB}.envelopes ({', '.join(cols)}, prev_hash, chain_hash)"
                  f" SELECT {picked}, p.h, k.h FROM ingest_sealed AS s"
                  f" JOIN ({hashes.replace('{path}', self.chains_path)}) AS k ON s.seq = k.hs"
                  f" JOIN ({hashes.replace('{path}', self.prevs_path)}) AS p ON s.seq = p.hs"
                  + NO_JIT_CLAUSE, parameters={"head": head_seq})
        # An INSERT ... SELECT that wrote fewer rows than it was given says nothing, so
        # count what landed before anything is acknowledged (the group's days only).
        landed = self.store.query(
            f"SELECT (SELECT count() FROM ingest_sealed), count() FROM {DB}.envelopes"
            " WHERE chain_id = {c:String} AND seq > {head:UInt64} AND start_time BETWEEN"
            f" (SELECT min(start_time) FROM ingest_sealed) AND"
            f" (SELECT max(start_time) FROM ingest_sealed)",
            {"c": self.chain_id, "head": head_seq}).result_rows[0]
        if landed[0] != landed[1]:
            raise StoreError(f"the store kept {landed[1]} of the {landed[0]} records of a "
                             "group (a retention TTL shorter than their age?); none was "
                             "acknowledged")

    def _fill(self, table: str, select: str, parameters: dict[str, Any]) -> None:
        """The group's rows into the work table ``ingest_<table>``, by INSERT ... SELECT.
        The table is made once per engine session, empty, from the same SELECT (its
        columns do not depend on the group): CREATE ... AS SELECT analyses its SELECT
        twice, once for the columns and once to run it, about 80 ms a statement on this
        machine's 2 cores, every group."""
        c = self.store.client
        name = f"ingest_{table}"
        if not self._made_in(table, c):
            # A Memory database cannot rename, so no CREATE OR REPLACE.
            c.command(f"DROP TEMPORARY TABLE IF EXISTS {name}")
            c.command(f"CREATE TEMPORARY TABLE {name} ENGINE = Memory EMPTY AS {select}",
                      parameters=parameters)
            self._made[table] = weakref.ref(c)
        c.command(f"INSERT INTO {name} {select}", parameters=parameters)

    def _made_in(self, table: str, client: Any) -> bool:
        made = self._made.get(table)
        return made is not None and made() is client

    def clear(self) -> None:
        """Empty the group's work tables and remove its files: they hold records'
        content (not the ids file, which the next group's seal may be reading;
        ``write_ids`` replaces it)."""
        c = self.store.client
        for table in ("stage", "sealed"):
            if self._made_in(table, c):
                c.command(f"TRUNCATE TABLE IF EXISTS ingest_{table}")
        try:
            paths = [os.path.join(self.records_dir, f) for f in os.listdir(self.records_dir)]
        except FileNotFoundError:  # swept (see EngineLane.seal)
            paths = []
        for path in paths + [self.logprobs_path, self.chains_path, self.prevs_path]:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
