"""aitrail.verify.merkle: RFC 6962 trees, proofs and verifiers.

The transparency-dev/merkle vectors are read in place from ../shared/testdata/rfc6962 (next to
the repository, not copied into it); one test case per vector file, named by its path.
"""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any, Sequence

import pytest

from aitrail.verify import merkle
from aitrail.verify.hashes import EMPTY_ROOT, leaf_hash, node_hash
from aitrail.verify.merkle import (
    CompactRange,
    ProofError,
    consistency_proof,
    inclusion_proof,
    root,
    verify_consistency,
    verify_inclusion,
)

VECTORS = Path(__file__).resolve().parents[2].parent / "shared" / "testdata" / "rfc6962"

# The RFC 6962 reference leaves used by certificate-transparency and transparency-dev/merkle,
# and the roots of their first 1..8 leaves.
REF_LEAVES = [
    bytes.fromhex(x)
    for x in ("", "00", "10", "2021", "3031", "40414243", "5051525354555657",
              "606162636465666768696a6b6c6d6e6f")
]
REF_ROOTS = [
    bytes.fromhex(x)
    for x in (
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    )
]
REF_HASHES = [leaf_hash(d) for d in REF_LEAVES]


def _leaves(n: int) -> list[bytes]:
    return [leaf_hash(i.to_bytes(4, "big")) for i in range(n)]


LEAVES = _leaves(70)


def _mth(hashes: Sequence[bytes]) -> bytes:
    """MTH straight from RFC 6962 section 2.1, recursive: the independent reference."""
    if not hashes:
        return hashlib.sha256(b"").digest()
    if len(hashes) == 1:
        return hashes[0]
    k = 1 << ((len(hashes) - 1).bit_length() - 1)
    return hashlib.sha256(b"\x01" + _mth(hashes[:k]) + _mth(hashes[k:])).digest()


def _flip(proof: list[bytes], i: int) -> list[bytes]:
    bad = list(proof)
    bad[i] = bytes([bad[i][0] ^ 0x01]) + bad[i][1:]
    return bad


# --------------------------------------------------------------------------- shared vectors


def _vector_params(kind: str) -> list[Any]:
    folder = VECTORS / kind
    if not folder.is_dir():
        reason = f"shared RFC 6962 vectors not found: {folder} is absent"
        return [pytest.param(None, id=f"{kind}-vectors-absent", marks=pytest.mark.skip(reason))]
    files = sorted(folder.rglob("*.json"))
    return [pytest.param(f, id=f.relative_to(VECTORS).as_posix()) for f in files]


def _load(path: Path) -> dict[str, Any]:
    v = json.loads(path.read_text())
    v["proof"] = [base64.b64decode(h) for h in v["proof"] or []]
    for key in ("root", "leafHash", "root1", "root2"):
        if key in v:
            v[key] = base64.b64decode(v[key])
    return v


@pytest.mark.parametrize("path", _vector_params("inclusion"))
def test_inclusion_vector(path: Path) -> None:
    v = _load(path)
    args = (v["leafHash"], v["leafIdx"], v["treeSize"], v["proof"], v["root"])
    if v["wantErr"]:
        with pytest.raises(ProofError):
            verify_inclusion(*args)
    else:
        verify_inclusion(*args)


@pytest.mark.parametrize("path", _vector_params("consistency"))
def test_consistency_vector(path: Path) -> None:
    v = _load(path)
    args = (v["size1"], v["size2"], v["proof"], v["root1"], v["root2"])
    if v["wantErr"]:
        with pytest.raises(ProofError):
            verify_consistency(*args)
    else:
        verify_consistency(*args)


def _happy_paths(kind: str) -> list[dict[str, Any]]:
    folder = VECTORS / kind
    if not folder.is_dir():
        pytest.skip(f"shared RFC 6962 vectors not found: {folder} is absent")
    found = [_load(p) for p in sorted(folder.glob("[0-9]*/happy-path.json"))]
    assert found, f"no happy-path vectors under {folder}"
    return found


def test_vectors_match_generated_inclusion_proofs() -> None:
    # The numbered vector folders are built on the reference leaves: our proofs and roots
    # must be byte for byte the ones upstream published.
    for v in _happy_paths("inclusion"):
        size, index = v["treeSize"], v["leafIdx"]
        assert v["leafHash"] == REF_HASHES[index]
        assert v["root"] == root(REF_HASHES[:size]) == REF_ROOTS[size - 1]
        assert inclusion_proof(REF_HASHES, index, size) == v["proof"]


def test_vectors_match_generated_consistency_proofs() -> None:
    for v in _happy_paths("consistency"):
        size1, size2 = v["size1"], v["size2"]
        assert v["root1"] == REF_ROOTS[size1 - 1]
        assert v["root2"] == REF_ROOTS[size2 - 1]
        assert consistency_proof(REF_HASHES, size1, size2) == v["proof"]


# --------------------------------------------------------------------------- hashing, roots


def test_hash_functions() -> None:
    assert EMPTY_ROOT == bytes.fromhex(
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    )
    assert leaf_hash(b"abc") == hashlib.sha256(b"\x00abc").digest()
    a, b = leaf_hash(b"a"), leaf_hash(b"b")
    assert node_hash(a, b) == hashlib.sha256(b"\x01" + a + b).digest()
    assert node_hash(a, b) != node_hash(b, a)


def test_root_known_values() -> None:
    assert root([]) == EMPTY_ROOT
    for n in range(1, 9):
        assert root(REF_HASHES[:n]) == REF_ROOTS[n - 1], n


def test_root_matches_recursive_definition() -> None:
    for n in range(0, 71):
        assert root(LEAVES[:n]) == _mth(LEAVES[:n]), n


def test_root_of_a_large_tree() -> None:
    # 50 times the interpreter's recursion limit: root() must not recurse per leaf.
    big = _leaves(50_000)
    assert root(big) == _mth(big)


def test_root_rejects_malformed_leaf_hash() -> None:
    with pytest.raises(ValueError, match="leaf hash is 3 bytes"):
        root([LEAVES[0], b"abc"])


# --------------------------------------------------------------------------- compact range


def test_compact_range_root_equals_root() -> None:
    cr = CompactRange()
    assert cr.size == 0 and cr.hashes == [] and cr.root() == EMPTY_ROOT
    for n in range(1, 71):
        cr.append(LEAVES[n - 1])
        assert cr.size == n
        assert len(cr.hashes) == n.bit_count()
        assert cr.root() == root(LEAVES[:n]), n


def test_compact_range_hashes_are_perfect_subtree_roots() -> None:
    cr = CompactRange()
    cr.extend(LEAVES[:13])  # 13 = 8 + 4 + 1
    assert cr.hashes == [root(LEAVES[0:8]), root(LEAVES[8:12]), LEAVES[12]]


def test_compact_range_from_hashes_round_trip() -> None:
    for n in range(0, 71):
        cr = CompactRange()
        cr.extend(LEAVES[:n])
        again = CompactRange.from_hashes(cr.size, cr.hashes)
        assert (again.size, again.hashes, again.root()) == (cr.size, cr.hashes, cr.root())
        # Continue from the checkpoint without the old leaves, as a verifier would.
        again.extend(LEAVES[n:70])
        assert again.root() == root(LEAVES)


def test_compact_range_hashes_is_a_copy() -> None:
    cr = CompactRange()
    cr.extend(LEAVES[:3])
    cr.hashes.append(b"x" * 32)
    cr.hashes.clear()
    assert cr.root() == root(LEAVES[:3])


def test_compact_range_from_hashes_validates() -> None:
    good = CompactRange()
    good.extend(LEAVES[:6])  # two hashes
    with pytest.raises(ValueError, match="has 2 hashes, got 1"):
        CompactRange.from_hashes(6, good.hashes[:1])
    with pytest.raises(ValueError, match="has 2 hashes, got 3"):
        CompactRange.from_hashes(6, good.hashes + [LEAVES[0]])
    with pytest.raises(ValueError, match="has 0 hashes, got 2"):
        CompactRange.from_hashes(0, good.hashes)
    with pytest.raises(ValueError, match="hash 1 is 31 bytes"):
        CompactRange.from_hashes(6, [good.hashes[0], good.hashes[1][:31]])
    with pytest.raises(ValueError, match="negative"):
        CompactRange.from_hashes(-1, [])
    with pytest.raises(ValueError, match="leaf hash is 0 bytes"):
        good.append(b"")


# --------------------------------------------------------------------------- inclusion


def test_inclusion_proofs_verify_for_every_index() -> None:
    for size in range(1, 71):
        tree_root = root(LEAVES[:size])
        for index in range(size):
            proof = inclusion_proof(LEAVES, index, size)
            verify_inclusion(LEAVES[index], index, size, proof, tree_root)


def test_inclusion_proofs_reject_tampering() -> None:
    for size in range(1, 71):
        tree_root = root(LEAVES[:size])
        for index in range(size):
            proof = inclusion_proof(LEAVES, index, size)
            leaf = LEAVES[index]
            if size > 1:
                other = (index + 1) % size
                with pytest.raises(ProofError):
                    verify_inclusion(leaf, other, size, proof, tree_root)
                with pytest.raises(ProofError):
                    verify_inclusion(LEAVES[other], index, size, proof, tree_root)
            for i in range(len(proof)):
                with pytest.raises(ProofError, match="root mismatch"):
                    verify_inclusion(leaf, index, size, _flip(proof, i), tree_root)
            with pytest.raises(ProofError, match="root mismatch"):
                verify_inclusion(leaf, index, size, proof, _flip([tree_root], 0)[0])
            with pytest.raises(ProofError, match="wrong inclusion proof size"):
                verify_inclusion(leaf, index, size, proof + [tree_root], tree_root)


def test_inclusion_proof_defaults_to_whole_sequence() -> None:
    assert inclusion_proof(LEAVES[:9], 4) == inclusion_proof(LEAVES, 4, 9)
    assert inclusion_proof(LEAVES[:1], 0) == []


def test_inclusion_proof_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="leaf index 5 out of range for tree size 5"):
        inclusion_proof(LEAVES, 5, 5)
    with pytest.raises(ValueError, match="leaf index -1"):
        inclusion_proof(LEAVES, -1, 5)
    with pytest.raises(ValueError, match="tree size 71 out of range"):
        inclusion_proof(LEAVES, 0, 71)
    with pytest.raises(ValueError):
        inclusion_proof([], 0)


def test_verify_inclusion_messages() -> None:
    proof = inclusion_proof(LEAVES, 2, 8)
    tree_root = root(LEAVES[:8])
    with pytest.raises(ProofError, match="leaf index 8 out of range for tree size 8"):
        verify_inclusion(LEAVES[2], 8, 8, proof, tree_root)
    with pytest.raises(ProofError, match="negative"):
        verify_inclusion(LEAVES[2], -1, 8, proof, tree_root)
    with pytest.raises(ProofError, match="out of range for tree size 0"):
        verify_inclusion(LEAVES[0], 0, 0, [], EMPTY_ROOT)
    with pytest.raises(ProofError, match="leaf hash is 5 bytes"):
        verify_inclusion(b"short", 2, 8, proof, tree_root)
    with pytest.raises(ProofError, match="wrong inclusion proof size 2, want 3"):
        verify_inclusion(LEAVES[2], 2, 8, proof[:2], tree_root)
    with pytest.raises(ProofError, match="proof hash 1 is 0 bytes"):
        verify_inclusion(LEAVES[2], 2, 8, [proof[0], b"", proof[2]], tree_root)
    with pytest.raises(ProofError, match="root mismatch at tree size 8"):
        verify_inclusion(LEAVES[2], 2, 8, proof, EMPTY_ROOT)


# --------------------------------------------------------------------------- consistency


def test_consistency_proofs_verify_for_every_pair() -> None:
    roots = [root(LEAVES[:n]) for n in range(41)]
    for size2 in range(1, 41):
        for size1 in range(1, size2 + 1):
            proof = consistency_proof(LEAVES, size1, size2)
            verify_consistency(size1, size2, proof, roots[size1], roots[size2])


def test_consistency_proofs_reject_tampering() -> None:
    roots = [root(LEAVES[:n]) for n in range(42)]
    for size2 in range(2, 41):
        for size1 in range(1, size2):
            proof = consistency_proof(LEAVES, size1, size2)
            r1, r2 = roots[size1], roots[size2]
            assert proof, (size1, size2)
            for i in range(len(proof)):
                with pytest.raises(ProofError, match="root mismatch"):
                    verify_consistency(size1, size2, _flip(proof, i), r1, r2)
            bad_roots = [(roots[size1 - 1], r2), (r1, roots[size2 + 1]), (r2, r1)]
            for a, b in bad_roots:
                with pytest.raises(ProofError):
                    verify_consistency(size1, size2, proof, a, b)
            with pytest.raises(ProofError, match="(wrong|empty) consistency proof"):
                verify_consistency(size1, size2, proof[:-1], r1, r2)
            with pytest.raises(ProofError, match="wrong consistency proof size"):
                verify_consistency(size1, size2, proof + [r2], r1, r2)
            with pytest.raises(ProofError):
                verify_consistency(size1, size2 + 1, proof, r1, roots[size2 + 1])
            if size1 > 1:
                with pytest.raises(ProofError):
                    verify_consistency(size1 - 1, size2, proof, roots[size1 - 1], r2)


def test_consistency_proof_equal_sizes_is_empty() -> None:
    assert consistency_proof(LEAVES, 7, 7) == []
    verify_consistency(7, 7, [], root(LEAVES[:7]), root(LEAVES[:7]))


def test_consistency_proof_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="size1=0"):
        consistency_proof(LEAVES, 0, 5)
    with pytest.raises(ValueError, match="size1=6, size2=5"):
        consistency_proof(LEAVES, 6, 5)
    with pytest.raises(ValueError, match="size2 71 out of range"):
        consistency_proof(LEAVES, 1, 71)


def test_verify_consistency_messages() -> None:
    r3, r8 = root(LEAVES[:3]), root(LEAVES[:8])
    proof = consistency_proof(LEAVES, 3, 8)
    with pytest.raises(ProofError, match=r"size2 \(3\) < size1 \(8\)"):
        verify_consistency(8, 3, proof, r8, r3)
    with pytest.raises(ProofError, match="empty tree"):
        verify_consistency(0, 8, [], EMPTY_ROOT, r8)
    with pytest.raises(ProofError, match="empty tree"):
        verify_consistency(0, 0, [], EMPTY_ROOT, EMPTY_ROOT)
    with pytest.raises(ProofError, match="size1 = size2 = 3, but the proof has 1 hashes"):
        verify_consistency(3, 3, [r3], r3, r3)
    with pytest.raises(ProofError, match="root mismatch at tree size 3"):
        verify_consistency(3, 3, [], r3, r8)
    with pytest.raises(ProofError, match="empty consistency proof"):
        verify_consistency(3, 8, [], r3, r8)
    with pytest.raises(ProofError, match="proof hash 0 is 1 bytes"):
        verify_consistency(3, 8, [b"x"] + proof[1:], r3, r8)
    with pytest.raises(ProofError, match="root mismatch at tree size 3"):
        verify_consistency(3, 8, proof, r8, r8)
    with pytest.raises(ProofError, match="root mismatch at tree size 8"):
        verify_consistency(3, 8, proof, r3, r3)


# --------------------------------------------------------------------------- cost, errors


def test_proof_generation_hashes_each_node_at_most_once(monkeypatch: pytest.MonkeyPatch) -> None:
    # O(n) per proof, not O(n log n): the sibling subtrees are disjoint, so fewer than n
    # node hashes (plus the few that join a range's perfect subtrees into its root).
    calls = 0
    real = merkle.node_hash

    def counting(left: bytes, right: bytes) -> bytes:
        nonlocal calls
        calls += 1
        return real(left, right)

    monkeypatch.setattr(merkle, "node_hash", counting)
    hashes = _leaves(1000)
    for index in (0, 1, 499, 998, 999):
        calls = 0
        inclusion_proof(hashes, index)
        assert calls < 1000 + 2 * 10, (index, calls)
    for size1 in (1, 3, 500, 511, 999):
        calls = 0
        consistency_proof(hashes, size1, 1000)
        assert calls < 1000 + 2 * 10, (size1, calls)


def test_large_tree_proofs() -> None:
    hashes = _leaves(5000)
    r = root(hashes)
    for index in (0, 1, 2047, 4095, 4096, 4999):
        verify_inclusion(hashes[index], index, 5000, inclusion_proof(hashes, index), r)
    for size1 in (1, 1000, 4096, 4999):
        proof = consistency_proof(hashes, size1, 5000)
        verify_consistency(size1, 5000, proof, root(hashes[:size1]), r)


def test_proof_error_is_a_value_error() -> None:
    assert issubclass(ProofError, ValueError)
    with pytest.raises(ValueError):
        verify_inclusion(LEAVES[0], 0, 1, [], EMPTY_ROOT)
