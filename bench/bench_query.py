"""Query latency and export throughput on a large sealed store (issue 6, target 4).

Runs on the cached store of ``bench/gen_store.py`` (made first if missing) and
measures the product's own code paths:

* task timeline          ``query.timeline(store, task)``                    target p50 <= 20 ms
* search by reviewer     ``query.search(store, Filters(reviewer=r, since=end-30d, limit=50))``
                                                                             target p50 <= 100 ms
* daily override rate    one GROUP BY over 90 days (the product's definition:
                         (reject + modify) / decided reviews)                target <= 500 ms
* CSV export             ``csv_lines(query.iter_records(store, Filters(since=..)))`` over
                         1M rows                                             target >= 200k rows/s

Every figure has a baseline measured in the same run (the same query with skip
indexes off, ``query.summary``, ClickHouse's own ``FORMAT CSV``).

``--variants`` then runs the same work against alternative tables built in the
same store from a copy of the store's own DDL (``SHOW CREATE TABLE``), with the
product's SQL (only the table name swapped) or the rewritten query named:

* ``env_month_lw`` -- one change: PARTITION BY month, plus lightweight projections
  (``SELECT _part_offset ORDER BY task_id`` / reviewer_id / escalation_from /
  escalation_to), which ClickHouse uses as exact secondary indexes.
* ``env_v2``  -- the candidate: monthly partitions, 1024-row granules and 16-64 KB
  compression blocks, no bloom filters on task_id / reviewer_id, the rows stored a
  second time by task (``PROJECTION p_task_full (SELECT * ORDER BY task_id, ...)``),
  lightweight projections for the three reviewer columns.
* ``env_v2t`` -- ``env_v2`` sorted by ``(start_time, seq)``: the export's ORDER BY
  then reads in order instead of sorting.
* ``pay_v2``  -- payloads with monthly partitions and 1024-row granules.
* ``people_v2`` -- what a materialized view would keep: every envelope that names a
  reviewer (reviewer_id, escalation_from or escalation_to), once per person, sorted
  by (person, start_time, seq). The reviewer search becomes one range read.
* query changes without a schema change: payloads read by primary key with the
  commitments the envelope query already returned (no join back to the envelopes);
  the reviewer OR split into three ordered branches; the CSV export rendered by
  ClickHouse (ISO times, formula-safe cells, payloads joined and checked against
  their commitments in SQL), byte-compared with ``csv_lines`` on a 100k-row slice.

Latencies are p50 (p95) over random keys, each key's first execution ("first") and
an immediate repeat ("repeat": its data now in the page and mark caches).

Variant tables are built once and kept in the cached store (``--rebuild`` drops
them); the product tables are never altered.

    .venv/bin/python bench/bench_query.py                 # 10M store, all variants (~12 min)
    .venv/bin/python bench/bench_query.py --quick         # 1M store, 250k-row export
    .venv/bin/python bench/bench_query.py --variants none # the product figures only
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import random
import re
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import gen_store
from _common import machine_line, percentile, print_table

from aitrail.record.csv_format import RESULT_COLUMNS, csv_lines
from aitrail.verify.envelope import PAYLOAD_NAMES
from aitrail.verify.hashes import commitment
from aitrail_collector.store import export
from aitrail_collector.store import queries as query
from aitrail_collector.store.client import Store
from aitrail_collector.store.export import cells as export_cells
from aitrail_collector.store.queries import Filters
from aitrail_collector.store.schema import DB, ENVELOPE_SELECT, FIELD_POSITION

DAY_NS = 86_400 * 10**9
RESULTS: list[tuple] = []   # (figure, target, measured, baseline, ratio, verdict)
NO_PROJ = " SETTINGS optimize_use_projections = 0, optimize_use_projection_filtering = 0"
NO_SKIP = " SETTINGS use_skip_indexes = 0"


def dt(ns: int) -> datetime:
    return datetime.fromtimestamp(ns / 1e9, timezone.utc)


def ms_stats(values: Sequence[float]) -> tuple[float, float]:
    s = sorted(values)
    return statistics.median(s), percentile(s, 95)


def timed(fn: Callable[[Any], Any], keys: Sequence[Any], warm: int = 2
          ) -> tuple[list[float], list[float]]:
    """Milliseconds per call of fn(key): each key's first execution, then its repeat.
    `warm` extra keys run first, untimed (connection, imports, the table's marks)."""
    for k in keys[-warm:]:
        fn(k)
    first, repeat = [], []
    for k in keys[:len(keys) - warm] if warm else keys:
        t0 = time.perf_counter()
        fn(k)
        first.append((time.perf_counter() - t0) * 1000)
        t0 = time.perf_counter()
        fn(k)
        repeat.append((time.perf_counter() - t0) * 1000)
    return first, repeat


def fmt_ms(values: Sequence[float]) -> str:
    p50, p95 = ms_stats(values)
    return f"{p50:.1f} ({p95:.1f})"


def fmt_fr(t: tuple[list[float], list[float]]) -> str:
    return f"first {fmt_ms(t[0])}, repeat {fmt_ms(t[1])} ms"


def granules(store: Store, sql: str, params: dict) -> str:
    """What EXPLAIN indexes = 1 says each MergeTree read selects: parts and granules
    (of the table's total), and which projection index, if any, was applied."""
    text = "\n".join(r[0] for r in store.query("EXPLAIN indexes = 1 " + sql, params).result_rows)
    out = []
    for block in re.split(r"ReadFromMergeTree ", text)[1:]:
        table = block.split(")", 1)[0].lstrip("(")
        sel = re.search(r"Parts: (\d+) \| Granules: (\d+)", block)
        total = re.search(r"Granules: \d+/(\d+)", block)
        proj = sorted(set(re.findall(r"Name: (p_\w+)", block)))
        if sel:
            out.append(f"{table}: {sel.group(1)} parts, {sel.group(2)}/"
                       f"{total.group(1) if total else '?'} granules"
                       + (f" via {'+'.join(proj)}" if proj else ""))
    return "; ".join(out) or "?"


# ---------------------------------------------------------------- variants

SMALL_GRANULES = ("index_granularity = 1024, min_compress_block_size = 16384,"
                  " max_compress_block_size = 65536")
LW_TASK = "PROJECTION p_task (SELECT _part_offset ORDER BY task_id)"
LW_PEOPLE = ("PROJECTION p_rev (SELECT _part_offset ORDER BY reviewer_id), "
             "PROJECTION p_from (SELECT _part_offset ORDER BY escalation_from), "
             "PROJECTION p_to (SELECT _part_offset ORDER BY escalation_to)")
FULL_TASK = "PROJECTION p_task_full (SELECT * ORDER BY task_id, start_time, seq)"
# name: (source table, variant_ddl keyword arguments)
VARIANTS: dict[str, tuple[str, dict]] = {
    # one change at a time: monthly partitions + lightweight projections as indexes
    "env_month_lw": ("envelopes", {"partition": "toYYYYMM(start_time)",
                                       "projections": f"{LW_TASK}, {LW_PEOPLE}"}),
    # the candidate: monthly, small granules, no bloom filters on task/reviewer, the
    # rows also stored by task (full projection), lightweight indexes for people
    "env_v2": ("envelopes", {"partition": "toYYYYMM(start_time)",
                                 "projections": f"{FULL_TASK}, {LW_PEOPLE}",
                                 "drop_indexes": ("idx_task_id", "idx_reviewer_id"),
                                 "settings": SMALL_GRANULES}),
    # the same, sorted by time: the export's ORDER BY start_time, seq reads in order
    "env_v2t": ("envelopes", {"partition": "toYYYYMM(start_time)",
                                  "projections": f"{FULL_TASK}, {LW_PEOPLE}",
                                  "drop_indexes": ("idx_task_id", "idx_reviewer_id"),
                                  "order_by": "(start_time, seq)", "settings": SMALL_GRANULES}),
    "pay_v2": ("payloads", {"partition": "toYYYYMM(start_time)", "settings": SMALL_GRANULES}),
    # a materialized view's target: one row per (envelope, person named in it)
    "people_v2": ("envelopes", {"partition": "toYYYYMM(start_time)", "drop_indexes": ("*",),
                                    "order_by": "(person, start_time, seq)",
                                    "settings": SMALL_GRANULES}),
}
PERSON = ("arrayDistinct(arrayFilter(x -> x != '',"
          " [reviewer_id, escalation_from, escalation_to])) AS person")


def variant_ddl(store: Store, source: str, name: str, partition: str | None = None,
                projections: str = "", drop_indexes: Sequence[str] = (),
                order_by: str | None = None, settings: str = "") -> str:
    """A copy of the store's own DDL for `source` (SHOW CREATE TABLE), renamed, with
    the given changes: partition key, projections added, skip indexes dropped ('*' for
    all), sorting key, table settings added or replaced."""
    ddl = store.query(f"SHOW CREATE TABLE {DB}.{source}").result_rows[0][0]
    new = ddl.replace(f"CREATE TABLE {DB}.{source}", f"CREATE TABLE IF NOT EXISTS {DB}.{name}", 1)
    assert new != ddl, ddl
    if partition:
        new, n = re.subn(r"PARTITION BY .*\n", f"PARTITION BY {partition}\n", new, count=1)
        assert n == 1, ddl
    if order_by:
        new, n = re.subn(r"ORDER BY .*\n", f"ORDER BY {order_by}\n", new, count=1)
        assert n == 1, ddl
    if drop_indexes:
        lines = [line for line in new.splitlines() if not (
            line.strip().startswith("INDEX ") and
            ("*" in drop_indexes or line.split()[1] in drop_indexes))]
        new = "\n".join(lines)
    head, sep, tail = new.rpartition("\n)\nENGINE")
    assert sep, ddl
    head = head.rstrip().rstrip(",")
    if projections:
        head = f"{head},\n    {projections}"
    new = head + sep + tail
    # The bench copies are never written by a collector: no per-insert fsync.
    new = new.replace("fsync_after_insert = 1, fsync_part_directory = 1, ", "")
    for item in filter(None, (x.strip() for x in settings.split(","))):
        key = item.split("=")[0].strip()
        if re.search(rf"\b{key} = [^,\n]+", new):
            new = re.sub(rf"\b{key} = [^,\n]+", item, new)
        else:
            new = new.rstrip() + f", {item}"
    return new


def build_variants(store: Store, names: Sequence[str], rebuild: bool) -> dict[str, float]:
    built = {}
    c = store.client
    n_env = store.query(f"SELECT count() FROM {DB}.envelopes").result_rows[0][0]
    n_pay = store.query(f"SELECT count() FROM {DB}.payloads").result_rows[0][0]
    for name in names:
        source, kwargs = VARIANTS[name]
        want = n_env if source == "envelopes" else n_pay
        ddl = variant_ddl(store, source, name, **kwargs)
        select = f"SELECT * FROM {DB}.{source}"
        if name == "people_v2":
            ddl = ddl.replace("(\n    `seq` UInt64,", "(\n    `person` String,\n    `seq` UInt64,", 1)
            assert "`person` String" in ddl, ddl
            select = f"SELECT person, * FROM {DB}.{source} ARRAY JOIN {PERSON}"
            want = store.query(f"SELECT sum(length({PERSON})) FROM {DB}.envelopes"
                               ).result_rows[0][0]
        exists = store.query("SELECT count() FROM system.tables WHERE database = {d:String}"
                             " AND name = {n:String}", {"d": DB, "n": name}).result_rows[0][0]
        if exists and not rebuild:
            have = store.query(f"SELECT count() FROM {DB}.{name}").result_rows[0][0]
            if have == want:
                continue
        t0 = time.perf_counter()
        c.command(f"DROP TABLE IF EXISTS {DB}.{name}")
        c.command(ddl)
        c.command(f"INSERT INTO {DB}.{name} {select}")
        c.command(f"OPTIMIZE TABLE {DB}.{name} FINAL")
        built[name] = time.perf_counter() - t0
        print(f"  built {name} ({want:,} rows) in {built[name]:.0f} s", flush=True)
    return built


# ---------------------------------------------------------------- query paths

def product_sql(filters: Filters, table: str = "envelopes", settings: str = "") -> tuple[str, dict]:
    """The product's SELECT (query._select), with only the table name swapped."""
    sql, params = query._select(filters)
    if settings:  # the bench's settings instead of the product's own (query._settings)
        sql = sql.split(" SETTINGS ")[0]
    return sql.replace(f"{DB}.envelopes", f"{DB}.{table}") + settings, params


def payloads_by_key(store: Store, records: list[dict], table: str = "payloads",
                    bounds: tuple[int, int] | None = None) -> None:
    """Proposed Store.payloads: the commitments are already in hand (from the envelope
    query), so read payload rows by primary key (chain_id, record_id) and check them in
    Python. Same answers as the product: a row whose commitment is not the sealed one is
    ignored (-> erased); a row whose content fails its commitment -> tampered.
    bounds: the records' (min, max) start_time in ns; the ledger writes a payload row
    with its envelope's start_time, so this prunes the payload partitions."""
    wanted: dict[str, list[str]] = {}
    for rec in records:
        if rec["_commitments"]:
            wanted.setdefault(rec["chain_id"], []).append(rec["record_id"])
    found: dict[str, dict[str, str | None]] = {}
    sealed = {rec["record_id"]: rec["_commitments"] for rec in records}
    for chain, ids in wanted.items():
        sql = (f"SELECT record_id, name, salt, content,"
               f" lower(hex(SHA256(concat(unhex(salt), content)))) FROM {DB}.{table}"
               " WHERE chain_id = {c:String} AND record_id IN {ids:Array(String)}")
        params: dict[str, Any] = {"c": chain, "ids": ids}
        if bounds:
            sql += (" AND start_time >= fromUnixTimestamp64Nano({lo:Int64})"
                    " AND start_time <= fromUnixTimestamp64Nano({hi:Int64})")
            params.update(lo=bounds[0], hi=bounds[1])
        rows = store.query(sql, params).result_rows
        for rid, name, salt, content, digest in rows:
            expected = sealed[rid].get(name)
            if expected is None or digest != expected:
                continue
            ok = commitment(bytes.fromhex(salt), content) == expected
            found.setdefault(rid, {})[name] = content if ok else None
    for rec in records:
        content = found.get(rec["record_id"], {})
        for name in PAYLOAD_NAMES:
            if name in rec["_commitments"]:
                value = content.get(name, query.ERASED)
                rec[name] = query.TAMPERED if value is None else value
            else:
                rec[name] = query._unsealed_value(rec, name)  # a v1 row's free text
        del rec["_commitments"]


_START = FIELD_POSITION["start_time"]


def to_records(rows: Sequence[Sequence[Any]]) -> tuple[list[dict], tuple[int, int] | None]:
    """query._row_to_record for each row, and the rows' start_time bounds (ns)."""
    times = [r[_START] for r in rows]
    return [query._row_to_record(r) for r in rows], (min(times), max(times)) if times else None


def search_variant(store: Store, filters: Filters, table: str, pay_table: str,
                   settings: str = "", prune: bool = True) -> list[dict]:
    sql, params = product_sql(filters, table, settings)
    records, bounds = to_records(store.query(sql, params).result_rows)
    payloads_by_key(store, records, pay_table, bounds if prune else None)
    return records


def reviewer_union_sql(filters: Filters, table: str) -> tuple[str, dict]:
    """The reviewer OR split into three branches (each can use its own index), merged."""
    base, params = query._select(Filters(since=filters.since, until=filters.until,
                                         limit=None, types=filters.types))
    params["reviewer"] = filters.reviewer
    params.update(limit=filters.limit, offset=filters.offset)
    cond = "AND" if " WHERE " in base else "WHERE"
    head, _, order = base.partition(" ORDER BY ")
    head = head.replace(f"{DB}.envelopes", f"{DB}.{table}")
    n = (filters.limit or 0) + filters.offset
    branches = [f"({head} {cond} {col} = {{reviewer:String}} ORDER BY {order} LIMIT {n})"
                for col in ("reviewer_id", "escalation_from", "escalation_to")]
    # LIMIT 1 BY: a row named by two branches (someone escalating to themselves) once.
    sql = (f"SELECT * FROM ({' UNION ALL '.join(branches)})"
           f" ORDER BY {order.replace('start_time', 'start_time_ns')}"
           " LIMIT 1 BY chain_id, seq LIMIT {limit:UInt64} OFFSET {offset:UInt64}")
    return sql, params


def override_sql(table: str = "envelopes") -> str:
    return (f"SELECT toDate(start_time) AS day,"
            " countIf(decision IN ('reject', 'modify')) AS overrides,"
            " countIf(decision IN ('approve', 'reject', 'modify')) AS decided,"
            " overrides / decided AS rate"
            f" FROM {DB}.{table}"
            " WHERE event_type = 'review' AND start_time >= fromUnixTimestamp64Nano({since:Int64})"
            " GROUP BY day ORDER BY day")


# ---------------------------------------------------------------- export in SQL

def export_sql(env: str, pay: str, one_line: bool) -> str:
    """The export rendered by ClickHouse. one_line: each row as one string, quoted as
    Python's csv module quotes (QUOTE_MINIMAL, CRLF), for a byte-for-byte comparison."""
    cells = export_cells()
    if one_line:
        quoted = [f"if(match(c{i}, '[,\"\\r\\n]'), concat('\"', replaceAll(c{i}, '\"', '\"\"'),"
                  f" '\"'), c{i})" for i in range(len(cells))]
        select = ", ".join(f"{c} AS c{i}" for i, c in enumerate(cells))
        outer = f"concat(arrayStringConcat([{', '.join(quoted)}], ','), '\\r\\n') AS line"
    else:
        select = ", ".join(f"{c} AS `{name}`" for c, name in zip(cells, RESULT_COLUMNS))
    # Payload rows carry their envelope's start_time (the ledger writes both), so the
    # payload side can be cut to the same time window.
    inner = (f"SELECT {select} FROM {DB}.{env} AS e LEFT JOIN"
             " (SELECT record_id, groupArray(concat(name, ':', commitment)) AS keys,"
             "   groupArray(content) AS contents,"
             "   groupArray(1) AS ok"
             f"  FROM {DB}.{pay} WHERE start_time >= fromUnixTimestamp64Nano({{since:Int64}})"
             "   AND start_time < fromUnixTimestamp64Nano({until:Int64})"
             "  GROUP BY record_id) AS p ON p.record_id = e.record_id"
             " WHERE e.start_time >= fromUnixTimestamp64Nano({since:Int64})"
             " AND e.start_time < fromUnixTimestamp64Nano({until:Int64})"
             " ORDER BY e.start_time, e.seq")
    return f"SELECT {outer} FROM ({inner})" if one_line else inner


def stream_csv(store: Store, sql: str, params: dict, header: bool = True) -> tuple[int, bytes]:
    """ClickHouse FORMAT CSV, streamed; returns (bytes, header + the first ~8 MB)."""
    total, first = 0, b""
    head = ",".join(RESULT_COLUMNS).encode() + b"\r\n" if header else b""
    total += len(head)
    stream = store.client.raw_stream(sql, parameters=params, fmt="CSV")
    try:
        while True:
            chunk = stream.read(1 << 20)
            if not chunk:
                break
            if len(first) < 8 << 20:
                first += chunk
            total += len(chunk)
    finally:
        stream.close()
    return total, head + first


def stream_lines(store: Store, sql: str, params: dict, sink: list | None = None) -> int:
    """The one_line export: header from Python, then ClickHouse's lines as they come."""
    total = len(next(csv_lines([])))
    with store.client.query_column_block_stream(sql, parameters=params) as blocks:
        for block in blocks:
            text = "".join(block[0])
            total += len(text)
            if sink is not None:
                sink.append(text)
    return total


# ---------------------------------------------------------------- the figures

def add(figure: str, target: str, measured: str, baseline: str, ratio: str, ok: bool | None):
    RESULTS.append((figure, target, measured, baseline, ratio,
                    "-" if ok is None else ("MET" if ok else "missed")))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=int, default=10_000_000)
    ap.add_argument("--quick", action="store_true", help="1M-record store, 250k-row export")
    ap.add_argument("--samples", type=int, default=50, help="random keys per latency figure")
    ap.add_argument("--base-samples", type=int, default=10, help="keys for slow baselines")
    ap.add_argument("--export-rows", type=int, default=None,
                    help="default 1M (--quick 250k); 0: no export figure")
    ap.add_argument("--variants", default="all",
                    help="'all', 'none' or a comma list of " + ", ".join(VARIANTS))
    ap.add_argument("--rebuild", action="store_true", help="rebuild the variant tables")
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--dup-ids", default="10000,100000",
                    help="batch sizes of the duplicate-check figure (comma list)")
    args = ap.parse_args()
    records = 1_000_000 if args.quick else args.records
    export_rows = (args.export_rows if args.export_rows is not None
                   else 250_000 if args.quick else 1_000_000)
    meta = gen_store.generate(records, 5_000, 90, 6, 100_000)
    store = Store(f"chdb://{gen_store.store_dir(records) / 'data'}")
    print(f"bench_query: {records:,}-record store ({meta['tasks']:,} tasks, "
          f"{meta['reviewers']:,} reviewers, {meta['days']} days, generated "
          f"{meta['generated_at']} at {meta['git']}); {machine_line()}", flush=True)
    ddl = store.query(f"SHOW CREATE TABLE {DB}.envelopes").result_rows[0][0]
    indexes = ", ".join(re.findall(r"INDEX (\w+)", ddl))
    print("  envelopes: " + " | ".join(re.findall(r"(PARTITION BY .*|ORDER BY .*)", ddl)) +
          f" | skip indexes: {indexes}")
    parts = store.query(f"SELECT table, count(), sum(rows) FROM system.parts WHERE active AND"
                        f" database = '{DB}' AND table IN ('envelopes', 'payloads')"
                        " GROUP BY table ORDER BY table").result_rows
    print("  active parts: " + ", ".join(f"{t} {p} parts / {r:,} rows" for t, p, r in parts))

    rng = random.Random(args.seed)
    end = meta["end_ns"]
    since30, since90 = dt(end - 30 * DAY_NS), end - 90 * DAY_NS
    # +2: timed() runs two extra keys untimed first
    tasks = [f"T-{k:08d}" for k in rng.sample(range(1, meta["tasks"] + 1), args.samples + 2)]
    reviewers = [f"rev-{k:05d}" for k in rng.sample(range(meta["reviewers"]), args.samples + 2)]
    nb = args.base_samples

    # ---- A. timeline
    n_events = [len(query.timeline(store, t)) for t in tasks[:5]]
    assert all(n_events), n_events
    tl = timed(lambda t: query.timeline(store, t), tasks)
    env_only = timed(lambda t: query.search(store, Filters(task=t, limit=None), payloads=False),
                     tasks)
    recs = {t: query.search(store, Filters(task=t, limit=None), payloads=False) for t in tasks}
    def read_payloads(t: str) -> None:
        by_chain: dict[str, list[str]] = {}
        for r in recs[t]:
            by_chain.setdefault(r["chain_id"], []).append(r["record_id"])
        for chain_id, ids in by_chain.items():
            store.payload_rows(chain_id, ids)
    pay_only = timed(read_payloads, tasks)
    noskip = timed(lambda t: store.query(*product_sql(Filters(task=t, limit=None),
                                                      settings=NO_SKIP)), tasks[:nb + 2])
    p50 = ms_stats(tl[0])[0]
    add("task timeline, query.timeline, p50 (p95)", "<= 20 ms", fmt_fr(tl),
        f"skip indexes off: {fmt_fr(noskip)}", f"{p50 / ms_stats(noskip[0])[0]:.2f}x",
        p50 <= 20)
    print(f"\nA. timeline: {statistics.mean(n_events):.1f} records/task; envelope SELECT "
          f"{fmt_fr(env_only)}; Store.payload_rows {fmt_fr(pay_only)}; reads "
          f"{granules(store, *product_sql(Filters(task=tasks[0], limit=None)))}", flush=True)

    # ---- B. search by reviewer, last 30 days, first page
    def rf(r: str) -> Filters:
        return Filters(reviewer=r, since=since30, limit=50)
    hits = [len(query.search(store, rf(r), payloads=False)) for r in reviewers[:5]]
    sr = timed(lambda r: query.search(store, rf(r)), reviewers)
    sr_env = timed(lambda r: query.search(store, rf(r), payloads=False), reviewers)
    sr_noskip = timed(lambda r: store.query(*product_sql(rf(r), settings=NO_SKIP)),
                      reviewers[:nb + 2])
    p50 = ms_stats(sr[0])[0]
    add("search by reviewer, 30 days, first 50, p50 (p95)", "<= 100 ms", fmt_fr(sr),
        f"skip indexes off: {fmt_fr(sr_noskip)}", f"{p50 / ms_stats(sr_noskip[0])[0]:.2f}x",
        p50 <= 100)
    print(f"B. reviewer search: {statistics.mean(hits):.0f} rows/page; envelope SELECT "
          f"{fmt_fr(sr_env)}; reads {granules(store, *product_sql(rf(reviewers[0])))}",
          flush=True)

    # ---- C. daily override rate over 90 days
    ov = timed(lambda _: store.query(override_sql(), {"since": since90}).result_rows, range(12))
    days = store.query(override_sql(), {"since": since90}).result_rows
    summ = timed(lambda _: query.summary(store), range(5), warm=1)
    p50 = ms_stats(ov[0])[0]
    add("daily override rate, 90 days, p50 (p95) of 10", "<= 500 ms", fmt_fr(ov),
        f"query.summary (one overall rate): {fmt_fr(summ)}",
        f"{p50 / ms_stats(summ[0])[0]:.2f}x", p50 <= 500)
    print(f"C. override rate: {len(days)} days, e.g. {days[len(days) // 2][0]}: "
          f"{days[len(days) // 2][3]:.3f}; reads "
          f"{granules(store, override_sql(), {'since': since90})}", flush=True)

    if args.export_rows == 0:
        print_table("Figures (issue 6, target 4); latencies in ms, p50 (p95)",
                    ("figure", "target", "measured", "baseline (same run)", "ratio", "verdict"),
                    RESULTS)
        return
    # ---- D. CSV export of the newest `export_rows` records
    since_ns = store.query(f"SELECT toUnixTimestamp64Nano(start_time) FROM {DB}.envelopes"
                           " ORDER BY start_time DESC LIMIT 1 OFFSET {n:UInt64}",
                           {"n": export_rows - 1}).result_rows[0][0]
    since_ns -= since_ns % 1000  # Filters.since is a datetime (microseconds)
    until_ns = end + 2 * DAY_NS
    ef = Filters(since=dt(since_ns), limit=None)
    n_export = query.count(store, ef)
    t0 = time.perf_counter()
    nbytes = sum(len(chunk) for chunk in export.export_csv(store, ef))
    sql_s = time.perf_counter() - t0
    sql_rate = n_export / sql_s
    params = {"since": since_ns, "until": until_ns}
    native_sql = (f"SELECT {ENVELOPE_SELECT} FROM {DB}.envelopes WHERE start_time >="
                  " fromUnixTimestamp64Nano({since:Int64}) ORDER BY start_time, seq")
    t0 = time.perf_counter()
    native_bytes, _ = stream_csv(store, native_sql, params, header=False)
    native_rate = n_export / (time.perf_counter() - t0)
    # The former product path (Python renders each row), on a ~10% slice: at a few
    # thousand rows/s the whole export would take minutes.
    sf = Filters(since=dt(since_ns), until=dt(since_ns + (end - since_ns) // 10), limit=None)
    n_slice = query.count(store, sf)
    t0 = time.perf_counter()
    sum(len(chunk) for chunk in csv_lines(query.iter_records(store, sf)))
    py_rate = n_slice / (time.perf_counter() - t0)
    add(f"CSV export, export.export_csv (rendered by ClickHouse), {n_export:,} rows",
        ">= 200,000 rows/s",
        f"{sql_rate:,.0f} rows/s ({nbytes / 1e6:,.0f} MB in {sql_s:.1f} s)",
        f"csv_lines(iter_records), {n_slice:,} rows: {py_rate:,.0f} rows/s",
        f"{sql_rate / py_rate:.1f}x", sql_rate >= 200_000)
    print(f"D. export: {n_export:,} rows since {dt(since_ns).isoformat()}; export_csv "
          f"{sql_s:.1f} s; ClickHouse FORMAT CSV of the envelope columns alone (no payloads,"
          f" no formatting) {native_rate:,.0f} rows/s, {native_bytes / 1e6:,.0f} MB",
          flush=True)

    # Where the product's export time goes (on a ~10% slice).
    sql, sp = query._select(sf)
    steps = {}
    t0 = time.perf_counter()
    rows = list(store.stream(sql, sp))
    steps["Store.stream"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    recs_ = [query._row_to_record(r) for r in rows]
    steps["_row_to_record"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    for i in range(0, len(recs_), 2000):
        query._attach_payloads(store, recs_[i:i + 2000])
    steps["_attach_payloads (per 2000)"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    sum(len(c) for c in csv_lines(recs_))
    steps["csv_lines"] = time.perf_counter() - t0
    print(f"   csv_lines(iter_records) on {n_slice:,} rows, µs/row: " + "; ".join(
        f"{k} {v / n_slice * 1e6:.1f}" for k, v in steps.items()), flush=True)
    del rows, recs_

    # ---- E. the ingest's duplicate check: Store.existing_ids of a batch of ids near now
    # (UUIDv7 made now, as an SDK makes them), 1% of them already stored (the newest).
    from aitrail.record.ids import uuid7
    stored = [r[0] for r in store.query(f"SELECT record_id FROM {DB}.envelopes ORDER BY"
                                        " start_time DESC LIMIT 1000").result_rows]
    dup_sql = f"SELECT record_id FROM {DB}.envelopes WHERE record_id IN {{ids:Array(String)}}"
    for n in (int(x) for x in args.dup_ids.split(",") if x):
        ids = [uuid7() for _ in range(n - n // 100)] + stored[:n // 100]
        random.Random(n).shuffle(ids)
        assert len(store.existing_ids(ids)) == n // 100
        runs = []
        for _ in range(5):
            t0 = time.perf_counter()
            store.existing_ids(ids)
            runs.append((time.perf_counter() - t0) * 1000)
        t0 = time.perf_counter()
        store.query(dup_sql + NO_PROJ, {"ids": ids})
        base = (time.perf_counter() - t0) * 1000
        p50 = statistics.median(runs)
        add(f"duplicate check, Store.existing_ids, {n:,} ids near now (1% stored), p50 of 5",
            "reported", f"{p50:.1f} ms", f"projections off: {base:.0f} ms",
            f"{p50 / base:.3f}x", None)
        print(f"E. existing_ids, {n:,} ids: {p50:.1f} ms (runs {', '.join(f'{x:.0f}' for x in runs)});"
              f" projections off {base:.0f} ms", flush=True)

    variants = ([] if args.variants == "none" else list(VARIANTS) if args.variants == "all"
                else [v.strip() for v in args.variants.split(",") if v.strip()])
    if variants:
        run_variants(store, args, variants, tasks, reviewers, rf, since90, since_ns, until_ns,
                     n_export, py_rate, sf)

    print_table("Figures (issue 6, target 4); latencies in ms, p50 (p95)",
                ("figure", "target", "measured", "baseline (same run)", "ratio", "verdict"),
                RESULTS)
    store.close()


def people_sql(filters: Filters) -> tuple[str, dict]:
    """The reviewer search as one range read of people_v2 (see VARIANTS)."""
    where, params = Filters(since=filters.since, until=filters.until, types=filters.types,
                            limit=None).where()
    params.update(reviewer=filters.reviewer, limit=filters.limit, offset=filters.offset)
    sql = (f"SELECT {ENVELOPE_SELECT} FROM {DB}.people_v2"
           f"{where + ' AND' if where else ' WHERE'} person = {{reviewer:String}}"
           " ORDER BY start_time ASC, seq ASC LIMIT 1 BY chain_id, seq"
           " LIMIT {limit:UInt64} OFFSET {offset:UInt64}")
    return sql, params


def search_people(store: Store, filters: Filters, pay_table: str) -> list[dict]:
    records, bounds = to_records(store.query(*people_sql(filters)).result_rows)
    payloads_by_key(store, records, pay_table, bounds)
    return records


def run_variants(store, args, variants, tasks, reviewers, rf, since90, since_ns, until_ns,
                 n_export, py_rate, sf) -> None:
    print("\nVariants: building (once; kept in the cached store) ...", flush=True)
    build_variants(store, variants, args.rebuild)
    have = set(variants)
    pay = "pay_v2" if "pay_v2" in have else "payloads"
    rows: list[tuple] = []

    def row(section, name, result, note=""):
        rows.append((section, name, fmt_fr(result) if isinstance(result, tuple) else result,
                     note))
        print(f"  {name}: {rows[-1][2]} {note}", flush=True)

    print("\nTimeline")
    tf = lambda t: Filters(task=t, limit=None)
    row("timeline", "product query.timeline (envelopes, Store.payloads)",
        timed(lambda t: query.timeline(store, t), tasks))
    row("timeline", "envelopes + payloads by primary key (query change only)",
        timed(lambda t: search_variant(store, tf(t), "envelopes", "payloads"), tasks))
    for t in ("env_month_lw", "env_v2", "env_v2t"):
        if t in have:
            row("timeline", f"{t} + {pay} by primary key",
                timed(lambda k, t=t: search_variant(store, tf(k), t, pay), tasks),
                granules(store, *product_sql(tf(tasks[0]), t)))

    print("\nReviewer search, 30 days, first 50")
    row("search", "product query.search (envelopes, Store.payloads)",
        timed(lambda r: query.search(store, rf(r)), reviewers))
    row("search", "envelopes, OR split into 3 ordered branches + payloads by key",
        timed(lambda r: search_by_union(store, rf(r), "envelopes", "payloads"), reviewers))
    for t in ("env_month_lw", "env_v2"):
        if t in have:
            row("search", f"{t}, product SQL + {pay} by primary key",
                timed(lambda r, t=t: search_variant(store, rf(r), t, pay), reviewers),
                granules(store, *product_sql(rf(reviewers[0]), t)))
            row("search", f"{t}, OR split + {pay} by primary key",
                timed(lambda r, t=t: search_by_union(store, rf(r), t, pay), reviewers))
    if "people_v2" in have:
        row("search", f"people_v2 (one range read) + {pay} by primary key",
            timed(lambda r: search_people(store, rf(r), pay), reviewers),
            granules(store, *people_sql(rf(reviewers[0]))))
    # The rewritten searches must give the product's answer.
    last = "env_v2" if "env_v2" in have else "envelopes"
    for r in reviewers[:10]:
        want = [x["record_id"] for x in query.search(store, rf(r), payloads=False)]
        assert want == [x["record_id"] for x in search_by_union(store, rf(r), last, pay)], r
        if "people_v2" in have:
            assert want == [x["record_id"] for x in search_people(store, rf(r), pay)], r
    print("  (checked: the OR split and people_v2 return query.search's records in its order,"
          " 10 reviewers)")

    print("\nDaily override rate, 90 days")
    for t in ("env_month_lw", "env_v2", "env_v2t"):
        if t in have:
            row("override", t, timed(lambda _, t=t: store.query(override_sql(t), {"since": since90}),
                                     range(12)))

    print("\nCSV export rendered by ClickHouse (same rows as the product export)")
    # Byte-for-byte check against csv_lines on the slice sf.
    want = "".join(csv_lines(query.iter_records(store, sf)))
    slice_params = {"since": query._ns(sf.since), "until": query._ns(sf.until)}
    sink: list[str] = []
    stream_lines(store, export_sql("envelopes", "payloads", True), slice_params, sink)
    got = next(csv_lines([])) + "".join(sink)
    same = got == want
    csv_got = stream_csv(store, export_sql("envelopes", "payloads", False), slice_params)
    want_rows = list(csv.reader(io.StringIO(want)))
    got_rows = list(csv.reader(io.StringIO(csv_got[1].decode("utf-8", "replace"))))
    n_cmp = min(len(want_rows), len(got_rows) - 1, 2000)  # the last row may be cut
    print(f"  one-line SQL export vs csv_lines on {len(want_rows) - 1:,} rows: "
          f"{'byte-identical' if same else 'DIFFERENT'} (sha256 "
          f"{hashlib.sha256(got.encode()).hexdigest()[:12]} / "
          f"{hashlib.sha256(want.encode()).hexdigest()[:12]}); FORMAT CSV variant parses to "
          f"the same cells: {got_rows[:n_cmp] == want_rows[:n_cmp]} (first {n_cmp - 1:,} rows)")
    if not same:
        for i, (a, b) in enumerate(zip(got.splitlines(), want.splitlines())):
            if a != b:
                print(f"   first difference, line {i}:\n    sql: {a[:300]}\n    py:  {b[:300]}")
                break
    params = {"since": since_ns, "until": until_ns}
    combos = [("envelopes", "payloads")]
    if "env_v2t" in have:
        combos.append(("env_v2t", pay))
    out = gen_store.OUT / "export-test.csv"
    for env, pt in combos:
        for label in ("FORMAT CSV, streamed", "byte-identical lines, streamed",
                      "FORMAT CSV INTO OUTFILE", "FORMAT Null (engine only)"):
            t0 = time.perf_counter()
            if label.startswith("FORMAT CSV, s"):
                size, _ = stream_csv(store, export_sql(env, pt, False), params)
            elif label.startswith("byte"):
                size = stream_lines(store, export_sql(env, pt, True), params)
            elif "OUTFILE" in label:
                out.unlink(missing_ok=True)
                store.client.command(export_sql(env, pt, False) + f" INTO OUTFILE '{out}'"
                                     " FORMAT CSV", parameters=params)
                size = out.stat().st_size
                out.unlink()
            else:
                store.client.command(export_sql(env, pt, False) + " FORMAT Null",
                                     parameters=params)
                size = 0
            secs = time.perf_counter() - t0
            rate = n_export / secs
            row("export", f"{env} + {pt}, {label}", f"{rate:,.0f} rows/s",
                f"{secs:.1f} s, {size / 1e6:,.0f} MB, {rate / py_rate:.1f}x csv_lines")
            if label in ("FORMAT CSV, streamed", "FORMAT CSV INTO OUTFILE"):
                add(f"CSV export rendered by ClickHouse: {env} + {pt}, {label}",
                    ">= 200,000 rows/s", f"{rate:,.0f} rows/s",
                    f"csv_lines(iter_records): {py_rate:,.0f} rows/s",
                    f"{rate / py_rate:.1f}x", rate >= 200_000)
    print_table("Variant experiments (latencies in ms: p50 (p95) of each key's first "
                "execution, then of its repeat)", ("figure", "variant", "measured", "note"),
                rows)


def search_by_union(store: Store, filters: Filters, table: str, pay_table: str) -> list[dict]:
    sql, params = reviewer_union_sql(filters, table)
    records, bounds = to_records(store.query(sql, params).result_rows)
    payloads_by_key(store, records, pay_table, bounds)
    return records


if __name__ == "__main__":
    main()
