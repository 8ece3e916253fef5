"""The SQL of erasure and of the payload check: envelopes' sealed commitments
against the payload table, joined and hashed in the engine so that only the
exceptions reach Python. (``Store.erase_payloads`` deletes the rows.)"""

from __future__ import annotations

from datetime import date, datetime, timezone

from aitrail_collector.store.client import Store
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


_CHECK_SQL = (
    "SELECT e.seq, e.record_id, e.name, countIf(p.present = 1) AS stored,"
    # bad: stored, yet no stored row hashes to the sealed commitment. An extra row
    # beside a matching one is an orphan of a retried write, which every reader ignores.
    " if(stored > 0 AND countIf(p.present = 1 AND p.actual = unhex(e.sealed)) = 0, 1, 0) AS bad"
    " FROM (SELECT seq, record_id, name, sealed FROM {db}.envelopes"
    "   ARRAY JOIN mapKeys(commitments) AS name, mapValues(commitments) AS sealed"
    "   WHERE chain_id = {{c:String}} AND {window}) AS e"
    " LEFT JOIN (SELECT record_id, name, toUInt8(1) AS present,"
    "   SHA256(concat(unhex(salt), content)) AS actual FROM {db}.payloads"
    "   WHERE chain_id = {{c:String}} AND {window}) AS p"
    " ON p.record_id = e.record_id AND p.name = e.name"
    " GROUP BY e.seq, e.record_id, e.name HAVING stored = 0 OR bad > 0"
    " ORDER BY e.seq, e.name")
_WINDOW = ("start_time >= fromUnixTimestamp64Nano({lo:Int64})"
           " AND start_time < fromUnixTimestamp64Nano({hi:Int64})")


def day_windows(store: Store, chain_id: str, window_records: int) -> list[tuple[int, int]]:
    """[lo, hi) start_time ranges of whole days, each about ``window_records`` records
    that carry payload commitments."""
    days = store.query(
        f"SELECT toDate(start_time) AS d, count() FROM {DB}.envelopes"
        " WHERE chain_id = {c:String} AND notEmpty(commitments) GROUP BY d ORDER BY d",
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


def unmatched_commitments(store: Store, chain_id: str, lo: int, hi: int) -> list[tuple]:
    """(seq, record_id, name, stored, bad) of each sealed commitment in [lo, hi) whose
    payload row is absent (stored 0) or does not hash to it (bad 1)."""
    sql = _CHECK_SQL.format(db=DB, window=_WINDOW)
    return store.query(sql, {"c": chain_id, "lo": lo, "hi": hi}).result_rows


def first_seq(store: Store, chain_id: str, record_id: str) -> int:
    rows = store.query(f"SELECT min(seq) FROM {DB}.envelopes WHERE chain_id = {{c:String}}"
                       " AND record_id = {r:String}", {"c": chain_id, "r": record_id}).result_rows
    return int(rows[0][0]) if rows else 0
