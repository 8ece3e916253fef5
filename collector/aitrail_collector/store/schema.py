"""The ledger's tables and views: the only DDL of the project.

Tables (database ``aitrail``):

* ``envelopes`` -- the sealed records: every ``aitrail.verify.envelope.FIELDS``
  column plus ``seq``, ``prev_hash``, ``leaf_hash``, ``chain_hash``. Append-only.
* ``payloads`` -- large or personal content, one row per (record, name), with
  its salt. The envelope's ``commitments`` map binds each one.
* ``checkpoints`` -- the signed checkpoints and their frontiers.

Both record tables are MergeTree, partitioned by day of ``start_time``, with a
TTL in whole days (``ttl_only_drop_parts``), and bloom-filter skip indexes on
the ids people look things up by. The dashboard views are the SQL files of
``dashboards/sql/``.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

from clickhouse_connect.driver import options as clickhouse_options

from aitrail.verify.envelope import STORED_FIELD_NAMES, STORED_FIELDS
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
LOOKUP_COLUMNS = ("record_id", "task_id", "request_id", "trace_id", "reviewer_id")
HASH_COLUMNS = ("prev_hash", "leaf_hash", "chain_hash")
# envelope_version: which canonical encoding the row was sealed under (1 or 2); the
# row has every column of every version (envelope.STORED_FIELDS), the other
# version's at their zero value.
ENVELOPE_COLUMNS = ("seq", "envelope_version") + STORED_FIELD_NAMES + HASH_COLUMNS
PAYLOAD_COLUMNS = ("chain_id", "record_id", "name", "start_time", "salt", "content", "commitment")


def _read_expr(name: str, kind: str) -> str:
    # DateTime64 comes back as datetime with microseconds only; the chain needs ns.
    # The alias must not shadow the column, or WHERE clauses would compare ns.
    return f"toUnixTimestamp64Nano({name}) AS {name}_ns" if kind == "time" else name


ENVELOPE_SELECT = ", ".join(["seq", "envelope_version"]
                            + [_read_expr(f.name, f.kind) for f in STORED_FIELDS]
                            + list(HASH_COLUMNS))
_N_FIELDS = len(STORED_FIELD_NAMES)
# Position of a stored field in a row read with ENVELOPE_SELECT.
FIELD_POSITION = {name: 2 + i for i, name in enumerate(STORED_FIELD_NAMES)}


def split_row(row: Any) -> tuple[int, dict[str, Any], bytes, bytes, bytes]:
    """(seq, envelope, prev_hash, leaf_hash, chain_hash) of a row read with
    ENVELOPE_SELECT; the envelope has every stored field and its envelope_version."""
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


def envelope_ddl(retention_days: int) -> str:
    cols = ["seq UInt64", "envelope_version UInt8 DEFAULT 1"]
    cols += [f"{f.name} {_CH_TYPES[f.kind]}" for f in STORED_FIELDS]
    cols += [f"{h} FixedString(32)" for h in HASH_COLUMNS]
    cols += [f"INDEX idx_{c} {c} TYPE bloom_filter(0.001) GRANULARITY 1" for c in LOOKUP_COLUMNS]
    return (f"CREATE TABLE IF NOT EXISTS {DB}.envelopes (\n  " + ",\n  ".join(cols) + "\n)"
            " ENGINE = MergeTree"
            " PARTITION BY toDate(start_time)"
            " ORDER BY (chain_id, event_type, start_time, seq)"
            f" TTL toDateTime(start_time) + INTERVAL {int(retention_days)} DAY"
            " SETTINGS ttl_only_drop_parts = 1, non_replicated_deduplication_window = 0,"
            " fsync_after_insert = 1, fsync_part_directory = 1")


def payload_ddl(retention_days: int) -> str:
    return (f"CREATE TABLE IF NOT EXISTS {DB}.payloads (\n"
            "  chain_id LowCardinality(String), record_id String, name LowCardinality(String),\n"
            "  start_time DateTime64(9, 'UTC'), salt String /* hex */, content String,"
            " commitment String,\n"
            "  INDEX idx_record record_id TYPE bloom_filter(0.001) GRANULARITY 1\n)"
            " ENGINE = MergeTree"
            " PARTITION BY toDate(start_time)"
            " ORDER BY (chain_id, record_id, name)"
            f" TTL toDateTime(start_time) + INTERVAL {int(retention_days)} DAY"
            " SETTINGS ttl_only_drop_parts = 1, non_replicated_deduplication_window = 0,"
            " fsync_after_insert = 1, fsync_part_directory = 1")


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
    # Stores made before envelope v2: their rows are v1 (the default), and gain v2's
    # columns empty. Metadata only: no part is rewritten.
    client.command(f"ALTER TABLE {DB}.envelopes"
                   " ADD COLUMN IF NOT EXISTS envelope_version UInt8 DEFAULT 1 AFTER seq,"
                   " ADD COLUMN IF NOT EXISTS principal_kind LowCardinality(String)"
                   " AFTER sdk_version,"
                   " ADD COLUMN IF NOT EXISTS principal_id String AFTER principal_kind")
    create_views(client)
