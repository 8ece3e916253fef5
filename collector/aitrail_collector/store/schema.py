"""The ledger's tables and views: the only DDL of the project.

Tables (database ``aitrail``):

* ``envelopes`` -- the sealed records: every ``aitrail.verify.envelope.FIELDS``
  column plus ``seq``, ``prev_hash``, ``leaf_hash``, ``chain_hash``. Append-only.
* ``payloads`` -- large or personal content, one row per (record, name), with
  its salt. The envelope's ``commitments`` map binds each one.
* ``checkpoints`` -- the signed checkpoints and their frontiers.
* ``people`` -- derived: the envelopes of each person a record names, sorted by
  person, for reviewer searches; written by the materialized view ``people_mv`` in
  the same INSERT (see people_ddl). Nothing verifies from it.

Both record tables are MergeTree, partitioned by day of ``start_time``, with a
TTL in whole days (``ttl_only_drop_parts``), and bloom-filter skip indexes on
the ids people look things up by. The dashboard views are the SQL files of
``dashboards/sql/``.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any, Sequence

from clickhouse_connect.driver import options as clickhouse_options

from aitrail.verify.envelope import ROW_COLUMNS, STORED_FIELD_NAMES, STORED_FIELDS, V3_COLUMNS
from aitrail_collector.errors import StoreError

DB = "aitrail"

_CH_TYPES = {
    "str": "String",
    "lstr": "LowCardinality(String)",
    "u64": "UInt64",
    "time": "DateTime64(9, 'UTC')",
    "f64?": "Nullable(Float64)",
    "map": "Map(String, String)",
}
HASH_COLUMNS = ("prev_hash", "leaf_hash", "chain_hash")
# envelope_version: which canonical encoding the row was sealed under (1, 2 or 3); the
# row has every column of every version (envelope.STORED_FIELDS), the other
# versions' at their zero value. The order is the one the verifier reads a stored row in
# (envelope.ROW_COLUMNS: seq, envelope_version, STORED_FIELDS, the hash columns).
ENVELOPE_COLUMNS = ROW_COLUMNS
PAYLOAD_COLUMNS = ("chain_id", "record_id", "name", "start_time", "salt", "content", "commitment")


def _read_expr(name: str, kind: str, entries: bool = False) -> str:
    # DateTime64 comes back as datetime with microseconds only; the chain needs ns.
    # The alias must not shadow the column, or WHERE clauses would compare ns.
    if kind == "time":
        return f"toUnixTimestamp64Nano({name}) AS {name}_ns"
    if kind == "map" and entries:
        # Sorted by key bytes in the engine, which the row encoder then need not do: an
        # engine that sorted them wrong could make a sealed row fail, never a changed one
        # pass (a map's sealed bytes have its entries in the one sorted order).
        return f"CAST(mapSort({name}), 'Array(Tuple(String, String))') AS {name}_entries"
    return name


def _row_select(hashes: Sequence[str], entries: bool = False) -> str:
    """A stored row's SELECT list (split_row's positions), its hash columns ``hashes``;
    ``entries``: each map as its list of (key, value) entries (STORED_ROW_SELECT)."""
    return ", ".join(["seq", "envelope_version"]
                     + [_read_expr(f.name, f.kind, entries) for f in STORED_FIELDS]
                     + list(hashes))


ENVELOPE_SELECT = _row_select(HASH_COLUMNS)
# A stored row as the verifier and the proof bundles read it: each map as every entry
# it stores, in its stored order. The driver reads a Map into a dict, which keeps the
# last entry of a key held twice; SQL's m['key'] reads the first. A key written in a
# second time is visible only in the entries (aitrail.verify.envelope.map_entries).
STORED_ROW_SELECT = _row_select(HASH_COLUMNS, entries=True)
_N_FIELDS = len(STORED_FIELD_NAMES)
# Position of a stored field in a row read with ENVELOPE_SELECT.
FIELD_POSITION = {name: 2 + i for i, name in enumerate(STORED_FIELD_NAMES)}


def split_row(row: Any) -> tuple[int, dict[str, Any], bytes, bytes, bytes]:
    """(seq, envelope, prev_hash, leaf_hash, chain_hash) of a row read with
    ENVELOPE_SELECT (maps as dicts) or STORED_ROW_SELECT (maps as lists of entries); the
    envelope has every stored field and its envelope_version."""
    envelope = dict(zip(STORED_FIELD_NAMES, row[2:2 + _N_FIELDS]))
    envelope["envelope_version"] = int(row[1])
    prev, leaf, chain = row[2 + _N_FIELDS:]
    return int(row[0]), envelope, bytes(prev), bytes(leaf), bytes(chain)


# ClickHouse's own insert deduplication is off (window 0). Its log records a block
# id before the part is renamed into place, so a collector killed in between comes
# back with the id recorded and the part gone: the client's retry of that batch
# was then silently dropped as a duplicate and acknowledged (seen in the chaos
# test). Duplicates are the ledger's job, by record id, under its commit lock.
DEDUP_OFF = "non_replicated_deduplication_window = 0"


# Per-column codecs (ClickHouse's default is LZ4). Text, ids and maps compress
# about a third better with ZSTD; times and seq are near-sorted within a part, so
# their deltas are small; the three hashes are random bytes that nothing compresses,
# so they are stored as they are (no codec work on read). The representation only:
# every value reads back exactly as it was written (the sealed content is fixed).
_CODECS = {
    "str": "ZSTD(3)",
    "lstr": "ZSTD(1)",
    "u64": "T64, ZSTD(1)",
    "time": "Delta(8), ZSTD(1)",
    "f64?": "ZSTD(1)",
    "map": "ZSTD(3)",
}
SEQ_CODEC = "Delta(8), ZSTD(1)"
HASH_CODEC = "NONE"
# Exact secondary index: a lightweight projection keeps only the column, sorted, and
# each row's offset in its part, so a lookup by value reads just the matching rows:
# record_id, for the ingest's duplicate check and lookups of one record. (The same
# projections on the three reviewer columns read exactly the matching rows too, but
# cost a projection lookup per part and column: the reviewer search ran at 1.85x the
# bloom filters' time on the 1M store, BENCHMARKS.md, so those stay bloom filters.)
PROJECTIONS = {
    "p_record": "SELECT _part_offset ORDER BY record_id",
}
# The sorting key of a store made by this version: a task's records sit together, so
# its timeline is one primary-key range per day partition and the per-task columns
# (trace, request, parent span, host) compress to almost nothing. Stores made before
# keep (chain_id, event_type, start_time, seq): a sorting key cannot be altered.
ENVELOPE_ORDER_BY = "(chain_id, task_id, start_time, seq)"
# Bloom-filtered: ids looked up that are neither the key (task_id) nor projected
# (record_id). An escalation names people in its own columns, so the reviewer search
# looks in all three.
BLOOM_COLUMNS = ("request_id", "trace_id", "reviewer_id", "escalation_from", "escalation_to")
# 2048-row granules: a timeline or a page of search results reads single rows, and a
# row costs one granule of each column it reads. And small compressed blocks: with
# the defaults (64 KiB to 1 MiB) a narrow column's block spans several granules, so
# reading one row of each of ~60 columns decompressed several of them per column.
# Measured on the 10M store (session 9): a task's envelope read 24.7 -> 20.1 ms p50,
# the product's timeline (which reads the envelopes twice, for the rows and for their
# payloads' ids) 31-34 -> 22.7-23.9 ms, the verify scan unchanged within noise, and
# the table 0.7% larger. (The payload table is left as it is: its LZ4 text grew 39%
# in blocks this small, for under a millisecond.)
ENVELOPE_BLOCKS = "min_compress_block_size = 4096, max_compress_block_size = 16384"
ENVELOPE_SETTINGS = f"index_granularity = 2048, {ENVELOPE_BLOCKS}"


def _column(name: str, kind: str) -> str:
    return f"{name} {_CH_TYPES[kind]} CODEC({_CODECS[kind]})"


def envelope_ddl(retention_days: int) -> str:
    cols = [f"seq UInt64 CODEC({SEQ_CODEC})", "envelope_version UInt8 DEFAULT 1 CODEC(ZSTD(1))"]
    cols += [_column(f.name, f.kind) for f in STORED_FIELDS]
    cols += [f"{h} FixedString(32) CODEC({HASH_CODEC})" for h in HASH_COLUMNS]
    cols += [f"INDEX idx_{c} {c} TYPE bloom_filter(0.001) GRANULARITY 1" for c in BLOOM_COLUMNS]
    cols += [f"PROJECTION {name} ({sql})" for name, sql in PROJECTIONS.items()]
    return (f"CREATE TABLE IF NOT EXISTS {DB}.envelopes (\n  " + ",\n  ".join(cols) + "\n)"
            " ENGINE = MergeTree"
            " PARTITION BY toDate(start_time)"
            f" ORDER BY {ENVELOPE_ORDER_BY}"
            f" TTL toDateTime(start_time) + INTERVAL {int(retention_days)} DAY"
            " SETTINGS ttl_only_drop_parts = 1, non_replicated_deduplication_window = 0,"
            f" fsync_after_insert = 1, fsync_part_directory = 1, {ENVELOPE_SETTINGS}")


# The payload table. The salt stays hex text (ZSTD stores its 32 digits in about
# 16 bytes, what the binary would take). `commitment` is EPHEMERAL: an insert may
# still name it (the ledger writes the same rows as before) but it is not stored.
# It only repeated the commitment sealed in the envelope, and no reader may trust a
# payload row's own word for what it commits to: readers hash salt || content and
# compare with the sealed map. `content` keeps LZ4, which stores text that does not
# repeat literally: the erasure tests find the bytes on disk before an erasure and
# prove them gone after it; with ZSTD they could not tell.
PAYLOAD_TABLE_COLUMNS = (
    "chain_id LowCardinality(String) CODEC(ZSTD(1)), record_id String CODEC(ZSTD(3)),"
    " name LowCardinality(String) CODEC(ZSTD(1)),\n"
    "  start_time DateTime64(9, 'UTC') CODEC(Delta(8), ZSTD(1)),"
    " salt String CODEC(ZSTD(3)) /* hex */, content String CODEC(LZ4),"
    " commitment String EPHEMERAL")


def payload_ddl(retention_days: int) -> str:
    return (f"CREATE TABLE IF NOT EXISTS {DB}.payloads (\n  {PAYLOAD_TABLE_COLUMNS},\n"
            ")"  # no skip index: record_id is the key
            " ENGINE = MergeTree"
            " PARTITION BY toDate(start_time)"
            " ORDER BY (chain_id, record_id, name)"
            f" TTL toDateTime(start_time) + INTERVAL {int(retention_days)} DAY"
            " SETTINGS ttl_only_drop_parts = 1, non_replicated_deduplication_window = 0,"
            " fsync_after_insert = 1, fsync_part_directory = 1")


# The people table, for searches by reviewer: one row per (record, person it names in
# reviewer_id, escalation_from or escalation_to), holding that record's envelope
# columns (all but prev_hash, which no search shows), sorted by person and time. A
# person's records of a period are then a few adjacent granules of one or two parts;
# read from the envelopes they are single rows scattered over a part per day, and each
# row costs a read of every column there (BENCHMARKS.md, issue 12: about 280 ms of
# engine time for a page of 50 on the 10M store, whatever the granule size).
#
# Searches show these rows' values. That is safe because they are the sealed values:
# the table is written only by a materialized view, from the very block each INSERT
# into envelopes writes (the ledger's batches, the engine lane's INSERT ... SELECT),
# and envelope rows never change after (append-only; erasure deletes payload rows
# only, and payloads are still read from the payload table against these sealed
# commitments). Verification never reads this table. ClickHouse does not make the two
# writes of an INSERT atomic, so every start compares the two per day and derives a
# day that differs again (repair_people).
#
# Partitioned by month, not by day: a search of 30 days opens one or two parts, not
# 30. The TTL is per row (merges drop expired rows), so a row can outlive its record's
# day part by up to merge_with_ttl_timeout; it is the same sealed record meanwhile.
# No fsync: a part lost in a crash is derived again at the next start.
PEOPLE_EXPR = ("arrayDistinct(arrayFilter(x -> x != '',"
               " [reviewer_id, escalation_from, escalation_to]))")
# No hash column: the hashes are random bytes (two thirds of what the table would
# hold beyond the envelope columns that compress), and a page needs only its own
# rows' (queries._attach_hashes reads them from the envelopes by sorting key).
PEOPLE_COLUMNS = ("seq", "envelope_version") + STORED_FIELD_NAMES


def people_ddl(retention_days: int) -> str:
    cols = ["person String CODEC(ZSTD(1))", f"seq UInt64 CODEC({SEQ_CODEC})",
            "envelope_version UInt8 DEFAULT 1 CODEC(ZSTD(1))"]
    cols += [_column(f.name, f.kind) for f in STORED_FIELDS]
    return (f"CREATE TABLE IF NOT EXISTS {DB}.people (\n  " + ",\n  ".join(cols) + "\n)"
            " ENGINE = MergeTree"
            " PARTITION BY toYYYYMM(start_time)"
            " ORDER BY (person, start_time, seq)"
            f" TTL toDateTime(start_time) + INTERVAL {int(retention_days)} DAY"
            " SETTINGS non_replicated_deduplication_window = 0, index_granularity = 1024")


_PEOPLE_SELECT = (f"SELECT person, {', '.join(PEOPLE_COLUMNS)} FROM {DB}.envelopes"
                  f" ARRAY JOIN {PEOPLE_EXPR} AS person")
PEOPLE_VIEW = (f"CREATE MATERIALIZED VIEW IF NOT EXISTS {DB}.people_mv TO {DB}.people"
               f" AS {_PEOPLE_SELECT}")
# A row of the people table read like an envelope row (ENVELOPE_SELECT), its three
# hashes empty: split_row's positions hold; no search shows prev_hash, and a search
# puts in the other two from the envelopes (queries._attach_hashes).
PEOPLE_ROW_SELECT = _row_select([f"toFixedString('', 32) AS {h}" for h in HASH_COLUMNS])
# The two hashes of given envelope rows, by the sorting key: `keys` are (chain_id,
# task_id, event_type, start_time in ns, seq), what a people row carries. The IN set
# names every column of either layout's key (ENVELOPE_ORDER_BY, or (chain_id,
# event_type, start_time, seq) of older stores), so the engine's key analysis reads
# only the granules holding them, and start_time prunes the day partitions. The task
# ids and the time bounds apart too: the engine's key analysis then excludes more
# granules before it weighs the set (10M store, pages of 50 over ~9 days: 55 ms vs
# 74 ms with the set alone, load average 6).
HASHES_BY_KEY = (
    "SELECT chain_id, seq, leaf_hash, chain_hash"
    f" FROM {DB}.envelopes WHERE task_id IN {{tasks:Array(String)}}"
    " AND start_time BETWEEN fromUnixTimestamp64Nano({lo:Int64}, 'UTC')"
    " AND fromUnixTimestamp64Nano({hi:Int64}, 'UTC')"
    " AND (chain_id, task_id, event_type, start_time, seq) IN"
    " (SELECT tupleElement(k, 1), tupleElement(k, 2), tupleElement(k, 3),"
    " fromUnixTimestamp64Nano(tupleElement(k, 4), 'UTC'), tupleElement(k, 5)"
    " FROM (SELECT arrayJoin({keys:Array(Tuple(String, String, String, Int64, UInt64))})"
    " AS k)) SETTINGS use_skip_indexes = 0, optimize_use_projections = 0")


def _exists(client: Any, name: str) -> bool:
    return bool(client.query("SELECT count() FROM system.tables WHERE database = {d:String}"
                             " AND name = {n:String}", parameters={"d": DB, "n": name}
                             ).result_rows[0][0])


def has_people(client: Any) -> bool:
    """Whether the store has the people index and its view."""
    return _exists(client, "people") and _exists(client, "people_mv")


def ensure_people(client: Any, retention_days: int) -> None:
    """The people index and its view; a store made before them gets both, filled from
    its envelopes (INSERT ... SELECT: the engine's work, no row through Python), and
    every start derives again any day where the index and the envelopes differ."""
    if not _exists(client, "people_mv"):
        client.command(people_ddl(retention_days))
        # The view first: a row inserted from here on reaches the index through it;
        # the repair below then derives every day that the index lacks.
        client.command(PEOPLE_VIEW)
    else:
        _people_follow_envelopes(client)
    repair_people(client)


def _people_follow_envelopes(client: Any) -> None:
    """A people table made before the envelopes gained a column (a later envelope
    version, add_version_columns) gains it too, at its zero value as the older
    envelope rows hold it, and the view is made again to copy it: the view names its
    columns, so the old one would go on leaving the new field empty. At start-up,
    before the collector takes writes (the repair after it would catch a row missed)."""
    have = {r[0] for r in client.query(
        "SELECT name FROM system.columns WHERE database = {d:String} AND table = 'people'",
        parameters={"d": DB}).result_rows}
    missing = [f for f in STORED_FIELDS if f.name not in have]
    if not missing:
        return
    client.command(f"ALTER TABLE {DB}.people " + ", ".join(
        f"ADD COLUMN IF NOT EXISTS {_column(f.name, f.kind)}" for f in missing))
    client.command(f"DROP TABLE IF EXISTS {DB}.people_mv")
    client.command(PEOPLE_VIEW)


def repair_people(client: Any) -> list[str]:
    """Derive the people index again for each day whose row count differs from what
    the envelopes of that day name (a crash between the two writes of an insert, a
    store that predates the index). Returns those days (ISO dates). Runs at start-up,
    before the collector takes writes. One scan of the three person columns: about
    0.6 s on a 10M-record store."""
    rows = client.query(
        "SELECT toString(d), p.n FROM (SELECT toDate(start_time) AS d,"
        f" sum(length({PEOPLE_EXPR})) AS n FROM {DB}.envelopes GROUP BY d) AS e"
        f" FULL OUTER JOIN (SELECT toDate(start_time) AS d, count() AS n FROM {DB}.people"
        " GROUP BY d) AS p USING (d) WHERE e.n != p.n ORDER BY d").result_rows
    days = [r[0] for r in rows]
    stale = [day for day, n in rows if n]
    if stale:  # a lightweight delete: only days that hold index rows at all
        client.command(f"DELETE FROM {DB}.people WHERE toDate(start_time) IN {{d:Array(Date)}}",
                       parameters={"d": stale})
    if days:
        client.command(f"INSERT INTO {DB}.people {_PEOPLE_SELECT}"
                       " WHERE toDate(start_time) IN {d:Array(Date)}", parameters={"d": days})
    return days


# Two small derived tables, written by materialized views in the same INSERT as the
# envelopes (like the people table), each row a count of the envelope rows it stands
# for, so every start can compare them with the envelopes day by day and derive a day
# that differs again (repair_counts), and a count can check them first:
#
# * ``task_days``: the days (partitions) holding each task's records, for a task's
#   timeline and search: the envelope SELECT then opens that day's parts, not all ~92
#   (BENCHMARKS.md, issue 12: the primary-key pass over every day part was ~5 ms of a
#   53 ms timeline). A row that outlives its day (the TTL below is a day longer than
#   the envelopes') only names a day with no rows of the task: harmless. A missing one
#   would hide records, hence the repair.
# * ``type_counts``: records per day, event type and service, for the totals of
#   searches that filter on nothing else (the console's "reviews, last 7 days"):
#   summed from a few rows instead of a read of event_type for every record of the
#   period (150-170 ms on the 10M store). queries.count uses a day only when its sum
#   here equals the envelopes' count of that day, so a day being written, lost in a
#   crash, or dropped by the TTL is counted from the envelopes instead.
#
# SummingMergeTree: each insert block adds rows, merges add them up; readers sum(n).
TASK_DAYS_VIEW_SELECT = (f"SELECT task_id, toDate(start_time) AS day, count() AS n"
                         f" FROM {DB}.envelopes")
TYPE_COUNTS_VIEW_SELECT = (f"SELECT toDate(start_time) AS day, event_type, service,"
                           f" count() AS n FROM {DB}.envelopes")
COUNT_TABLES = {
    # name: (columns, sorting key, the view's SELECT, its GROUP BY)
    "task_days": ("task_id String CODEC(ZSTD(3)), day Date CODEC(Delta(2), ZSTD(1)),"
                  " n UInt64 CODEC(T64, ZSTD(1))", "(task_id, day)",
                  TASK_DAYS_VIEW_SELECT, "task_id, day"),
    "type_counts": ("day Date, event_type LowCardinality(String),"
                    " service LowCardinality(String), n UInt64", "(day, event_type, service)",
                    TYPE_COUNTS_VIEW_SELECT, "day, event_type, service"),
}


def count_table_ddl(name: str, retention_days: int) -> str:
    columns, key, _, _ = COUNT_TABLES[name]
    # One day past the envelopes' TTL: a row outlives every part of its day.
    return (f"CREATE TABLE IF NOT EXISTS {DB}.{name} ({columns})"
            f" ENGINE = SummingMergeTree(n) ORDER BY {key}"
            f" TTL day + INTERVAL {int(retention_days) + 1} DAY"
            " SETTINGS non_replicated_deduplication_window = 0")


def count_view_ddl(name: str) -> str:
    _, _, select, group = COUNT_TABLES[name]
    return (f"CREATE MATERIALIZED VIEW IF NOT EXISTS {DB}.{name}_mv TO {DB}.{name}"
            f" AS {select} GROUP BY {group}")


def has_counts(client: Any) -> bool:
    """Whether the store has both count tables and their views."""
    return all(_exists(client, n) and _exists(client, f"{n}_mv") for n in COUNT_TABLES)


def ensure_counts(client: Any, retention_days: int) -> None:
    """The count tables and their views; a store made before them gets them filled
    from its envelopes (repair_counts: every day differs from an empty table)."""
    for name in COUNT_TABLES:
        if not _exists(client, f"{name}_mv"):
            client.command(count_table_ddl(name, retention_days))
            client.command(count_view_ddl(name))  # the view first, as in ensure_people
    repair_counts(client)


# The envelopes' records per day: answered from the parts' implicit count projection.
ENVELOPE_DAYS = f"SELECT toDate(start_time) AS d, count() AS n FROM {DB}.envelopes GROUP BY d"


def repair_counts(client: Any) -> dict[str, list[str]]:
    """Derive each count table again for every day whose sum differs from the
    envelopes' count of that day (a crash between an insert's writes, a store made
    before the tables). Returns the days (ISO dates) per table. At start-up, before
    the collector takes writes; the engine's work only (INSERT ... SELECT)."""
    out: dict[str, list[str]] = {}
    for name, (_, _, select, group) in COUNT_TABLES.items():
        rows = client.query(
            f"SELECT toString(d), c.n FROM ({ENVELOPE_DAYS}) AS e FULL OUTER JOIN"
            f" (SELECT day AS d, sum(n) AS n FROM {DB}.{name} GROUP BY d) AS c USING (d)"
            " WHERE e.n != c.n ORDER BY d").result_rows
        days = [r[0] for r in rows]
        stale = [day for day, n in rows if n]
        if stale:
            client.command(f"DELETE FROM {DB}.{name} WHERE day IN {{d:Array(Date)}}",
                           parameters={"d": stale})
        if days:
            client.command(f"INSERT INTO {DB}.{name} {select}"
                           f" WHERE toDate(start_time) IN {{d:Array(Date)}} GROUP BY {group}",
                           parameters={"d": days})
        out[name] = days
    return out


CHECKPOINT_COLUMNS = ("chain_id", "number", "size", "time", "text", "frontier")


def checkpoint_ddl() -> str:
    # No TTL: checkpoints are tiny and outlive the records they cover, so a
    # verifier can start from one after retention dropped the records before it.
    # frontier: the compact range at `size` (hex), from which the tree can be
    # continued without the leaves before it; it is checked against the signed root.
    return (f"CREATE TABLE IF NOT EXISTS {DB}.checkpoints (\n"
            "  chain_id LowCardinality(String), number UInt64, size UInt64,\n"
            "  time DateTime64(9, 'UTC'), text String, frontier Array(String)\n)"
            " ENGINE = MergeTree ORDER BY (chain_id, number)"
            " SETTINGS fsync_after_insert = 1, fsync_part_directory = 1")


def _views_dir() -> Path:
    # A source checkout (or an editable install) has the files at the repository
    # root, where SQL users and Grafana users find them; an installed wheel carries
    # them as package data (aitrail_collector/sql, a link to dashboards/sql).
    package = Path(__file__).resolve().parent.parent
    if package.parent.name == "collector":  # <repo>/collector/aitrail_collector
        repo = package.parent.parent / "dashboards" / "sql"
        if repo.is_dir():
            return repo
    return Path(str(resources.files("aitrail_collector") / "sql"))


VIEWS_DIR: Path = _views_dir()


def view_files() -> list[Path]:
    """The view definitions, in name order (no view reads another, so order is free)."""
    return sorted(VIEWS_DIR.glob("*.sql"))


def view_sql(path: Path) -> str:
    """The one statement of a view file, without its trailing semicolon (the
    driver runs single statements; clickhouse-client wants the semicolon)."""
    return path.read_text(encoding="utf-8").strip().removesuffix(";").rstrip()


def create_views(client: Any) -> list[str]:
    """Create or replace every dashboard view; returns their names."""
    files = view_files()
    if not files:
        raise StoreError(f"no dashboard views (*.sql) in {VIEWS_DIR}")
    for path in files:
        client.command(view_sql(path))
    return [p.stem for p in files]


def ensure_schema(client: Any, retention_days: int) -> None:
    """Create what is missing: the database, the tables, the dashboard views."""
    # clickhouse-connect imports pandas on the first insert (about half a
    # second); pay that at start-up, not on the first batch a client waits for.
    getattr(clickhouse_options, "pd", None)
    client.command(f"CREATE DATABASE IF NOT EXISTS {DB}")
    client.command(envelope_ddl(retention_days))
    client.command(payload_ddl(retention_days))
    client.command(checkpoint_ddl())
    for table in ("envelopes", "payloads"):  # stores made before the window was 0
        client.command(f"ALTER TABLE {DB}.{table} MODIFY SETTING {DEDUP_OFF}")
    add_version_columns(client)
    migrate_layout(client)
    ensure_people(client, retention_days)
    ensure_counts(client, retention_days)
    create_views(client)


def add_version_columns(client: Any) -> None:
    """Give a store made before envelope v2 or v3 the columns of every version, at their
    zero value (what an older row holds in them): every reader selects them all. Metadata
    only: no part is rewritten, no row changes. Run at every start of a collector, and
    when the CLI opens a store directly (an older store verified by this version)."""
    # Before v2: the rows are v1 (the default), and gain v2's columns empty.
    client.command(f"ALTER TABLE {DB}.envelopes"
                   " ADD COLUMN IF NOT EXISTS envelope_version UInt8 DEFAULT 1 AFTER seq,"
                   " ADD COLUMN IF NOT EXISTS principal_kind LowCardinality(String)"
                   " AFTER sdk_version,"
                   " ADD COLUMN IF NOT EXISTS principal_id String AFTER principal_kind")
    # Before v3: v3's columns (a model response's id, an evaluation's fields).
    client.command(f"ALTER TABLE {DB}.envelopes " + ", ".join(
        f"ADD COLUMN IF NOT EXISTS {_column(f.name, f.kind)} AFTER {after}"
        for f, after in V3_COLUMNS))


def migrate_layout(client: Any) -> None:
    """Bring a store made by an earlier version to this version's representation,
    with metadata changes only (no part is rewritten, nothing is read back):

    * the column codecs and the compressed block sizes (ENVELOPE_BLOCKS): parts
      written from now on (inserts, merges) use them;
    * the lookup projection and the bloom filters on the escalation columns: parts
      written from now on carry them, older parts are read as before;
    * payloads.commitment becomes EPHEMERAL: no longer stored for new rows, and no
      longer readable for old ones (nothing reads it: see PAYLOAD_TABLE_COLUMNS).

    The sorting key stays what it was (ClickHouse cannot change it). Each statement
    is a no-op on a store made by this version, so this runs at every start."""
    env = [f"MODIFY COLUMN {f.name} CODEC({_CODECS[f.kind]})" for f in STORED_FIELDS]
    env += [f"MODIFY COLUMN seq CODEC({SEQ_CODEC})",
            "MODIFY COLUMN envelope_version CODEC(ZSTD(1))"]
    env += [f"MODIFY COLUMN {h} CODEC({HASH_CODEC})" for h in HASH_COLUMNS]
    env += [f"ADD PROJECTION IF NOT EXISTS {name} ({sql})" for name, sql in PROJECTIONS.items()]
    env += [f"ADD INDEX IF NOT EXISTS idx_{c} {c} TYPE bloom_filter(0.001) GRANULARITY 1"
            for c in BLOOM_COLUMNS]
    client.command(f"ALTER TABLE {DB}.envelopes " + ", ".join(env))
    client.command(f"ALTER TABLE {DB}.envelopes MODIFY SETTING {ENVELOPE_BLOCKS}")
    types = dict(client.query("SELECT name, default_kind FROM system.columns"
                              " WHERE database = {d:String} AND table = 'payloads'",
                              parameters={"d": DB}).result_rows)
    pay = ["MODIFY COLUMN chain_id CODEC(ZSTD(1))", "MODIFY COLUMN record_id CODEC(ZSTD(3))",
           "MODIFY COLUMN name CODEC(ZSTD(1))", "MODIFY COLUMN start_time CODEC(Delta(8), ZSTD(1))",
           "MODIFY COLUMN salt CODEC(ZSTD(3))"]
    if types.get("commitment") != "EPHEMERAL":
        pay.append("MODIFY COLUMN commitment String EPHEMERAL")
    client.command(f"ALTER TABLE {DB}.payloads " + ", ".join(pay))
