"""``aitrail verify --data-dir`` on a generated store, against SHA-256 of its own bytes.

Target 2 of issue 12 is measured here: the command an auditor runs, in its own
process, on a store made by ``gen_store.py`` and signed by ``sign_store.py`` (hourly
checkpoints and an anchor, so every leaf, chain hash, payload and checkpoint is
checked). The baseline, in the same run: ``hashlib.sha256`` on one core over the
canonical bytes (0x00 || canonical envelope) of the store's first ``--sample``
records, encoded by the reference code.

    .venv/bin/python bench/bench_verify_store.py bench/out/store-10000000/data
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import subprocess
import time

from _common import VENV_BIN, machine_line, print_table

from aitrail.verify.envelope import canonical_bytes
from aitrail_collector.store.client import Store
from aitrail_collector.store.schema import DB, ENVELOPE_SELECT, split_row


def run_cli(data_dir: str) -> tuple[dict, float, float]:
    """The report, wall seconds and CPU seconds (all threads) of one verify run."""
    env = {k: v for k, v in os.environ.items() if k != "AITRAIL_VERIFY_REFERENCE"}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    out = subprocess.run([str(VENV_BIN / "aitrail"), "verify", "--data-dir", data_dir,
                          "--format", "json"], capture_output=True, env=env, check=False)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if out.returncode not in (0, 1):
        raise SystemExit(f"aitrail verify failed ({out.returncode}): {out.stderr.decode()}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return json.loads(out.stdout), wall, cpu


def baseline(data_dir: str, sample: int) -> tuple[float, int]:
    """hashlib.sha256 digests per second over the canonical bytes of ``sample`` rows."""
    store = Store(f"chdb://{data_dir}")
    # seq 1..sample by a filter, not the first rows of iter_chain: that asks the engine
    # to sort the whole chain by seq first.
    rows = store.query(f"SELECT {ENVELOPE_SELECT} FROM {DB}.envelopes WHERE chain_id ="
                       " {c:String} AND seq <= {n:UInt64} ORDER BY seq",
                       {"c": store.chains()[0], "n": sample}).result_rows
    canonical = [b"\x00" + canonical_bytes(split_row(row)[1]) for row in rows]
    store.close()
    sha = hashlib.sha256
    t0 = time.perf_counter()
    for data in canonical:
        sha(data).digest()
    return len(canonical) / (time.perf_counter() - t0), sum(map(len, canonical)) // len(canonical)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data_dir")
    ap.add_argument("--sample", type=int, default=200_000)
    args = ap.parse_args()
    print(f"bench_verify_store: {args.data_dir}; {machine_line()}", flush=True)
    report, wall, cpu = run_cli(args.data_dir)
    base, size = baseline(args.data_dir, args.sample)
    records = report["records"]
    cps = sum(c.get("checkpoints", {}).get("checkpoints", 0) for c in report["chains"])
    print(f"verify: ok={report['ok']}, {records:,} records, {cps} checkpoints, path "
          f"{report['path']}, {len(report['findings'])} findings; wall {wall:.1f} s, "
          f"CPU {cpu:.1f} s ({cpu / records * 1e6:.2f} µs per record)")
    rate = records / wall
    print_table("aitrail verify --data-dir", ("figure", "records/s", "ratio to baseline"),
                [("aitrail verify --data-dir (engine path, every checkpoint)", f"{rate:,.0f}",
                  f"{rate / base:.3f}x"),
                 (f"BASELINE hashlib.sha256 of the canonical bytes (avg {size} B, one core)",
                  f"{base:,.0f}", "1.000x")])


if __name__ == "__main__":
    main()
