"""Verification in the engine: the canonical envelope bytes as a ClickHouse expression.

The per-record work of ``aitrail verify`` (re-encode the envelope, hash it, check
the hash columns, the stray columns and the linkage) runs here, in SQL, over the
whole chain; Python is handed only the rows that fail, and gives them to the
reference code (``aitrail.verify.chain``), so every finding is the reference's.

The expression is generated from ``aitrail.verify.envelope.VERSION_FIELDS`` and
``VERSION_TAGS`` (docs/canonical-envelope.md), never from a field list of its own:

* ``str``  -- u32 big-endian byte length, then the bytes (``length`` counts bytes)
* ``u64`` / ``time`` -- u64 big-endian (times: ``toUnixTimestamp64Nano``)
* ``f64?`` -- 0x00 when NULL, else 0x01 and the IEEE 754 value, big-endian
* ``map``  -- u32 count, then the entries sorted by key bytes (String comparison in
  ClickHouse is by bytes, as UTF-8 order is), key and value each as ``str``

Big-endian integers are ``reinterpret(byteSwap(x), 'FixedString(n)')`` (cheaper than
reversing the string; ``reinterpretAsString`` drops trailing zero bytes, so it cannot
be used).
A value with no encoding (a non-finite confidence, a time before 1970, an unknown
envelope_version) makes the row fail here, and the reference names it ``modified``.
"""

from __future__ import annotations

from typing import Iterator, Sequence

from aitrail.verify.chain import ChainSummary, Link
from aitrail.verify.envelope import STORED_FIELDS, VERSION_FIELDS, VERSION_TAGS, Field
from aitrail.verify.hashes import HASH_SIZE
from aitrail_collector import native
from aitrail_collector.errors import StoreError
from aitrail_collector.store.client import NO_JIT_CLAUSE, Store
from aitrail_collector.store.schema import DB, STORED_ROW_SELECT, split_row

LEAF_PREFIX = b"\x00"  # aitrail.verify.hashes.leaf_hash: SHA-256(0x00 || canonical bytes)


def _be(expr: str, width: int) -> str:
    """An unsigned integer expression as ``width`` big-endian bytes."""
    return f"reinterpret(byteSwap({expr}), 'FixedString({width})')"


def _str_pieces(expr: str) -> list[str]:
    return [_be(f"toUInt32(length({expr}))", 4), expr]


def _field_pieces(f: Field) -> list[str]:
    """The concat arguments of one field. A LowCardinality column is used as it is:
    ``length`` then runs over its dictionary, not over every row."""
    col = f.name
    if f.kind in ("str", "lstr"):
        return _str_pieces(col)
    if f.kind == "u64":
        return [_be(f"toUInt64({col})", 8)]
    if f.kind == "time":
        return [_be(f"toUInt64(toUnixTimestamp64Nano({col}))", 8)]
    if f.kind == "f64?":
        return [f"if(isNull({col}), unhex('00'), concat(unhex('01'), "
                f"reverse(reinterpret(toFloat64(assumeNotNull({col})), 'FixedString(8)'))))"]
    if f.kind == "map":
        # mapSort orders the entries by key bytes; an empty map (the common case) is
        # the constant count 0 without the lambda.
        entries = (f"arrayStringConcat(arrayMap((k, v) -> concat({', '.join(_str_pieces('k'))}, "
                   f"{', '.join(_str_pieces('v'))}), mapKeys(mapSort({col})), "
                   f"mapValues(mapSort({col}))))")
        return [f"if(empty({col}), unhex('00000000'), "
                f"concat({_be(f'toUInt32(length({col}))', 4)}, {entries}))"]
    raise AssertionError(f.kind)  # pragma: no cover - FIELDS is fixed


def _tag_literal(version: int, prefix: bytes = b"") -> str:
    tag = VERSION_TAGS[version]
    return f"unhex('{(prefix + len(tag).to_bytes(4, 'big') + tag).hex()}')"


# concat over about 80 arguments is slower than concat over groups of them (measured
# in chDB 26.9: about a quarter less CPU with groups of 8).
_GROUP = 8


def canonical_expr(version: int, prefix: bytes = b"") -> str:
    """The canonical bytes of a stored row sealed under ``version``, as SQL, after
    ``prefix`` (the leaf hash's 0x00 goes in the constant: no second copy of the row)."""
    parts = [_tag_literal(version, prefix)] + [p for f in VERSION_FIELDS[version]
                                       for p in _field_pieces(f)]
    groups = [parts[i:i + _GROUP] for i in range(0, len(parts), _GROUP)]
    return "concat(" + ", ".join(g[0] if len(g) == 1 else f"concat({', '.join(g)})"
                                 for g in groups) + ")"


def encodable_expr(version: int) -> str:
    """True when every value of the row has an encoding under ``version``."""
    conds = ["1"]
    for f in VERSION_FIELDS[version]:
        if f.kind == "f64?":
            conds.append(f"(isNull({f.name}) OR isFinite(assumeNotNull({f.name})))")
        elif f.kind == "time":
            conds.append(f"toUnixTimestamp64Nano({f.name}) >= 0")
    return " AND ".join(conds)


def _nonzero(f: Field) -> str:
    if f.kind in ("str", "lstr"):
        return f"{f.name} != ''"
    if f.kind == "u64":
        return f"{f.name} != 0"
    if f.kind == "time":
        return f"toUnixTimestamp64Nano({f.name}) != 0"
    if f.kind == "f64?":
        return f"isNotNull({f.name})"
    return f"notEmpty(mapKeys({f.name}))"


def stray_expr(version: int) -> str:
    """True when a column ``version`` does not seal holds a value (envelope.stray_fields)."""
    sealed = {f.name for f in VERSION_FIELDS[version]}
    conds = [_nonzero(f) for f in STORED_FIELDS if f.name not in sealed]
    return " OR ".join(conds) if conds else "0"


def row_ok_expr() -> str:
    """True when the row's content gives its leaf hash, its hash columns agree and no
    column of the other version holds a value: the per-row checks of ``check_rows``."""
    branches = []
    for version in sorted(VERSION_FIELDS):
        content = (f"({encodable_expr(version)}) AND NOT ({stray_expr(version)}) AND "
                   f"SHA256({canonical_expr(version, LEAF_PREFIX)}) = leaf_hash")
        branches += [f"envelope_version = {version}", content]
    return (f"multiIf({', '.join(branches)}, 0) AND "
            "SHA256(concat(prev_hash, leaf_hash)) = chain_hash")


def engine_can_verify(store: Store) -> bool:
    """Whether verification may let the store's engine hash the records: only the
    embedded engine, which runs inside the verifier's own process. A ClickHouse server
    holds the ledger being verified, so it is never trusted to say which of its rows
    still match their hashes (DESIGN.md, "Hot paths"): there the rows are read and
    every hash is recomputed here."""
    return bool(store.embedded)


LAST_SEQ = 2**64 - 1  # no end: every row from the start on


def summarize(store: Store, chain_id: str, start_seq: int, start_hash: bytes,
              end_seq: int = LAST_SEQ) -> ChainSummary:
    """Two passes in the engine over the chain from ``start_seq`` to ``end_seq``: the
    count, the head and the rows that fail their own checks; then whether the rows link
    up. Both read the same stretch, whatever lands after ``end_seq`` in between.

    Two queries, not one: a window over the rows by seq makes the engine sort every
    column the row checks read (the whole envelope) before it hashes them, in one
    stream. The row checks need no order, so they run as a parallel aggregation over
    the parts; only the link check needs seq order, and it sorts three narrow
    columns (measured on 1M records: 11.1 CPU-s as one query, 4.3 as the two). No JIT:
    the row checks on 1M records took 3.96-4.04 CPU-s with it, 3.56-3.78 without."""
    params = {"c": chain_id, "s": start_seq, "s0": start_seq - 1, "h": start_hash.hex(),
              "e": end_seq}
    where = (f" FROM {DB}.envelopes WHERE chain_id = {{c:String}} AND seq >= {{s:UInt64}}"
             " AND seq <= {e:UInt64}")
    rows = store.query("SELECT count(), max(seq), arraySort(groupUniqArrayIf(seq, NOT ("
                       + row_ok_expr() + "))) " + where + NO_JIT_CLAUSE, params).result_rows[0]
    count = int(rows[0])
    broken = 0
    if count:
        broken = int(store.query(
            "SELECT countIf(broken) FROM (SELECT (prev_hash != lagInFrame(chain_hash, 1,"
            " toFixedString(unhex({h:String}), 32)) OVER w"
            " OR seq != lagInFrame(seq, 1, toUInt64({s0:UInt64})) OVER w + 1) AS broken"
            + where + " WINDOW w AS (ORDER BY seq ROWS BETWEEN 1 PRECEDING AND CURRENT ROW))",
            params).result_rows[0][0])
    return ChainSummary(count, int(rows[1]) if count else 0, [int(s) for s in rows[2]],
                        broken == 0)


def rows_at(store: Store, chain_id: str, seqs: Sequence[int]) -> Iterator[tuple[Link, dict]]:
    """The full rows at these seqs, by seq, as ``Store.iter_chain`` gives them (each map
    as its stored entries: a key written in twice shows)."""
    if not seqs:
        return
    sql = (f"SELECT {STORED_ROW_SELECT} FROM {DB}.envelopes WHERE chain_id = {{c:String}}"
           " AND seq IN {q:Array(UInt64)} ORDER BY seq")
    for row in store.query(sql, {"c": chain_id, "q": list(seqs)}).result_rows:
        seq, envelope, prev, leaf, chain = split_row(row)
        yield Link(seq, envelope["record_id"], prev, leaf, chain), envelope


_PAIR = 2 * HASH_SIZE  # a row of the hash stream: leaf_hash || chain_hash


def hash_blobs(store: Store, chain_id: str, start_seq: int, end_seq: int = LAST_SEQ
               ) -> Iterator[tuple[bytes, bytes]]:
    """(leaf hashes, chain hashes) of the chain from ``start_seq`` to ``end_seq`` by seq,
    as two blobs of n*32 bytes per piece the engine sends: what the checkpoint audit
    rebuilds its trees from (``CheckpointAudit.add_blob``). The engine writes the two
    FixedString(32) columns back to back (RawBLOB: 64 bytes a row) and compiled code
    splits them, so no Python object is made per row."""
    sql = (f"SELECT leaf_hash, chain_hash FROM {DB}.envelopes WHERE chain_id = {{c:String}}"
           " AND seq >= {s:UInt64} AND seq <= {e:UInt64} ORDER BY seq")
    rest = b""
    for data in store.stream_raw(sql, {"c": chain_id, "s": start_seq, "e": end_seq}, "RawBLOB"):
        if rest:
            data, rest = rest + data, b""
        cut = len(data) - len(data) % _PAIR
        if cut < len(data):  # a row across two pieces (the engine sends whole blocks)
            rest = bytes(data[cut:])
        if cut:
            yield native.split_pairs(memoryview(data)[:cut])
    if rest:
        raise StoreError(f"the hash stream of chain {chain_id!r} ended inside a row "
                         f"({len(rest)} bytes left over)")


def canonical_of_rows(store: Store) -> list[tuple[int, bytes]]:
    """(seq, canonical bytes computed by the engine) of every stored row: what the
    tests hold against ``canonical_bytes``."""
    cases = ", ".join(f"envelope_version = {v}, {canonical_expr(v)}"
                      for v in sorted(VERSION_FIELDS))
    sql = f"SELECT seq, hex(multiIf({cases}, '')) FROM {DB}.envelopes ORDER BY seq"
    return [(int(r[0]), bytes.fromhex(r[1])) for r in store.query(sql).result_rows]
