"""Merkle proofs over a stored chain, made from the stored leaf hashes.

The collector answers with proofs; it is never trusted for them: every proof is
checked by the verifier against a signed root (``aitrail.verify.merkle``,
``aitrail.verify.bundle``). The sibling subtrees are hashed in C (``native``): one
proof hashes up to every leaf of the tree.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence

from aitrail.errors import AitrailError
from aitrail.verify import merkle
from aitrail.verify.bundle import BundleError, make_bundle
from aitrail.verify.checkpoint import SignedCheckpoint
from aitrail_collector import native
from aitrail_collector.ledger.checkpointer import Checkpointer, NotCovered
from aitrail_collector.store import periods, verify_sql
from aitrail_collector.store.client import Store


class ProofRequestError(AitrailError, LookupError):
    """Nothing to prove: unknown record, or sizes outside the stored chain."""


class UnprovableRecord(AitrailError, ValueError):
    """The record is stored in a form no bundle can carry (a map with a key written in
    twice): it was changed after sealing, and the message says how."""


def _leaves(store: Store, chain_id: str, size: int) -> list[bytes]:
    leaves = store.leaf_hashes(chain_id, 1, size)
    if len(leaves) != size:
        raise ProofRequestError(f"chain {chain_id!r} holds {len(leaves)} of the first {size} "
                                "records (dropped by retention, or the size is past the head)")
    return leaves


def stored_covering(store: Store, chain_id: str) -> Callable[[int], SignedCheckpoint]:
    """The first stored checkpoint covering a seq (for a store no collector holds)."""
    def covering(seq: int) -> SignedCheckpoint:
        for _, size, text, _ in store.checkpoints(chain_id):
            if size >= seq:
                return SignedCheckpoint.parse(text)
        raise ProofRequestError(f"no checkpoint of chain {chain_id!r} covers seq {seq} yet "
                                "(the running collector signs one on request)")
    return covering


def record_bundle(store: Store, checkpointer: Optional[Checkpointer], record_id: str) -> str:
    """The proof bundle of one record, against the first checkpoint that covers it."""
    where = store.position(record_id)
    if where is None:
        raise ProofRequestError(f"no record {record_id!r}")
    chain_id, seq = where
    if checkpointer is None:
        signed = stored_covering(store, chain_id)(seq)
    elif chain_id != checkpointer.chain_id:
        raise ProofRequestError(f"record {record_id!r} is on chain {chain_id!r}, which this "
                                "collector does not sign")
    else:
        try:
            signed = checkpointer.covering(seq)
        except NotCovered as exc:
            raise ProofRequestError(str(exc)) from None
    leaves = _leaves(store, chain_id, signed.checkpoint.size)
    link, envelope = next(verify_sql.rows_at(store, chain_id, [seq]))
    proof = merkle.inclusion_proof(leaves, seq - 1, signed.checkpoint.size,
                                   native.subtree_roots(leaves))
    try:
        return make_bundle(envelope, seq, link.leaf_hash, proof, signed)
    except BundleError as exc:
        raise UnprovableRecord(str(exc)) from None


@dataclass
class TaskProofs:
    """Bundles of a set of records against each chain's newest signed checkpoint."""
    checkpoints: dict[str, SignedCheckpoint] = field(default_factory=dict)
    bundles: dict[str, str] = field(default_factory=dict)   # record id -> bundle text
    uncovered: list[str] = field(default_factory=list)      # record ids no checkpoint covers
    # record id -> why no bundle can be made of it (UnprovableRecord): it failed
    refused: dict[str, str] = field(default_factory=dict)


def latest_bundles(store: Store, positions: Sequence[tuple[str, str, int]]) -> TaskProofs:
    """The proof bundle of each (record id, chain, seq) against its chain's newest
    stored checkpoint, so one checkpoint vouches for the whole task; a record past it
    is listed as uncovered, one no bundle can carry as refused (with the reason). The
    tree is read once per chain (its leaves up to the checkpoint) and its subtrees
    hashed in C."""
    out = TaskProofs()
    chains = sorted({chain for _, chain, _ in positions})
    for chain in chains:
        signed = periods.newest_signed(store, chain)
        size = signed.checkpoint.size if signed else 0
        mine = [(rid, seq) for rid, c, seq in positions if c == chain]
        out.uncovered += [rid for rid, seq in mine if seq > size]
        covered = sorted(seq for _, seq in mine if seq <= size)
        if signed is None or not covered:
            continue
        out.checkpoints[chain] = signed
        leaves = _leaves(store, chain, size)
        roots = native.subtree_roots(leaves)
        for link, envelope in verify_sql.rows_at(store, chain, covered):
            proof = merkle.inclusion_proof(leaves, link.seq - 1, size, roots)
            try:
                out.bundles[envelope["record_id"]] = make_bundle(
                    envelope, link.seq, link.leaf_hash, proof, signed)
            except BundleError as exc:
                out.refused[envelope["record_id"]] = str(exc)
    return out


def inclusion(store: Store, chain_id: str, index: int, size: int) -> dict[str, Any]:
    if not 0 <= index < size:
        raise ProofRequestError(f"index {index} is not inside a tree of size {size}")
    leaves = _leaves(store, chain_id, size)
    roots = native.subtree_roots(leaves)
    return {"chain_id": chain_id, "leaf_index": index, "tree_size": size,
            "leaf_hash": leaves[index].hex(), "root": roots(0, size).hex(),
            "proof": [h.hex() for h in merkle.inclusion_proof(leaves, index, size, roots)]}


def consistency(store: Store, chain_id: str, size1: int, size2: int) -> dict[str, Any]:
    if not 0 < size1 <= size2:
        raise ProofRequestError(f"sizes {size1}, {size2}: expected 0 < size1 <= size2")
    leaves = _leaves(store, chain_id, size2)
    roots = native.subtree_roots(leaves)
    return {"chain_id": chain_id, "size1": size1, "size2": size2,
            "root1": roots(0, size1).hex(), "root2": roots(0, size2).hex(),
            "proof": [h.hex() for h in merkle.consistency_proof(leaves, size1, size2, roots)]}
