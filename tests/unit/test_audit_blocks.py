"""Feeding the checkpoint audit a block of rows at a time (the engine path of verify)
is the same as feeding it row by row (the reference path), with this package's tree code
and with the collector's compiled one (aitrail_collector.native)."""

from __future__ import annotations

import random

import pytest
from test_checkpoint_audit import HOUR_NS, T0, _chain_hashes, _leaves, _signed_series

from aitrail.verify import merkle
from aitrail.verify.audit import CheckpointAudit, Trust
from aitrail.verify.checkpoint import generate_keypair, load_private_key
from aitrail.verify.merkle import CompactRange, TreeError
from aitrail_collector import native


def test_compact_range_extend_is_append_for_each():
    leaves = _leaves(300)
    for n in (0, 1, 2, 3, 7, 8, 9, 255, 256, 300):
        one, many = CompactRange(), CompactRange()
        for leaf in leaves[:n]:
            one.append(leaf)
        many.extend(leaves[:n // 3])
        many.extend(iter(leaves[n // 3:n]))
        assert (many.size, many.hashes, many.root()) == (one.size, one.hashes, one.root())
        assert many.root() == merkle.root(leaves[:n])


def test_compact_range_extend_refuses_a_short_hash_and_keeps_what_it_took():
    tree = CompactRange()
    with pytest.raises(TreeError, match="leaf hash is 31 bytes"):
        tree.extend(_leaves(3) + [b"x" * 31])
    assert tree.size == 3 and tree.root() == merkle.root(_leaves(3))


def _state(audit: CheckpointAudit):
    return (audit.findings, audit.root_at_capture, audit.leaves, audit.summary(),
            audit.tree.size, audit.tree.root())


@pytest.mark.parametrize("seed", range(6))
def test_blocks_and_rows_give_the_same_audit(seed):
    rng = random.Random(seed)
    key = load_private_key(generate_keypair()[0])
    n = rng.randrange(20, 120)
    leaves = _leaves(n)
    sizes = sorted(rng.sample(range(0, n + 1), 5))
    rows = _signed_series(key, sizes, [T0 + i * HOUR_NS for i in range(len(sizes))], leaves)
    stored = list(leaves)
    if seed % 2:  # a changed leaf after signing: some checkpoints no longer rebuild
        stored[rng.randrange(n)] = _leaves(n + 1)[-1]
    if seed % 3 == 0:  # rows missing at the end: checkpoints past the head
        stored = stored[: n - 5]
    chains = _chain_hashes(stored)
    capture = rng.choice(sizes)
    trust = Trust(public_key=key.public_key())
    by_row = CheckpointAudit("main", rows, None, trust, capture_size=capture)
    for leaf, ch in zip(stored, chains):
        by_row.add(leaf, ch)
    by_block = CheckpointAudit("main", rows, None, trust, capture_size=capture)
    compiled = CheckpointAudit("main", rows, None, trust, capture_size=capture,
                               extender=native.extend)
    by_blob = CheckpointAudit("main", rows, None, trust, capture_size=capture,
                              extender=native.extend)
    i = 0
    while i < len(stored):
        j = i + rng.randrange(1, 40)
        by_block.add_block(stored[i:j], chains[i:j])
        compiled.add_block(stored[i:j], chains[i:j])
        by_blob.add_blob(b"".join(stored[i:j]), b"".join(chains[i:j]))
        i = j
    for audit in (by_row, by_block, compiled, by_blob):
        audit.finish(len(stored))
    assert _state(by_block) == _state(by_row) == _state(compiled) == _state(by_blob)
    assert bool(by_row.findings) == bool(seed % 2 or seed % 3 == 0)


def test_blocks_of_bytearrays_are_kept_as_bytes_for_the_proofs():
    audit = CheckpointAudit("main", [], None, Trust(), extender=native.extend)
    leaves = _leaves(10)
    audit.add_block([bytearray(h) for h in leaves[:6]], _chain_hashes(leaves)[:6])
    audit.add_block(leaves[6:], _chain_hashes(leaves)[6:])
    assert audit.leaves == leaves and {type(h) for h in audit.leaves} == {bytes}
    assert audit.tree.root() == merkle.root(leaves)


def test_a_block_with_a_hash_of_the_wrong_size_is_refused_by_name():
    audit = CheckpointAudit("main", [], None, Trust(), extender=native.extend)
    leaves = _leaves(4)
    with pytest.raises(TreeError, match="leaf hash 2 of the block is 31 bytes"):
        audit.add_block(leaves[:2] + [leaves[2][:31], leaves[3]], _chain_hashes(leaves))
    with pytest.raises(TreeError, match="chain hash 0 of the block is 33 bytes"):
        audit.add_block(leaves, [b"x" * 33] + _chain_hashes(leaves)[1:])
    with pytest.raises(TreeError, match="4 leaf hashes but 3 chain hashes"):
        audit.add_block(leaves, _chain_hashes(leaves)[:3])
    with pytest.raises(TreeError, match="not n\\*32 each"):
        audit.add_blob(b"".join(leaves), b"".join(_chain_hashes(leaves))[:-32])
    assert audit.tree.size == 0 and len(audit.leaves) == 0  # nothing taken


def test_a_leaf_blob_reads_as_the_sequence_of_its_leaves():
    leaves = _leaves(7)
    held = merkle.LeafBlob(b"".join(leaves[:3]))
    held.extend_blob(b"".join(leaves[3:6]))
    held.append(bytearray(leaves[6]))
    assert len(held) == 7 and list(held) == leaves and held == leaves
    assert held[0] == leaves[0] and held[-1] == leaves[-1] and type(held[2]) is bytes
    assert held[2:5] == leaves[2:5] and held[::3] == leaves[::3]
    assert held.slice_blob(1, 4) == b"".join(leaves[1:4]) and held.blob() == b"".join(leaves)
    assert held != leaves[:6] and held == merkle.LeafBlob(held.blob())
    with pytest.raises(IndexError):
        held[7]
    with pytest.raises(TreeError, match="not a multiple of 32"):
        held.extend_blob(b"x" * 31)
    with pytest.raises(TreeError, match="leaf hash is 31 bytes"):
        held.append(b"x" * 31)
    with pytest.raises(TreeError, match=r"leaves \[5, 9\) out of range"):
        held.slice_blob(5, 9)
    assert merkle.consistency_proof(held, 3, 7) == merkle.consistency_proof(leaves, 3, 7)


def _counting(calls: list[int]):
    def extender(size: int, frontier: bytes, leaves: bytes):
        calls.append(len(leaves) // 32)
        return native.extend(size, frontier, leaves)
    return extender


def _audit_of(stored: list[bytes], rows, calls: list[int]) -> CheckpointAudit:
    key_trust = Trust()
    audit = CheckpointAudit("main", rows, None, key_trust, extender=_counting(calls))
    audit.add_block(stored, _chain_hashes(stored))
    audit.finish(len(stored))
    return audit


def test_checkpoints_the_rows_rebuild_need_no_consistency_proofs():
    # Each proof rehashes up to every leaf: with a checkpoint an hour over a year, the
    # proofs took hours while the rebuilt roots, which imply them, were already checked.
    key = load_private_key(generate_keypair()[0])
    leaves = _leaves(512)
    sizes = list(range(8, 513, 8))
    rows = _signed_series(key, sizes, [T0 + i * HOUR_NS for i in range(len(sizes))], leaves)
    calls: list[int] = []
    audit = _audit_of(leaves, rows, calls)
    assert audit.findings == []
    assert sum(calls) == len(leaves)  # the tree, once; no leaf hashed again for a proof


def test_a_checkpoint_the_rows_do_not_rebuild_still_gets_its_consistency_proofs():
    key = load_private_key(generate_keypair()[0])
    leaves = _leaves(64)
    sizes = [16, 32, 48, 64]
    rows = _signed_series(key, sizes, [T0 + i * HOUR_NS for i in range(len(sizes))], leaves)
    stored = list(leaves)
    stored[40] = _leaves(65)[-1]  # changed after checkpoint 2 was signed
    details = [f.detail for f in _audit_of(stored, rows, []).findings]
    assert sum("do not rebuild its signed root" in d for d in details) == 2  # 3 and 4
    assert any(d.startswith("checkpoint 3: no consistency with checkpoint 2") for d in details)
    assert not any(d.startswith(("checkpoint 2:", "checkpoint 1:")) for d in details)
