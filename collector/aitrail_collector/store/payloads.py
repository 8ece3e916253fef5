"""The SQL of erasure and of the payload check: envelopes' sealed commitments
against the payload table, joined and hashed in the engine so that only the
exceptions reach Python. (``Store.erase_payloads`` deletes the rows.)"""

from __future__ import annotations

from datetime import date, datetime, timezone
from typing import Any, Iterator, Optional, Sequence

from aitrail_collector.store.client import NO_JIT_CLAUSE, Store
from aitrail_collector.store.schema import DB

_DAY_NS = 86_400 * 10**9
_ID_COLUMNS = ("task_id", "record_id")


def records_of_type(store: Store, chain_id: str, event_type: str) -> list[tuple]:
    """(seq, record_id, actor, purpose, attributes, envelope_version, commitments) of
    every record of a type, by seq (event_type leads the sort key)."""
    return store.query(
        f"SELECT seq, record_id, actor, purpose, attributes, envelope_version, commitments"
        f" FROM {DB}.envelopes"
        " WHERE chain_id = {c:String} AND event_type = {t:String} ORDER BY seq",
        {"c": chain_id, "t": event_type}).result_rows


def commitments_of(store: Store, column: str, value: str,
                   except_type: str = "") -> list[tuple]:
    """(chain_id, seq, record_id, task_id, start ns, commitments) of the records whose
    ``column`` (task_id or record_id, both skip-indexed: no scan) is ``value``, leaving
    out records of ``except_type``."""
    if column not in _ID_COLUMNS:
        raise ValueError(f"not an id column: {column!r}")
    return store.query(
        f"SELECT chain_id, seq, record_id, task_id, toUnixTimestamp64Nano(start_time),"
        f" commitments FROM {DB}.envelopes WHERE {column} = {{v:String}}"
        " AND event_type != {x:String} ORDER BY chain_id, seq",
        {"v": value, "x": except_type}).result_rows


_WINDOW = ("start_time >= fromUnixTimestamp64Nano({lo:Int64})"
           " AND start_time < fromUnixTimestamp64Nano({hi:Int64})")
# A stored salt is hex; only one that bytes.fromhex reads as the engine's unhex does
# (pairs of hex digits, nothing else) may match in the engine, so the engine never
# passes a row that the reference (aitrail.verify.hashes.salt_bytes) would fail.
_PLAIN_HEX = "match(salt, '^([0-9a-fA-F][0-9a-fA-F])*$')"
# The sealed commitments of a window that no payload row of the window hashes to:
# one semi-join, the payload side hashed in the engine. The key is one string,
# length-prefixed record id and name, then the 32 digest bytes (the hex text of the
# digest costs a quarter of the check; one string hashes into the set faster than a
# tuple). The reference compares the sealed hex text with the digest's lower-case
# hex, so a sealed value that is not exactly 64 lower-case hex digits matches nothing
# there: here it is unmatched before the set is asked. What is left (absent, changed,
# erased) is a handful of records, judged in Python.
def _prefixed(col: str) -> str:
    return f"reinterpret(toUInt32(length({col})), 'FixedString(4)'), {col}"


def _key(name: str, digest: str) -> str:
    return f"concat({_prefixed('record_id')}, {_prefixed(name)}, {digest})"


_UNMATCHED_SQL = (
    "SELECT DISTINCT record_id FROM {db}.envelopes"
    " ARRAY JOIN mapKeys(commitments) AS name, mapValues(commitments) AS sealed"
    " WHERE chain_id = {{c:String}} AND {window}"
    " AND (NOT match(sealed, '^[0-9a-f]{{64}}$') OR"
    f" {_key('name', 'unhex(sealed)')} NOT IN"
    f" (SELECT {_key('toString(name)', 'SHA256(concat(unhex(salt), content))')}"
    "  FROM {db}.payloads WHERE chain_id = {{c:String}} AND {window} AND {hex}))")


def day_windows(store: Store, chain_id: str, window_records: int) -> list[tuple[int, int]]:
    """[lo, hi) start_time ranges of whole days, each about ``window_records`` records.
    Every record counts, with payloads or not: the windows only bound the memory of
    the join, and counting only records with commitments would read every map (five
    times the cost of the check's own envelope side, measured on 1M records)."""
    days = store.query(
        f"SELECT toDate(start_time) AS d, count() FROM {DB}.envelopes"
        " WHERE chain_id = {c:String} GROUP BY d ORDER BY d",
        {"c": chain_id}).result_rows
    windows: list[tuple[int, int]] = []
    lo, n = None, 0
    for day, count in days:
        start = _day_ns(day)
        if lo is None:
            lo = start
        elif n + count > window_records:
            windows.append((lo, start))
            lo, n = start, 0
        n += int(count)
    if lo is not None:
        windows.append((lo, _day_ns(days[-1][0]) + _DAY_NS))
    return windows


def _day_ns(day: date) -> int:
    return int(datetime(day.year, day.month, day.day, tzinfo=timezone.utc).timestamp()) * 10**9


def unmatched_records(store: Store, chain_id: str, lo: int, hi: int) -> list[str]:
    """Record ids in [lo, hi) holding a sealed commitment that no payload row of the
    window hashes to (absent, changed, or erased). Computed by the engine: embedded
    stores only (verify_sql.engine_can_verify)."""
    sql = _UNMATCHED_SQL.format(db=DB, window=_WINDOW, hex=_PLAIN_HEX) + NO_JIT_CLAUSE
    return [r[0] for r in store.query(sql, {"c": chain_id, "lo": lo, "hi": hi}).result_rows]


def commitment_rows(store: Store, chain_id: str, lo: int, hi: int,
                    record_ids: Optional[Sequence[str]] = None) -> Iterator[tuple]:
    """(seq, record_id, commitments) of the records in [lo, hi) that seal payloads
    (only ``record_ids``, when given), streamed."""
    return _window_rows(store, "seq, record_id, commitments", "envelopes",
                        " AND notEmpty(commitments)", chain_id, lo, hi, record_ids)


def window_payload_rows(store: Store, chain_id: str, lo: int, hi: int,
                        record_ids: Optional[Sequence[str]] = None) -> Iterator[tuple]:
    """(record_id, name, salt, content) of the payload rows in [lo, hi) (only of
    ``record_ids``, when given), streamed: the rows the check holds against the
    commitments of the same window."""
    return _window_rows(store, "record_id, name, salt, content", "payloads", "",
                        chain_id, lo, hi, record_ids)


def _window_rows(store: Store, columns: str, table: str, extra: str, chain_id: str,
                 lo: int, hi: int, record_ids: Optional[Sequence[str]]) -> Iterator[tuple]:
    # columns, table and extra are constants of this module; values are parameters.
    sql = (f"SELECT {columns} FROM {DB}.{table}"
           f" WHERE chain_id = {{c:String}} AND {_WINDOW}{extra}")
    params: dict[str, Any] = {"c": chain_id, "lo": lo, "hi": hi}
    if record_ids is not None:
        sql += " AND record_id IN {ids:Array(String)}"
        params["ids"] = list(record_ids)
    return store.stream(sql, params)


def first_seq(store: Store, chain_id: str, record_id: str) -> int:
    rows = store.query(f"SELECT min(seq) FROM {DB}.envelopes WHERE chain_id = {{c:String}}"
                       " AND record_id = {r:String}", {"c": chain_id, "r": record_id}).result_rows
    return int(rows[0][0]) if rows else 0
