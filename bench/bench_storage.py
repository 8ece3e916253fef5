"""Bytes on disk per record (issue 6, target 5), against gzip'd JSON lines of the same records.

On the cached store of ``bench/gen_store.py`` (made first if missing):

1. The store: ``system.parts.bytes_on_disk`` of the active parts of both product
   tables (envelopes + payloads) divided by the record count, whole store.
2. A sample of whole days (day partitions, >= ``--sample`` records): the same bytes
   for just those partitions, and BASELINE the same records written as JSON lines
   (one object per record: seq, envelope_version, every field its envelope version
   seals, the three hashes in hex, and each payload with its salt and content --
   everything the store holds) and compressed with gzip level 6. The raw JSON size is printed for context.
3. Where the bytes go: compressed and uncompressed size per column.
4. Variants on the sample's rows: the same tables with ``CODEC(ZSTD(3))`` on every
   column, and with the sample in one partition (what a monthly partition gives).

    .venv/bin/python bench/bench_storage.py            # 10M store
    .venv/bin/python bench/bench_storage.py --quick    # 1M store
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
import zlib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import gen_store
from _common import machine_line, print_table

from aitrail.verify.envelope import FIELD_NAMES
from aitrail_collector.store.client import Store
from aitrail_collector.store.schema import DB

TIME_FIELDS = ("start_time", "end_time", "received_time")


def parts_bytes(store: Store, table: str, partitions: list[str] | None = None) -> tuple[int, int, int]:
    """(bytes_on_disk, rows, parts) of a table's active parts, optionally some partitions."""
    sql = ("SELECT sum(bytes_on_disk), sum(rows), count() FROM system.parts WHERE active"
           " AND database = {d:String} AND table = {t:String}")
    params = {"d": DB, "t": table}
    if partitions is not None:
        sql += " AND partition IN {p:Array(String)}"
        params["p"] = partitions
    b, r, n = store.query(sql, params).result_rows[0]
    return int(b or 0), int(r or 0), int(n or 0)


def json_lines(store: Store, since_ns: int, until_ns: int):
    """Every record of the window as one JSON object per line (bytes), in seq order."""
    fields = ", ".join(f"toUnixTimestamp64Nano({f}) AS {f}_ns" if f in TIME_FIELDS else f
                       for f in FIELD_NAMES)
    window = ("start_time >= fromUnixTimestamp64Nano({s:Int64})"
              " AND start_time < fromUnixTimestamp64Nano({u:Int64})")
    params = {"s": since_ns, "u": until_ns}
    payloads: dict[str, dict] = {}
    for rid, name, salt, content in store.stream(
            f"SELECT record_id, name, salt, content FROM {DB}.payloads WHERE {window}", params):
        payloads.setdefault(rid, {})[name] = {"salt": salt, "content": content}
    sql = (f"SELECT seq, envelope_version, {fields}, lower(hex(prev_hash)), lower(hex(leaf_hash)),"
           f" lower(hex(chain_hash)) FROM {DB}.envelopes WHERE {window} ORDER BY seq")
    dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
    n = len(FIELD_NAMES)
    for row in store.stream(sql, params):
        rec = {"seq": row[0], "envelope_version": row[1]}
        rec.update(zip(FIELD_NAMES, row[2:2 + n]))
        rec["prev_hash"], rec["leaf_hash"], rec["chain_hash"] = row[2 + n:]
        rec["payloads"] = payloads.get(rec["record_id"], {})
        yield (dumps(rec) + "\n").encode()


def with_codec(ddl: str, codec: str) -> str:
    """Add CODEC(...) to every column line of a SHOW CREATE TABLE text."""
    out = []
    for line in ddl.splitlines():
        m = re.match(r"^(\s+`\w+` [^,]+?)(,?)$", line)
        if m and not any(w in line for w in ("INDEX", "PROJECTION", "CODEC", "EPHEMERAL")):
            line = f"{m.group(1)} CODEC({codec}){m.group(2)}"
        out.append(line)
    return "\n".join(out)


def copy_sample(store: Store, source: str, name: str, codec: str | None, one_partition: bool,
                since_ns: int, until_ns: int) -> tuple[int, int, int]:
    ddl = store.query(f"SHOW CREATE TABLE {DB}.{source}").result_rows[0][0]
    ddl = ddl.replace(f"CREATE TABLE {DB}.{source}", f"CREATE TABLE {DB}.{name}", 1)
    if codec:
        ddl = with_codec(ddl, codec)
    if one_partition:
        ddl = re.sub(r"PARTITION BY .*\n", "PARTITION BY toYYYYMM(start_time)\n", ddl, count=1)
    ddl = ddl.replace("fsync_after_insert = 1, fsync_part_directory = 1, ", "")
    c = store.client
    c.command(f"DROP TABLE IF EXISTS {DB}.{name}")
    c.command(ddl)
    c.command(f"INSERT INTO {DB}.{name} SELECT * FROM {DB}.{source} WHERE start_time >="
              f" fromUnixTimestamp64Nano({since_ns}) AND start_time < fromUnixTimestamp64Nano({until_ns})")
    c.command(f"OPTIMIZE TABLE {DB}.{name} FINAL")
    result = parts_bytes(store, name)
    c.command(f"DROP TABLE {DB}.{name}")
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=int, default=10_000_000)
    ap.add_argument("--quick", action="store_true", help="1M-record store")
    ap.add_argument("--sample", type=int, default=300_000, help="records in the JSON sample")
    ap.add_argument("--no-variants", action="store_true",
                    help="skip the ZSTD / one-partition copies of the sample (section 4)")
    args = ap.parse_args()
    records = 1_000_000 if args.quick else args.records
    meta = gen_store.generate(records, 5_000, 90, 6, 100_000)
    store = Store(f"chdb://{gen_store.store_dir(records) / 'data'}")
    print(f"bench_storage: {records:,}-record store (generated {meta['generated_at']} at "
          f"{meta['git']}); {machine_line()}", flush=True)

    # 1. whole store
    env_b, env_r, env_p = parts_bytes(store, "envelopes")
    pay_b, _pay_r, pay_p = parts_bytes(store, "payloads")
    assert env_r == records, env_r
    whole = (env_b + pay_b) / env_r
    # Lookup projections are reported apart (issue 12: at most +30%); bytes_on_disk of
    # a part includes its projections, so they are subtracted from the table figures.
    proj = store.query("SELECT name, sum(bytes_on_disk) FROM system.projection_parts WHERE"
                       " active AND database = {d:String} AND table = 'envelopes'"
                       " GROUP BY name ORDER BY name", {"d": DB}).result_rows
    proj_b = sum(int(b) for _, b in proj)
    env_b -= proj_b
    whole = (env_b + pay_b) / env_r
    # The people table (schema.people_ddl: reviewer searches), reported apart too.
    ppl_b, ppl_r, ppl_p = parts_bytes(store, "people")
    # The count tables (schema.COUNT_TABLES: task -> days, per-day type counts), too.
    counts = {name: parts_bytes(store, name) for name in ("task_days", "type_counts")}
    cnt_b = sum(b for b, _, _ in counts.values())

    # 2. a sample of whole days from the middle of the range
    days = store.query("SELECT partition, sum(rows) FROM system.parts WHERE active AND"
                       " database = {d:String} AND table = 'envelopes' GROUP BY partition"
                       " ORDER BY partition", {"d": DB}).result_rows
    mid = len(days) // 2
    picked, n = [], 0
    for part, rows in days[mid:] + days[:mid]:
        picked.append(part)
        n += rows
        if n >= args.sample:
            break
    picked.sort()
    bounds = store.query("SELECT toUnixTimestamp64Nano(toDateTime64(toDate({a:String}), 9, 'UTC')),"
                         " toUnixTimestamp64Nano(toDateTime64(toDate({b:String}) + 1, 9, 'UTC'))",
                         {"a": picked[0], "b": picked[-1]}).result_rows[0]
    since_ns, until_ns = int(bounds[0]), int(bounds[1])
    contiguous = len(picked) == (until_ns - since_ns) // (86_400 * 10**9)
    assert contiguous, picked
    s_env_b, s_env_r, _ = parts_bytes(store, "envelopes", picked)
    s_proj_b = int(store.query("SELECT sum(bytes_on_disk) FROM system.projection_parts WHERE"
                               " active AND database = {d:String} AND table = 'envelopes'"
                               " AND partition IN {p:Array(String)}",
                               {"d": DB, "p": picked}).result_rows[0][0] or 0)
    s_env_b -= s_proj_b
    s_pay_b, _, _ = parts_bytes(store, "payloads", picked)
    t0 = time.perf_counter()
    raw = gz = count = 0
    z = zlib.compressobj(6, zlib.DEFLATED, 31)  # gzip format, level 6, one stream
    buf: list[bytes] = []
    size = 0
    for line in json_lines(store, since_ns, until_ns):
        count += 1
        raw += len(line)
        buf.append(line)
        size += len(line)
        if size >= 4 << 20:
            gz += len(z.compress(b"".join(buf)))
            buf, size = [], 0
    gz += len(z.compress(b"".join(buf))) + len(z.flush())
    json_s = time.perf_counter() - t0
    assert count == s_env_r, (count, s_env_r)
    sample_ch = (s_env_b + s_pay_b) / count
    print(f"  sample: {len(picked)} day partitions {picked[0]}..{picked[-1]}, {count:,} records;"
          f" JSON lines built and gzipped in {json_s:.0f} s", flush=True)

    rows = [
        ("store, whole: envelopes + payloads bytes_on_disk / record",
         f"{whole:,.0f}", (f"{env_b / 1e6:,.0f} MB + {pay_b / 1e6:,.0f} MB, {env_p} + {pay_p} parts,"
         f" {env_r:,} records")),
        ("store, sample days: same", f"{sample_ch:,.0f}",
         f"envelopes {s_env_b / count:,.0f} + payloads {s_pay_b / count:,.0f}"),
        ("lookup projections (reported apart), whole store", f"{proj_b / env_r:,.1f}",
         ", ".join(f"{n} {int(b) / env_r:,.1f}" for n, b in proj) +
         f"; {proj_b / (env_b + pay_b):.1%} of the tables"),
        ("people table (reported apart), whole store", f"{ppl_b / env_r:,.1f}",
         f"{ppl_r:,} rows in {ppl_p} parts; {ppl_b / (env_b + pay_b):.1%} of the tables;"
         f" with the projections {(proj_b + ppl_b) / (env_b + pay_b):.1%}"),
        ("count tables (reported apart), whole store", f"{cnt_b / env_r:,.2f}",
         "; ".join(f"{n} {r:,} rows in {p} parts, {b / 1e6:,.2f} MB" for n, (b, r, p)
                   in counts.items()) + f"; {cnt_b / (env_b + pay_b):.2%} of the tables;"
         f" all derived {(proj_b + ppl_b + cnt_b) / (env_b + pay_b):.1%}"),
        ("BASELINE JSON lines, gzip -6, sample days", f"{gz / count:,.0f}",
         f"{gz / 1e6:,.1f} MB for {count:,} records"),
        ("JSON lines, uncompressed, sample days", f"{raw / count:,.0f}", ""),
    ]

    # 3. where the bytes go
    # system.columns (system.parts_columns reports 0 bytes for these parts on chDB).
    cols = store.query(
        "SELECT table, name, data_compressed_bytes, data_uncompressed_bytes FROM system.columns"
        " WHERE database = {d:String} AND table IN ('envelopes', 'payloads')"
        " AND data_compressed_bytes > 0 ORDER BY data_compressed_bytes DESC",
        {"d": DB}).result_rows
    col_rows = [(f"{t}.{c}", f"{cb / env_r:,.1f}", f"{ub / env_r:,.1f}",
                 f"{ub / cb if cb else 0:,.1f}x") for t, c, cb, ub in cols]
    idx = store.query("SELECT table, sum(secondary_indices_compressed_bytes),"
                      " sum(primary_key_bytes_in_memory), sum(marks_bytes) FROM system.parts"
                      " WHERE active AND database = {d:String} AND table IN ('envelopes',"
                      " 'payloads') GROUP BY table ORDER BY table", {"d": DB}).result_rows
    for t, sk, pk, mk in idx:
        col_rows.append((f"{t}: skip indexes / marks", f"{sk / env_r:,.1f} / {mk / env_r:,.1f}",
                         "", ""))

    # 4. variants on the sample
    variants = []
    for label, codec, one in () if args.no_variants else (
            ("ZSTD(3) on every column", "ZSTD(3)", False),
            ("ZSTD(3), one partition", "ZSTD(3)", True)):
        t0 = time.perf_counter()
        eb, er, ep = copy_sample(store, "envelopes", "s_env", codec, one, since_ns, until_ns)
        pb, _, pp = copy_sample(store, "payloads", "s_pay", codec, one, since_ns, until_ns)
        assert er == count, (er, count)
        per = (eb + pb) / er
        variants.append((f"sample, {label}", f"{per:,.0f}",
                         (f"{per / sample_ch:.2f}x product, {per / (gz / count):.2f}x gzip JSON"
                         f" ({ep}+{pp} parts, {time.perf_counter() - t0:.0f} s)")))
        print(f"  {variants[-1]}", flush=True)
    rows += variants
    print_table("Bytes on disk per record", ("figure", "bytes/record", "note"), rows)
    print_table("Largest columns (whole store)", ("column", "compressed B/rec",
                                                  "uncompressed B/rec", "ratio"), col_rows)
    ratio = whole / (gz / count)
    print(f"\nResult: {whole:,.0f} bytes/record on disk (whole store) vs {gz / count:,.0f} "
          f"bytes/record as gzip'd JSON lines: {ratio:.2f}x; sample days {sample_ch:,.0f}"
          f" ({sample_ch / (gz / count):.2f}x); lookup projections +{proj_b / env_r:,.1f}"
          f" B/record ({proj_b / (env_b + pay_b):.1%}); people table +{ppl_b / env_r:,.1f}"
          f" B/record ({ppl_b / (env_b + pay_b):.1%}); together"
          f" {(proj_b + ppl_b) / (env_b + pay_b):.1%}")
    store.close()


if __name__ == "__main__":
    main()
