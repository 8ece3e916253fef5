"""The hash chain: how records are sealed, and how a stored chain is checked.

For each accepted record, in order (DESIGN.md, "Sealing")::

    leaf_hash  = SHA-256(0x00 || canonical_envelope_bytes)   # RFC 6962 leaf hash
    chain_hash = SHA-256(prev_chain_hash || leaf_hash)

The first record of a chain links to ``ZERO_HASH`` (32 zero bytes). The hash
functions and constants are in ``aitrail.verify.hashes``.

Verification works on rows as stored. Each row is checked on its own (does its
content still give its leaf hash, do its hash columns agree with each other),
then the rows are followed link by link -- each row names its predecessor by
``prev_hash`` -- which tells a missing record from an inserted one and from a
reordered pair. This module does no I/O: the store feeds it rows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Mapping, Optional, Sequence

from aitrail.verify.envelope import (
    ROW_CHAIN,
    ROW_ENCODERS,
    ROW_LEAF,
    ROW_PREV,
    ROW_SEQ,
    ROW_VERSION,
    EncodingError,
    canonical_bytes,
    row_has_stray,
    stray_fields,
)
from aitrail.verify.hashes import ZERO_HASH, chain_hash, leaf_hash

MODIFIED = "modified"
MISSING = "missing"
INSERTED = "inserted"
OUT_OF_ORDER = "out_of_order"


@dataclass(frozen=True)
class Link:
    """The position and hash columns of one stored row."""

    seq: int
    record_id: str
    prev_hash: bytes
    leaf_hash: bytes
    chain_hash: bytes


@dataclass(frozen=True)
class Finding:
    kind: str  # MODIFIED | MISSING | INSERTED | OUT_OF_ORDER
    chain_id: str
    seq: int
    record_id: str  # empty when the record is gone
    detail: str

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "chain_id": self.chain_id, "seq": self.seq,
                "record_id": self.record_id, "detail": self.detail}

    def __str__(self) -> str:
        rid = self.record_id or "-"
        return f"{self.kind:<12} chain={self.chain_id} seq={self.seq} record={rid}: {self.detail}"


@dataclass
class Report:
    chain_id: str
    records: int = 0
    head_seq: int = 0
    findings: list[Finding] = field(default_factory=list)
    # Which verification ran: "reference" (every row re-encoded in Python) or "engine"
    # (the per-row work in the store's engine, failing rows handed to the reference).
    path: str = "reference"

    @property
    def ok(self) -> bool:
        return not self.findings


class Sealer:
    """Assigns seq and hashes; one per chain, owned by the collector."""

    def __init__(self, chain_id: str, head_seq: int = 0, head_hash: bytes = ZERO_HASH):
        self.chain_id = chain_id
        self.head_seq = head_seq
        self.head_hash = head_hash

    def seal(self, envelope: Mapping[str, Any]) -> Link:
        leaf = leaf_hash(canonical_bytes(envelope))
        link = Link(self.head_seq + 1, envelope["record_id"], self.head_hash, leaf,
                    chain_hash(self.head_hash, leaf))
        self.head_seq, self.head_hash = link.seq, link.chain_hash
        return link


def check_rows(chain_id: str, rows: Iterable[tuple[Link, Mapping[str, Any]]]) -> Iterator[Finding]:
    """Per-row checks: content against leaf hash, hash columns against each other."""
    for link, envelope in rows:
        try:
            canonical = canonical_bytes(envelope)
        except EncodingError as exc:
            # The sealer encoded this row, so a stored value it cannot encode was
            # put there afterwards (a NaN, an out-of-range number, a wrong type).
            yield Finding(MODIFIED, chain_id, link.seq, link.record_id,
                          f"envelope fields cannot be encoded canonically ({exc}): "
                          "changed after sealing")
            continue
        stray = stray_fields(envelope)
        if leaf_hash(canonical) != link.leaf_hash:
            yield Finding(MODIFIED, chain_id, link.seq, link.record_id,
                          "envelope fields changed after sealing (leaf hash does not match)")
        elif stray:
            yield Finding(MODIFIED, chain_id, link.seq, link.record_id,
                          f"{', '.join(stray)} hold(s) a value that envelope version "
                          f"{envelope.get('envelope_version', 1)} does not seal: written "
                          "after sealing")
        elif chain_hash(link.prev_hash, link.leaf_hash) != link.chain_hash:
            yield Finding(MODIFIED, chain_id, link.seq, link.record_id,
                          "hash columns altered (chain hash does not match prev and leaf hash)")


@dataclass(frozen=True)
class ChainSummary:
    """One pass over a stored chain: what it holds and which rows fail their own checks.
    The engine makes it in SQL (the collector's store.verify_sql.summarize), the
    reference here (``scan_rows``); ``check_rows`` then says what is wrong with each
    failing row."""

    records: int
    head_seq: int
    failing_seqs: list[int]   # seqs of rows whose per-row checks fail (usually none)
    intact: bool              # every row follows its predecessor by seq and hash


def row_ok(row: Sequence[Any]) -> bool:
    """The per-row checks of ``check_rows`` on a stored row (envelope.ROW_COLUMNS): its
    content gives its leaf hash, no column of another version holds a value, and its
    chain hash is that of its prev and leaf hash."""
    leaf = row[ROW_LEAF]
    try:
        canonical = ROW_ENCODERS[row[ROW_VERSION]](row)
        stray = row_has_stray(row)
    except Exception:  # noqa: BLE001 - no encoding (or no such version): check_rows says which
        return False
    return (not stray and leaf_hash(canonical) == leaf
            and chain_hash(row[ROW_PREV], leaf) == row[ROW_CHAIN])


# The hash columns of a stored row by seq: what the links are followed on.
LINK_COLUMNS = ("seq", "prev_hash", "leaf_hash", "chain_hash")


def failing_rows(blocks: Iterable[Sequence[Sequence[Any]]]) -> list[int]:
    """The seqs of the stored rows that fail ``row_ok``, sorted. ``blocks``: the store's
    column blocks (one sequence per ROW_COLUMNS column), in any order. Rows stay in the
    form the store gives them (text as its stored bytes, no envelope dict), so each
    costs one encoder call and two hashes."""
    failing = [row[ROW_SEQ] for block in blocks for row in zip(*block) if not row_ok(row)]
    return sorted(failing)


def follow_links(blocks: Iterable[Sequence[Sequence[Any]]], start_seq: int = 1,
                 start_hash: bytes = ZERO_HASH,
                 on_block: Optional[Callable[[Sequence[bytes], Sequence[bytes]], None]] = None
                 ) -> tuple[int, int, bool]:
    """(records, head seq, intact) of a stored chain from ``start_seq``: whether every row
    follows its predecessor by seq and hash. ``blocks``: column blocks of LINK_COLUMNS,
    by seq. ``on_block`` gets each block's leaf and chain hashes (the checkpoint
    audit's tree)."""
    records, intact = 0, True
    seq_next, prev_next = start_seq, start_hash
    for seqs, prevs, leaves, chains in blocks:
        for seq, prev, chained in zip(seqs, prevs, chains):
            if seq != seq_next or prev != prev_next:
                intact = False
            seq_next, prev_next = seq + 1, chained
        records += len(seqs)
        if on_block is not None:
            on_block(leaves, chains)
    # Rows come by seq, so the last one is the head.
    return records, seq_next - 1 if records else 0, intact


def scan_rows(blocks: Iterable[Sequence[Sequence[Any]]], start_seq: int = 1,
              start_hash: bytes = ZERO_HASH,
              on_block: Optional[Callable[[Sequence[bytes], Sequence[bytes]], None]] = None
              ) -> ChainSummary:
    """The reference's pass over stored rows held in memory (column blocks of
    ROW_COLUMNS, by seq): ``follow_links`` on their hash columns, ``failing_rows`` on
    their content. A store is read twice instead (the collector's audit.verify): the
    hash columns by seq, then the whole rows in the engine's own order, which spares
    it sorting every column."""
    blocks = list(blocks)
    links = [[b[ROW_SEQ], b[ROW_PREV], b[ROW_LEAF], b[ROW_CHAIN]] for b in blocks]
    records, head_seq, intact = follow_links(links, start_seq, start_hash, on_block)
    return ChainSummary(records, head_seq, failing_rows(blocks), intact)


class LinkChecker:
    """Whether rows fed one at a time each follow their predecessor by seq and hash;
    ``intact`` stays False from the first row that does not."""

    __slots__ = ("seq", "prev", "intact")

    def __init__(self, start_seq: int = 1, start_hash: bytes = ZERO_HASH):
        self.seq, self.prev, self.intact = start_seq, start_hash, True

    def add(self, link: Link) -> bool:
        if link.seq != self.seq or link.prev_hash != self.prev:
            self.intact = False
        self.seq, self.prev = link.seq + 1, link.chain_hash
        return self.intact


def links_intact(links: Iterable[Link], start_seq: int = 1, start_hash: bytes = ZERO_HASH) -> bool:
    """The fast path: True when every row follows its predecessor by seq and hash."""
    checker = LinkChecker(start_seq, start_hash)
    return all(checker.add(link) for link in links)


def classify_links(chain_id: str, links: list[Link], start_seq: int = 1,
                   start_hash: bytes = ZERO_HASH, suspects: frozenset[tuple[int, str]] = frozenset()
                   ) -> list[Finding]:
    """Explain a broken chain: which records are missing, inserted or out of order.

    ``links`` are sorted by seq. The true order is rebuilt by following
    ``prev_hash`` from ``start_hash``; where that walk stops short, the lowest
    unvisited row either forks off a record we have (inserted) or continues
    from a record we do not have (missing). ``suspects`` are (seq, record_id)
    pairs whose content failed its own hash: where two rows claim the same
    place, the one whose content still matches is taken as genuine.
    """
    findings: list[Finding] = []
    by_prev: dict[bytes, list[Link]] = {}
    for link in links:
        by_prev.setdefault(link.prev_hash, []).append(link)
    known = {link.chain_hash for link in links} | {start_hash}
    visited: set[int] = set()
    pending = iter(links)
    pos, cur = start_seq, start_hash
    last_seq = links[-1].seq if links else 0

    def next_unvisited() -> Optional[Link]:
        for link in pending:
            if id(link) not in visited:
                return link
        return None

    while True:
        successor = _pick_successor(by_prev.get(cur, ()), visited, by_prev, pos, suspects)
        if successor is not None:
            visited.add(id(successor))
            if successor.seq != pos:
                findings.append(Finding(
                    OUT_OF_ORDER, chain_id, successor.seq, successor.record_id,
                    f"stored at seq {successor.seq} but its hash links it to position {pos}"))
            pos, cur = pos + 1, successor.chain_hash
            continue
        row = next_unvisited()
        if row is None:
            return findings
        visited.add(id(row))
        has_successor = row.chain_hash in by_prev
        # A genuine row has a successor unless it is the head; a row whose
        # predecessor we hold was never that predecessor's successor (a fork).
        dead_end = not has_successor and (row.seq != last_seq or row.seq <= pos)
        if row.prev_hash in known or dead_end:
            findings.append(Finding(
                INSERTED, chain_id, row.seq, row.record_id,
                "no sealed record links to this row: it was added outside the collector"))
            continue
        if row.seq > pos:
            for gone in range(pos, row.seq):
                findings.append(Finding(
                    MISSING, chain_id, gone, "",
                    f"record at seq {gone} was deleted (seq {row.seq} links to a record "
                    "that is not stored)"))
        else:
            findings.append(Finding(
                MISSING, chain_id, row.seq, row.record_id,
                f"the record before seq {row.seq} is not the one it was sealed after: "
                "a record was deleted and later rows renumbered, or the previous row "
                "was replaced"))
        pos, cur = row.seq + 1, row.chain_hash


def _pick_successor(candidates: Iterable[Link], visited: set[int],
                    by_prev: Mapping[bytes, list[Link]], pos: int,
                    suspects: frozenset[tuple[int, str]]) -> Optional[Link]:
    # Where two rows claim the same predecessor (a fork), the genuine one is
    # the one the rest of the chain builds on and whose content matches its
    # hash; ties go to the expected seq.
    best = None
    for link in candidates:
        if id(link) in visited:
            continue
        key = (link.chain_hash not in by_prev, (link.seq, link.record_id) in suspects,
               link.seq != pos, link.seq)
        if best is None or key < best[0]:
            best = (key, link)
    return best[1] if best else None
