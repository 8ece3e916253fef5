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

Latencies are p50 (p95) over random keys, each key's first execution ("first") and
an immediate repeat ("repeat": its data now in the page and mark caches).

    .venv/bin/python bench/bench_query.py                 # 10M store (~5 min)
    .venv/bin/python bench/bench_query.py --quick         # 1M store, 250k-row export
"""

from __future__ import annotations

import argparse
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
from aitrail_collector.store import export
from aitrail_collector.store import queries as query
from aitrail_collector.store.client import Store
from aitrail_collector.store.queries import Filters
from aitrail_collector.store.schema import DB, ENVELOPE_SELECT

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


# ---------------------------------------------------------------- query paths

def product_sql(filters: Filters, table: str = "envelopes", settings: str = "") -> tuple[str, dict]:
    """The product's SELECT (query._select), with only the table name swapped."""
    sql, params = query._select(filters)
    if settings:  # the bench's settings instead of the product's own (query._settings)
        sql = sql.split(" SETTINGS ")[0]
    return sql.replace(f"{DB}.envelopes", f"{DB}.{table}") + settings, params


def override_sql(table: str = "envelopes") -> str:
    return (f"SELECT toDate(start_time) AS day,"
            " countIf(decision IN ('reject', 'modify')) AS overrides,"
            " countIf(decision IN ('approve', 'reject', 'modify')) AS decided,"
            " overrides / decided AS rate"
            f" FROM {DB}.{table}"
            " WHERE event_type = 'review' AND start_time >= fromUnixTimestamp64Nano({since:Int64})"
            " GROUP BY day ORDER BY day")


# ---------------------------------------------------------------- export baseline

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
    ap.add_argument("--variants", default="none", help=argparse.SUPPRESS)  # bench/run's old flag
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

    print_table("Figures (issue 6, target 4); latencies in ms, p50 (p95)",
                ("figure", "target", "measured", "baseline (same run)", "ratio", "verdict"),
                RESULTS)
    store.close()


if __name__ == "__main__":
    main()
