"""What a period of the ledger holds, for period verification and log reviews.

A period is a range of *sealed* time: the ``received_time`` the collector gave each
record when it sealed it (an envelope field, so it cannot be changed without the
change showing), which follows the chain's order; a client's own start_time does
not (a late batch may carry old times). Counted in the engine, one aggregate per
chain; the checkpoints signed in the period are found by the table's time column
and confirmed from their signed text (``aitrail.verify.checkpoint``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from aitrail.verify.checkpoint import CheckpointError, SignedCheckpoint
from aitrail_collector.store.client import Store
from aitrail_collector.store.schema import DB


@dataclass
class ChainPeriod:
    """One chain's records around a period of sealed time [since_ns, until_ns)."""
    chain_id: str
    records: int = 0          # records on the chain (as stored)
    head_seq: int = 0
    first_time_ns: int = 0    # when its first stored record was sealed (0: none)
    in_period: int = 0
    first_seq: int = 0        # the period's first and last seq (0: none in it)
    last_seq: int = 0
    after: int = 0            # records sealed after the period


def records(store: Store, since_ns: int, until_ns: int) -> dict[str, ChainPeriod]:
    """Per chain, how many records were sealed before, in and after the period."""
    rows = store.query(
        f"SELECT chain_id, count(), max(seq), toInt64(min(toUnixTimestamp64Nano(received_time))),"
        " countIf(t >= {a:Int64} AND t < {b:Int64}),"
        " minIf(seq, t >= {a:Int64} AND t < {b:Int64}),"
        " maxIf(seq, t >= {a:Int64} AND t < {b:Int64}), countIf(t >= {b:Int64})"
        f" FROM (SELECT chain_id, seq, received_time, toUnixTimestamp64Nano(received_time) AS t"
        f" FROM {DB}.envelopes) GROUP BY chain_id ORDER BY chain_id",
        {"a": since_ns, "b": until_ns}).result_rows
    out = {}
    for chain, count, head, first_t, inside, low, high, after in rows:
        out[chain] = ChainPeriod(chain, int(count), int(head), int(first_t), int(inside),
                                 int(low) if inside else 0, int(high) if inside else 0,
                                 int(after))
    return out


@dataclass
class Signed:
    number: int
    size: int
    time_ns: int  # the signed time, from the checkpoint's text


@dataclass
class CheckpointsIn:
    count: int = 0
    first: Optional[Signed] = None
    last: Optional[Signed] = None


def _signed(text: str, number: int, size: int) -> Optional[Signed]:
    try:
        return Signed(int(number), int(size), SignedCheckpoint.parse(text).checkpoint.time_ns)
    except CheckpointError:
        return None  # altered: verification names it


def checkpoints_in(store: Store, chain_id: str, since_ns: int, until_ns: int) -> CheckpointsIn:
    """The checkpoints of ``chain_id`` signed in the period: how many, the first and
    the last (their signed times read from the text, not the table's column)."""
    params = {"c": chain_id, "a": since_ns, "b": until_ns}
    where = (f"FROM {DB}.checkpoints WHERE chain_id = {{c:String}}"
             " AND toUnixTimestamp64Nano(time) >= {a:Int64}"
             " AND toUnixTimestamp64Nano(time) < {b:Int64}")
    count = int(store.query(f"SELECT count() {where}", params).result_rows[0][0])
    if not count:
        return CheckpointsIn()
    ends = [next((_signed(t, n, s) for n, s, t in store.query(
        f"SELECT number, size, text {where} ORDER BY number {order} LIMIT 1",
        params).result_rows), None) for order in ("ASC", "DESC")]
    return CheckpointsIn(count, ends[0], ends[-1])


def newest_signed(store: Store, chain_id: str) -> Optional[SignedCheckpoint]:
    """The chain's newest checkpoint that parses (what covers the chain so far)."""
    for _, _, text in store.stream(
            f"SELECT number, size, text FROM {DB}.checkpoints WHERE chain_id = {{c:String}}"
            " ORDER BY number DESC", {"c": chain_id}):
        try:
            return SignedCheckpoint.parse(text)
        except CheckpointError:
            continue  # altered: verification names it
    return None


def newest_checkpoint(store: Store, chain_id: str) -> Optional[Signed]:
    signed = newest_signed(store, chain_id)
    if signed is None:
        return None
    cp = signed.checkpoint
    return Signed(cp.number, cp.size, cp.time_ns)
