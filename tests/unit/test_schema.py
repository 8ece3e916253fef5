"""The product DDL on a fresh store: the envelope table's physical layout for point
reads (a timeline reads a few rows of every column)."""

from __future__ import annotations

from aitrail_collector.store.client import Store
from aitrail_collector.store.schema import ENVELOPE_BLOCKS


def test_a_new_store_writes_envelopes_in_small_compressed_blocks(tmp_path):
    store = Store(f"chdb://{tmp_path}/data")
    try:
        store.ensure_schema()
        store.ensure_schema()  # a restart: the migration is a no-op on a new store
        ddl = store.query("SHOW CREATE TABLE aitrail.envelopes").result_rows[0][0]
        settings = {k.strip(): v.strip() for k, v in (
            kv.split("=") for kv in ddl.rsplit("SETTINGS", 1)[1].split(","))}
    finally:
        store.close()
    assert ENVELOPE_BLOCKS == "min_compress_block_size = 4096, max_compress_block_size = 16384"
    assert (settings["index_granularity"], settings["min_compress_block_size"],
            settings["max_compress_block_size"]) == ("2048", "4096", "16384")
