"""CSV export throughput (issue 12, target 3: 1M rows >= 200,000 rows/s), both layouts.

Measures the product's path, ``export.export_csv(store, Filters(since=...), columns)``
(the engine renders every line; Python forwards its bytes), over the newest ``--rows``
records of a sealed store, for the compact and the full layout. The same-run baseline,
measured right before each layout: the engine's own ``FORMAT CSV`` of the same rows'
envelope columns, in the same order, streamed as raw bytes the same way (no payloads,
no formatting of ours). Besides wall time, the process's CPU seconds (the embedded
engine runs in it): on a shared machine they move less than the wall clock.

Then, on the same rows, where the export's engine time goes: the export's SQL with
``FORMAT Null`` (no bytes out), and without its sort, its payload join and its task
model join (each left out in turn; not the product, only the profile); and the fixed
cost of the product's windows: the same SQL over an empty span, times the number of
windows the product runs.

    .venv/bin/python bench/bench_export.py                     # the cached 1M store
    .venv/bin/python bench/bench_export.py --store DIR --rows 250000
    .venv/bin/python bench/bench_export.py --no-profile
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import gen_store
from _common import machine_line, print_table

from aitrail_collector.store import export
from aitrail_collector.store.client import Store
from aitrail_collector.store.queries import Filters, count
from aitrail_collector.store.schema import DB, ENVELOPE_SELECT

TARGET = 200_000


def cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def timed(chunks) -> tuple[float, float, int]:
    """(wall s, CPU s, bytes) of consuming an iterator of byte chunks."""
    t0, c0, n = time.perf_counter(), cpu_s(), 0
    for chunk in chunks:
        n += len(chunk)
    return time.perf_counter() - t0, cpu_s() - c0, n


def baseline(store: Store, f: Filters):
    where, params = f.where()
    sql = f"SELECT {ENVELOPE_SELECT} FROM {DB}.envelopes{where} ORDER BY start_time, seq"
    return timed(store.stream_raw(sql, params, "CSV"))


def engine_only(store: Store, sql: str, params: dict) -> tuple[float, float]:
    t0, c0 = time.perf_counter(), cpu_s()
    store.client.command(sql + " FORMAT Null", parameters=params)
    return time.perf_counter() - t0, cpu_s() - c0


def without(sql: str, part: str) -> str:
    """The export's SQL with one part left out (a profile, never the product)."""
    if part == "sort":
        return sql[:sql.rindex(" ORDER BY sort_key")]
    if part == "payload join":
        i = sql.index(" LEFT JOIN (SELECT record_id, groupArray")
        j = sql.index(" AS p ON p.record_id = e.record_id") + len(" AS p ON p.record_id = e.record_id")
        return (sql[:i] + " LEFT JOIN (SELECT '' AS record_id, [''] AS names, [''] AS keys,"
                " [''] AS cells) AS p ON p.record_id = e.record_id" + sql[j:])
    if part == "task model join":
        i = sql.index(" ASOF LEFT JOIN")
        j = sql.index("m.start_time <= e.start_time") + len("m.start_time <= e.start_time")
        return (sql[:i] + " LEFT JOIN (SELECT '' AS task_id, '' AS m_model, '' AS m_prompt)"
                " AS m ON m.task_id = e.task_id" + sql[j:])
    raise ValueError(part)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--store", help="a sealed store's directory (its data/ inside); "
                    "default: bench/gen_store.py's 1M store, made first if missing")
    ap.add_argument("--rows", type=int, default=1_000_000, help="the newest N records")
    ap.add_argument("--no-profile", action="store_true", help="skip the engine profile")
    args = ap.parse_args()
    if args.store:
        root = Path(args.store)
    else:
        gen_store.generate(1_000_000, 5_000, 90, 6, 100_000)
        root = gen_store.store_dir(1_000_000)
    store = Store(f"chdb://{root / 'data'}")
    since_ns = store.query(f"SELECT toUnixTimestamp64Nano(start_time) FROM {DB}.envelopes"
                           " ORDER BY start_time DESC LIMIT 1 OFFSET {n:UInt64}",
                           {"n": args.rows - 1}).result_rows
    since_ns = since_ns[0][0] - since_ns[0][0] % 1000 if since_ns else 0
    f = Filters(since=datetime.fromtimestamp(since_ns / 1e9, timezone.utc), limit=None)
    n = count(store, f)
    print(f"bench_export: {n:,} rows (the newest, since {f.since.isoformat()}) of {root}; "
          f"{machine_line()}", flush=True)

    rows = []
    for columns in ("compact", "full"):
        b_wall, b_cpu, b_bytes = baseline(store, f)
        wall, cpu, nbytes = timed(export.export_csv(store, f, columns))
        rate, b_rate = n / wall, n / b_wall
        rows.append((columns, f"{rate:,.0f}", f"{wall:.1f} s / {cpu:.1f} s",
                     f"{nbytes / 1e6:,.0f} MB", f"{b_rate:,.0f}",
                     f"{b_wall:.1f} s / {b_cpu:.1f} s", f"{rate / b_rate:.2f}x",
                     "MET" if rate >= TARGET else "missed"))
        print(f"  {columns}: export {rate:,.0f} rows/s, engine FORMAT CSV {b_rate:,.0f} rows/s,"
              f" {rate / b_rate:.2f}x", flush=True)
    print_table(f"CSV export of {n:,} rows (target >= {TARGET:,} rows/s); baseline: the "
                "engine's FORMAT CSV of the same rows' envelope columns, same order, "
                "streamed the same way, measured right before",
                ("layout", "rows/s", "wall / CPU", "bytes", "baseline rows/s",
                 "baseline wall / CPU", "ratio", "verdict"), rows)

    if not args.no_profile:
        prof = []
        empty = replace(f, since=datetime(2100, 1, 1, tzinfo=timezone.utc),
                        until=datetime(2100, 1, 2, tzinfo=timezone.utc))
        for columns in ("compact", "full"):
            sql, params = export.export_sql(f, columns)
            for name, q in (("export SQL, FORMAT Null", sql),
                            *((f"  without its {p}", without(sql, p))
                              for p in ("sort", "payload join", "task model join"))):
                wall, cpu = engine_only(store, q, params)
                prof.append((columns, name, f"{wall:.2f}", f"{cpu:.2f}",
                             f"{n / wall:,.0f}"))
            # The product runs one query per window; each pays the planning of its
            # cells and joins before it reads a row: the same SQL over a span that
            # holds no row measures that fixed cost alone.
            spans = len(export.windows(store, f))
            wall, cpu = min(engine_only(store, *export.export_sql(empty, columns))
                            for _ in range(3))
            prof.append((columns, f"  fixed cost per window (an empty one), x {spans}",
                         f"{wall * spans:.2f}", f"{cpu * spans:.2f}", ""))
        print_table("Where the engine's time goes (each part left out in turn)",
                    ("layout", "query", "wall s", "CPU s", "rows/s"), prof)
    store.close()


if __name__ == "__main__":
    main()
