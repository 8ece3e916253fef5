"""The store: ClickHouse tables, reached through one clickhouse-connect client API.

``chdb:///dir`` is the embedded engine (one process owns a directory);
``http(s)://host:8123`` is a ClickHouse server. Every value reaches SQL as a
bound parameter or through the insert protocol, never by string formatting.

Tables (database ``aitrail``):

* ``envelopes`` -- the sealed records: every ``aitrail.verify.envelope.STORED_FIELDS`` column
  plus ``seq``, ``prev_hash``, ``leaf_hash``, ``chain_hash``. Append-only.
* ``payloads`` -- large or personal content, one row per (record, name), with
  its salt. The envelope's ``commitments`` map binds each one.

Both are MergeTree, partitioned by day of ``start_time``, with a TTL in whole
days (``ttl_only_drop_parts``), and bloom-filter skip indexes on the ids people
look things up by, so those lookups do not scan the table.
"""

from __future__ import annotations

import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from typing import Any, Callable, Iterator, Optional, Sequence, TypeVar

import chdb
import clickhouse_connect
from clickhouse_connect.driver.binding import bind_query
from clickhouse_connect.driver.exceptions import ClickHouseError, DatabaseError

from aitrail.verify.chain import Link
from aitrail.verify.hashes import ZERO_HASH
from aitrail_collector.config import CollectorConfig, DataDir
from aitrail_collector.errors import StoreError
from aitrail_collector.store import schema
from aitrail_collector.store.schema import (
    CHECKPOINT_COLUMNS,
    DB,
    ENVELOPE_COLUMNS,
    PAYLOAD_COLUMNS,
    STORED_ROW_SELECT,
    split_row,
)

# The formats clickhouse-connect's chDB backend streams block by block.
_CHDB_STREAMED = frozenset({"Native", "TabSeparated", "TSV", "CSV", "RowBinary", "JSONEachRow"})

# For a statement that runs once with its own constants (the ingest lane's, per
# group; verification's, over a whole chain): JIT-compiling its long expressions
# cost more than it saved (the comments where ingest_sql and verify_sql use it say
# by how much).
NO_JIT = {"compile_expressions": 0, "compile_aggregate_expressions": 0}
NO_JIT_CLAUSE = " SETTINGS " + ", ".join(f"{k} = {v}" for k, v in NO_JIT.items())


T = TypeVar("T")
READERS = 2  # threads for Store.concurrently: the machine this is sized for has 2 cores
_READER = "aitrail-store-reader"


class Store:
    def __init__(self, dsn: str, retention_days: int = CollectorConfig.retention_days):
        if retention_days < 1:
            raise StoreError("retention must be at least one day")
        self.dsn = dsn
        self.retention_days = retention_days
        self._local = threading.local()
        self._readers: Optional[ThreadPoolExecutor] = None  # see concurrently
        self._readers_key = 0  # which pool self._readers is
        self._reader_clients: dict[int, list[Any]] = {}  # pool -> clients its threads opened
        self._readers_lock = threading.Lock()
        self._people: Optional[bool] = None
        self._counts: Optional[bool] = None
        self.data_dir = DataDir.of_dsn(dsn)
        self.embedded = self.data_dir is not None
        if self.data_dir is not None:
            os.makedirs(self.data_dir.root, exist_ok=True)
        _ = self.client  # open now, so a held or unreachable store fails here, clearly

    @property
    def client(self):
        client = getattr(self._local, "client", None)
        if client is None:
            client = self._local.client = self._connect()
        return client

    def _connect(self):
        try:
            client = clickhouse_connect.get_client(dsn=self.dsn)
        except Exception as exc:  # noqa: BLE001 - turned into one clear error
            raise StoreError(self._open_error(exc)) from exc
        pool = getattr(self._local, "reader_of", None)
        if pool is not None:
            with self._readers_lock:  # closed by close(), from another thread
                self._reader_clients.setdefault(pool, []).append(client)
        return client

    def _open_error(self, exc: Exception) -> str:
        if self.embedded and "EmbeddedServer" in str(exc):
            return (f"cannot open the store at {self.dsn}: another process holds it "
                    "(a running collector?). Reach that collector with --url instead.")
        return f"cannot open the store at {self.dsn}: {exc}"

    # ------------------------------------------------------------ schema
    def ensure_schema(self) -> None:
        schema.ensure_schema(self.client, self.retention_days)
        self._people = self._counts = True

    def has_people(self) -> bool:
        """Whether the store has the people index (a store made before it, opened
        directly by the CLI without a migration, has not: searches then go without)."""
        if self._people is None:
            self._people = schema.has_people(self.client)
        return self._people

    def has_counts(self) -> bool:
        """Whether the store has the count tables (schema.COUNT_TABLES); one made
        before them, opened directly by the CLI, is searched without."""
        if self._counts is None:
            self._counts = schema.has_counts(self.client)
        return self._counts

    def add_version_columns(self) -> None:
        schema.add_version_columns(self.client)

    def has_schema(self) -> bool:
        rows = self.client.query("SELECT count() FROM system.tables WHERE database = {db:String}"
                                 " AND name = 'envelopes'", parameters={"db": DB}).result_rows
        return rows[0][0] > 0

    # ------------------------------------------------------------ writing
    def head(self, chain_id: str) -> tuple[int, bytes]:
        rows = self.client.query(
            f"SELECT seq, chain_hash FROM {DB}.envelopes WHERE chain_id = {{c:String}}"
            " ORDER BY seq DESC LIMIT 1", parameters={"c": chain_id}).result_rows
        if not rows:
            return 0, ZERO_HASH
        return int(rows[0][0]), bytes(rows[0][1])

    def existing_ids(self, record_ids: Sequence[str]) -> set[str]:
        if not record_ids:
            return set()
        rows = self.client.query(
            f"SELECT record_id FROM {DB}.envelopes WHERE record_id IN {{ids:Array(String)}}",
            parameters={"ids": list(record_ids)}).result_rows
        return {r[0] for r in rows}

    def insert(self, envelopes: Sequence[Sequence[Any]],
               payloads: Sequence[Sequence[Any]]) -> None:
        """Payloads first: an envelope must never be stored without its content.

        A payload row whose envelope never landed (a crash in between) matches
        no commitment and is ignored by every reader. Nothing is deduplicated
        here: the ledger deduplicates by record id under its lock (see the DDL's
        ``non_replicated_deduplication_window = 0`` for why ClickHouse must not).
        """
        c = self.client
        # Column-oriented: the driver encodes column by column, about a third
        # cheaper than transposing rows itself.
        if payloads:
            c.insert(f"{DB}.payloads", list(zip(*payloads)), column_names=PAYLOAD_COLUMNS,
                     column_oriented=True)
        if envelopes:
            c.insert(f"{DB}.envelopes", list(zip(*envelopes)), column_names=ENVELOPE_COLUMNS,
                     column_oriented=True)

    def insert_checkpoint(self, chain_id: str, number: int, size: int, time_ns: int,
                          text: str, frontier: Sequence[bytes]) -> None:
        self.client.insert(f"{DB}.checkpoints",
                           [[chain_id, number, size, _dt(time_ns), text,
                             [h.hex() for h in frontier]]],
                           column_names=CHECKPOINT_COLUMNS)

    # ------------------------------------------------------------ reading
    def checkpoints(self, chain_id: str) -> list[tuple[int, int, str, list[bytes]]]:
        """(number, size, signed text, frontier) of every stored checkpoint, by number."""
        rows = self.query(f"SELECT number, size, text, frontier FROM {DB}.checkpoints"
                          " WHERE chain_id = {c:String} ORDER BY number", {"c": chain_id})
        return [(int(n), int(s), t, [bytes.fromhex(h) for h in f])
                for n, s, t, f in rows.result_rows]

    def checkpoint_chains(self) -> list[str]:
        rows = self.query(f"SELECT DISTINCT chain_id FROM {DB}.checkpoints ORDER BY chain_id")
        return [r[0] for r in rows.result_rows]

    def leaf_hashes(self, chain_id: str, first_seq: int, last_seq: int) -> list[bytes]:
        """Stored leaf hashes of seq first..last, in seq order."""
        rows = self.query(f"SELECT leaf_hash FROM {DB}.envelopes WHERE chain_id = {{c:String}}"
                          " AND seq >= {a:UInt64} AND seq <= {b:UInt64} ORDER BY seq",
                          {"c": chain_id, "a": first_seq, "b": last_seq})
        return [bytes(r[0]) for r in rows.result_rows]

    def position(self, record_id: str) -> Optional[tuple[str, int]]:
        """(chain_id, seq) of a stored record."""
        rows = self.query(f"SELECT chain_id, seq FROM {DB}.envelopes"
                          " WHERE record_id = {r:String} ORDER BY seq LIMIT 1",
                          {"r": record_id}).result_rows
        return (rows[0][0], int(rows[0][1])) if rows else None

    def query(self, sql: str, parameters: Optional[dict] = None):
        return self.client.query(sql, parameters=parameters or {})

    def stream(self, sql: str, parameters: Optional[dict] = None) -> Iterator[tuple]:
        """Rows as they come. Uses a client of its own, so the consumer may run other
        queries (payloads for each chunk) while the stream is open."""
        client = getattr(self._local, "stream_client", None)
        if client is None:
            client = self._local.stream_client = self._connect()
        with client.query_rows_stream(sql, parameters=parameters or {}) as rows:
            yield from rows

    def stream_blocks(self, sql: str, parameters: Optional[dict] = None,
                      query_formats: Optional[dict] = None
                      ) -> Iterator[Sequence[Sequence[Any]]]:
        """Column blocks as they come (one sequence per column), on the stream client.
        ``query_formats``: the driver's read formats by type (``{"String": "bytes"}``)."""
        client = getattr(self._local, "stream_client", None)
        if client is None:
            client = self._local.stream_client = self._connect()
        with client.query_column_block_stream(sql, parameters=parameters or {},
                                              query_formats=query_formats) as blocks:
            yield from blocks

    def stream_raw(self, sql: str, parameters: Optional[dict] = None, fmt: str = "RawBLOB",
                   chunk: int = 1 << 20) -> Iterator[bytes]:
        """The engine's output in format ``fmt``, as bytes, as the engine makes it:
        nothing is decoded into Python values, and nothing is held whole. A server's
        answer comes in chunks of about ``chunk`` bytes; the embedded engine's one
        block at a time."""
        if self.embedded and fmt not in _CHDB_STREAMED:
            yield from self._stream_embedded(sql, parameters or {}, fmt)
            return
        client = getattr(self._local, "stream_client", None)
        if client is None:
            client = self._local.stream_client = self._connect()
        stream = client.raw_stream(sql, parameters=parameters or {}, fmt=fmt)
        try:
            while True:
                data = stream.read(chunk)
                if not data:
                    return
                yield data
        finally:
            stream.close()

    def _stream_embedded(self, sql: str, parameters: dict, fmt: str) -> Iterator[bytes]:
        # clickhouse-connect's chDB backend streams only formats it can split into
        # blocks itself (CSV, TSV, Native, ...); any other (RawBLOB, the export's) it
        # runs to the end and hands over as one buffer: the whole CSV of an export in
        # memory, then copied. chDB's own streaming query sends block by block, here
        # on a handle of the stream's own (chDB allows any number of handles to one
        # engine; opening one costs well under a millisecond), closed with the stream.
        query, bound = bind_query(sql, parameters)
        params = {k[len("param_"):] if k.startswith("param_") else k: v
                  for k, v in bound.items()}
        conn = chdb.connect(os.path.realpath(self.data_dir.root))
        try:
            try:
                result = conn.send_query(query, fmt, params=params)
            except RuntimeError as exc:
                raise StoreError(f"the store refused a query: {exc}") from exc
            try:
                for block in result:
                    data = block.bytes()
                    if data:
                        yield data
            except RuntimeError as exc:
                raise StoreError(f"the store failed mid-query: {exc}") from exc
            finally:
                result.close()
        finally:
            conn.close()

    def chains(self) -> list[str]:
        rows = self.client.query(f"SELECT DISTINCT chain_id FROM {DB}.envelopes ORDER BY chain_id")
        return [r[0] for r in rows.result_rows]

    def iter_chain(self, chain_id: str, from_seq: int = 1) -> Iterator[tuple[Link, dict]]:
        """Every row of one chain by seq (from ``from_seq``): its link and envelope (every
        stored field, each map as its stored entries, and its envelope_version)."""
        sql, params = _stretch(f"SELECT {STORED_ROW_SELECT}", chain_id, from_seq, None)
        # Column blocks, turned into rows here: cheaper than the driver's row stream.
        for block in self.stream_blocks(sql + " ORDER BY seq", params):
            for row in zip(*block):
                seq, envelope, prev, leaf, chain = split_row(row)
                yield Link(seq, envelope["record_id"], prev, leaf, chain), envelope

    def chain_blocks(self, chain_id: str, from_seq: int = 1, to_seq: Optional[int] = None
                     ) -> Iterator[Sequence[Sequence[Any]]]:
        """Every row of one chain from ``from_seq`` (to ``to_seq``), in the engine's own
        order, as the driver's column blocks of ``aitrail.verify.envelope.ROW_COLUMNS``,
        strings as the stored bytes, maps as their stored entries (schema.STORED_ROW_SELECT):
        what the reference verifier hashes
        (``aitrail.verify.chain.failing_rows``). Decoding them to str and dicts of str
        would cost more than the checks; sorting every column by seq, about as much as
        reading them (the links are followed on ``link_blocks``)."""
        sql, params = _stretch(f"SELECT {STORED_ROW_SELECT}", chain_id, from_seq, to_seq)
        yield from self.stream_blocks(sql, params, query_formats={"String": "bytes"})

    def link_blocks(self, chain_id: str, from_seq: int = 1, to_seq: Optional[int] = None
                    ) -> Iterator[Sequence[Sequence[Any]]]:
        """The hash columns of one chain by seq (``aitrail.verify.chain.LINK_COLUMNS``),
        from ``from_seq`` (to ``to_seq``), as the driver's column blocks."""
        sql, params = _stretch("SELECT seq, prev_hash, leaf_hash, chain_hash", chain_id,
                               from_seq, to_seq)
        yield from self.stream_blocks(sql + " ORDER BY seq", params)

    def links(self, chain_id: str, from_seq: int = 1, to_seq: Optional[int] = None
              ) -> list[Link]:
        sql, params = _stretch("SELECT seq, record_id, prev_hash, leaf_hash, chain_hash",
                               chain_id, from_seq, to_seq)
        return [Link(r[0], r[1], bytes(r[2]), bytes(r[3]), bytes(r[4]))
                for r in self.stream(sql + " ORDER BY seq", params)]

    def payload_rows(self, chain_id: str, record_ids: Sequence[str],
                     bounds: Optional[tuple[int, int]] = None) -> list[tuple]:
        """(record_id, name, salt, content) rows of these records, read by primary key.
        The caller holds the sealed commitments and hashes each row against them: the
        payload table alone is never trusted (it no longer stores a commitment of its
        own: see schema.PAYLOAD_TABLE_COLUMNS).

        bounds: the records' (min, max) start_time in ns. The ledger writes a payload
        row with its envelope's start_time, so this prunes the day partitions.
        """
        sql = (f"SELECT record_id, name, salt, content FROM {DB}.payloads"
               " WHERE chain_id = {c:String} AND record_id IN {ids:Array(String)}")
        params: dict[str, Any] = {"c": chain_id, "ids": list(record_ids)}
        if bounds:
            sql += (" AND start_time >= fromUnixTimestamp64Nano({lo:Int64})"
                    " AND start_time <= fromUnixTimestamp64Nano({hi:Int64})")
            params.update(lo=bounds[0], hi=bounds[1])
        return self.query(sql, params).result_rows

    # ------------------------------------------------------------ erasing
    def erase_payloads(self, chain_id: str, record_ids: Sequence[str],
                       timeout_s: float = 30.0) -> int:
        """Delete every payload row of these records, so that the bytes leave the disk.

        The only way data leaves the payload table (DESIGN.md, "Sealing"). A mutation
        rewrites the parts that hold the rows (a lightweight DELETE would only mask
        them). The parts it replaced, content included, stay on disk as inactive parts
        until the engine's cleanup runs, which embedded chDB may not do for minutes;
        so the table keeps no inactive parts (old_parts_lifetime = 0; merged parts are
        fsynced instead, which is what that lifetime guarded against) and the cleanup
        is run here. Returns how many inactive parts are still on disk when
        ``timeout_s`` ran out (a long-running query can pin one): 0 when all is gone.
        """
        c = self.client
        c.command(f"ALTER TABLE {DB}.payloads MODIFY SETTING old_parts_lifetime = 0,"
                  " min_compressed_bytes_to_fsync_after_merge = 1")
        c.command(f"ALTER TABLE {DB}.payloads DELETE WHERE chain_id = {{c:String}}"
                  " AND record_id IN {ids:Array(String)} SETTINGS mutations_sync = 2",
                  parameters={"c": chain_id, "ids": list(record_ids)})
        return self._sweep_payload_parts(timeout_s)

    def _sweep_payload_parts(self, timeout_s: float) -> int:
        deadline = time.monotonic() + timeout_s
        while True:
            # Dropping a partition that cannot exist (toDate never gives 00000000)
            # makes the engine remove the table's inactive parts there and then,
            # without detaching the table under concurrent queries and inserts.
            self.client.command(f"ALTER TABLE {DB}.payloads DROP PARTITION ID '00000000'")
            left = int(self.query("SELECT count() FROM system.parts WHERE database = {db:String}"
                                  " AND table = 'payloads' AND NOT active",
                                  {"db": DB}).result_rows[0][0])
            if not left or time.monotonic() >= deadline:
                return left
            time.sleep(0.2)  # a part replaced in this very second is kept until the next

    def concurrently(self, calls: Sequence[Callable[[], T]]) -> list[T]:
        """The results of independent reads, run at once: the first on this thread, the
        others on the store's reader threads. The engine releases the GIL while it
        works, so the reads of one page use both cores. The readers keep their clients
        open between pages (opening one runs six queries of the driver's own, 10-150 ms
        here); ``close`` closes them."""
        if len(calls) < 2:
            return [call() for call in calls]
        with self._readers_lock:
            if self._readers is None:
                self._readers_key += 1
                # The threads hold the store's thread-locals, not the store: a store
                # nobody holds is still collected (and its clients closed with it).
                self._readers = ThreadPoolExecutor(
                    READERS, thread_name_prefix=_READER, initializer=_mark_reader,
                    initargs=(self._local, self._readers_key))
            pending = [self._readers.submit(call) for call in calls[1:]]
        first = calls[0]()
        return [first] + [f.result() for f in pending]

    def _close_readers(self) -> None:
        """Stop the reader threads, then close the clients they opened. Only the close
        that takes the pool closes them, after its threads are done: two closes at once
        (two verifications' workers) must not close a client a reader still uses."""
        with self._readers_lock:
            readers, key, self._readers = self._readers, self._readers_key, None
        if readers is None:
            return
        readers.shutdown(wait=True)  # their reads end first, then the threads
        with self._readers_lock:
            clients = self._reader_clients.pop(key, [])
        for client in clients:
            _close_quietly(client)

    def close(self) -> None:
        """Close this thread's clients and the readers' (the embedded engine releases
        its directory only once every client is closed)."""
        for name in ("client", "stream_client"):
            client = getattr(self._local, name, None)
            if client is not None:
                _close_quietly(client)
                setattr(self._local, name, None)
        if getattr(self._local, "reader_of", None) is None:
            self._close_readers()


def _mark_reader(local: threading.local, pool: int) -> None:
    local.reader_of = pool  # a reader thread of this pool (Store.concurrently)


def _close_quietly(client: Any) -> None:
    try:
        client.close()
    except (ClickHouseError, DatabaseError, OSError):
        pass


def _dt(ns: int) -> datetime:
    return datetime.fromtimestamp(ns / 1e9, timezone.utc)


def _stretch(select: str, chain_id: str, from_seq: int, to_seq: Optional[int]
             ) -> tuple[str, dict[str, Any]]:
    """``select`` over one chain's envelopes from ``from_seq`` (to ``to_seq``)."""
    sql = f"{select} FROM {DB}.envelopes WHERE chain_id = {{c:String}} AND seq >= {{s:UInt64}}"
    params: dict[str, Any] = {"c": chain_id, "s": from_seq}
    if to_seq is not None:
        sql += " AND seq <= {e:UInt64}"
        params["e"] = to_seq
    return sql, params
