"""Reading the stored checkpoints for display (the console's integrity status and
timelines). Checkpoints accumulate (one per 5 minutes is ~100k a year), so these
read only the ones shown, newest or covering, never the whole table. A row whose
text does not parse is skipped here; verification reports it."""

from __future__ import annotations

from typing import Iterator, Optional

from aitrail.verify.checkpoint import CheckpointError, SignedCheckpoint
from aitrail_collector.store.client import Store
from aitrail_collector.store.schema import DB


def _parsed(store: Store, sql: str, params: dict) -> Iterator[tuple[int, int, int]]:
    """(number, size, signed time_ns) of the rows ``sql`` streams."""
    for number, size, text in store.stream(sql, params):
        try:
            t = SignedCheckpoint.parse(text).checkpoint.time_ns
        except CheckpointError:
            continue
        yield int(number), int(size), t


def covering_range(store: Store, chain_id: str, low_seq: int,
                   high_seq: int) -> list[tuple[int, int, int]]:
    """The checkpoints from the first covering ``low_seq`` to the first covering
    ``high_seq``, as (number, size, time_ns)."""
    found = []
    for cp in _parsed(store, f"SELECT number, size, text FROM {DB}.checkpoints WHERE"
                             " chain_id = {c:String} AND size >= {s:UInt64} ORDER BY number",
                      {"c": chain_id, "s": low_seq}):
        found.append(cp)
        if cp[1] >= high_seq:
            break
    return found


def newest_per_chain(store: Store) -> list[tuple[str, int, tuple[int, int, int]]]:
    """(chain_id, checkpoints stored, newest parseable (number, size, time_ns)) per chain."""
    out = []
    counts = store.query(f"SELECT chain_id, count() FROM {DB}.checkpoints"
                         " GROUP BY chain_id ORDER BY chain_id").result_rows
    for chain, count in counts:
        newest: Optional[tuple[int, int, int]] = next(_parsed(
            store, f"SELECT number, size, text FROM {DB}.checkpoints"
                   " WHERE chain_id = {c:String} ORDER BY number DESC", {"c": chain}), None)
        if newest is not None:
            out.append((chain, int(count), newest))
    return out
