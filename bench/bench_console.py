"""The console's search on a large store (issue 4: "a search of a store with millions
of records answers in well under a second"; issue 12: <= 100 ms for every preset).

Measures what the search page does on every request -- ``query.search`` of one page
(payload text, task models and hashes off, as the table shows none) plus its total
(``query.page_total``: ``query.count`` when the page is full) --
for the searches people run, on the generated store of bench_query.py. Baseline,
same run: the engine alone running the page's SELECT with FORMAT Null (no driver, no
Python), so the ratio shows what the product adds on top of ClickHouse.

    .venv/bin/python bench/bench_console.py            # 10M-record store
    .venv/bin/python bench/bench_console.py --quick    # 1M-record store
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import gen_store
from _common import machine_line, percentile, print_table

from aitrail_collector.store import queries as query
from aitrail_collector.store.client import Store
from aitrail_collector.store.queries import Filters
from aitrail_collector.store.schema import DB


def timed(fn, n: int) -> list[float]:
    fn()  # warm: connection, marks of the parts it reads
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1000)
    return sorted(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="1M-record store")
    ap.add_argument("--samples", type=int, default=15)
    ap.add_argument("--records", type=int, default=10_000_000)
    args = ap.parse_args()
    records = 1_000_000 if args.quick else args.records
    meta = gen_store.generate(records, 5_000, 90, 6, 100_000)
    store = Store(f"chdb://{gen_store.store_dir(records) / 'data'}")
    print(f"bench_console: {records:,}-record store; {machine_line()}", flush=True)
    end = store.query(f"SELECT max(start_time) FROM {DB}.envelopes").result_rows[0][0]
    rng = random.Random(3)
    cases = {
        "task id, all time": lambda: Filters(
            task=f"T-{rng.randint(1, meta['tasks']):08d}", limit=50, order="desc"),
        "reviewer, last 30 days": lambda: Filters(
            reviewer=f"rev-{rng.randint(0, meta['reviewers'] - 1):05d}",
            since=end - timedelta(days=30), limit=50, order="desc"),
        "reviews, last 7 days (the default page)": lambda: Filters(
            types=("review",), since=end - timedelta(days=7), limit=50, order="desc"),
        "everything, last 24 h (preset 24h)": lambda: Filters(
            since=end - timedelta(days=1), limit=50, order="desc"),
        "everything, last 7 days (preset 7d)": lambda: Filters(
            since=end - timedelta(days=7), limit=50, order="desc"),
        "everything, last 30 days (preset 30d)": lambda: Filters(
            since=end - timedelta(days=30), limit=50, order="desc"),
        "everything, all time (preset all)": lambda: Filters(limit=50, order="desc"),
        "reviews, all time": lambda: Filters(types=("review",), limit=50, order="desc"),
    }
    rows = []
    for name, make in cases.items():
        def page():
            f = make()
            # As the page does (console/pages.py): no payload text, task models or
            # hashes (the table shows none), count() only if the page is full.
            rows = query.search(store, f, payloads=False, task_models=False, hashes=False)
            query.page_total(store, f, rows)

        def engine_only():
            sql, params = query._select(make())
            store.client.raw_query(sql + " FORMAT Null", parameters=params)
        ms, base = timed(page, args.samples), timed(engine_only, args.samples)
        p50, b50 = statistics.median(ms), statistics.median(base)
        rows.append((name, "<= 100 ms", f"{p50:.1f} ms (p95 {percentile(ms, 95):.1f})",
                     f"{b50:.1f} ms", f"{p50 / b50:.1f}x", "MET" if p50 <= 100 else "missed"))
    print_table("Console search: one page + the total, p50 (p95)",
                ("search", "target", "measured", "engine alone, FORMAT Null", "ratio",
                 "verdict"), rows)
    store.close()


if __name__ == "__main__":
    main()
