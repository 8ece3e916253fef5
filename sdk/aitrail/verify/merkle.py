"""RFC 6962 / RFC 9162 Merkle trees over SHA-256: roots, proofs and their verification.

    leaf_hash(d)    = SHA-256(0x00 || d)
    node_hash(l, r) = SHA-256(0x01 || l || r)
    MTH({})         = SHA-256()                  (EMPTY_ROOT)

(all three from aitrail.verify.hashes)

The verifiers follow transparency-dev/merkle (proof/verify.go) decision for decision, so the
shared vectors in ../shared/testdata/rfc6962 pass or fail here exactly as they do there. In
particular a consistency proof *from* size 0 is an error, as in upstream since PR #236 and as
RFC 6962 section 2.1.2 (0 < m < n) has it: the empty tree is a prefix of every tree, so there
is nothing to prove and a caller holding a size-0 checkpoint should simply skip the check.

Proof generation (RFC 6962 sections 2.1.1 PATH and 2.1.2 PROOF) walks down the tree in a loop,
not by recursion, and hashes each sibling subtree once: the siblings are disjoint ranges of
leaves, so one proof costs at most n - 1 node hashes.

Pure functions, stdlib only, no I/O.
"""

from __future__ import annotations

from typing import Callable, Iterable, Iterator, Optional, Sequence, Union, overload

from aitrail.errors import AitrailError
from aitrail.verify.hashes import EMPTY_ROOT, HASH_SIZE, node_hash


class TreeError(AitrailError, ValueError):
    """Tree arguments that do not fit together: a size or index out of range, a saved
    compact range that does not match its size, a hash of the wrong length."""


class ProofError(AitrailError, ValueError):
    """A proof did not verify. The message says which check failed."""


# --------------------------------------------------------------------------- compact range

# A compiled compact-range extension: (size, frontier, leaves) -> (size, frontier), the
# frontier and the leaves each one blob of 32-byte hashes (the collector's
# ``aitrail_collector.native.extend``). The SDK never imports one: a caller that has one
# passes it to ``CompactRange.extend_blob``, and this module stays the reference it is held to.
BlobExtender = Callable[[int, bytes, bytes], tuple[int, bytes]]


class CompactRange:
    """The running state of a tree of ``size`` leaves in O(log n) memory (a "frontier").

    ``hashes`` are the roots of the perfect subtrees that tile leaves [0, size), left to right,
    largest first: one per set bit of ``size``. That is enough to append further leaves and to
    compute the root, so a collector need not keep old leaf hashes, and a verifier can carry a
    tree on from a checkpoint after retention deleted the leaves before it.
    """

    __slots__ = ("_size", "_hashes")

    def __init__(self) -> None:
        self._size = 0
        self._hashes: list[bytes] = []

    @classmethod
    def from_hashes(cls, size: int, hashes: Iterable[bytes]) -> CompactRange:
        """Rebuild a range saved as (``size``, ``hashes``); raises TreeError if they disagree."""
        hashes = [bytes(h) for h in hashes]
        if size < 0:
            raise TreeError(f"tree size {size} is negative")
        if len(hashes) != size.bit_count():
            raise TreeError(
                f"a compact range of size {size} has {size.bit_count()} hashes, got {len(hashes)}"
            )
        for i, h in enumerate(hashes):
            _check_hash_size(h, f"hash {i}", TreeError)
        cr = cls()
        cr._size, cr._hashes = size, hashes
        return cr

    @property
    def size(self) -> int:
        return self._size

    @property
    def hashes(self) -> list[bytes]:
        return list(self._hashes)  # a copy: the caller must not be able to corrupt the state

    def append(self, leaf_hash: bytes) -> None:
        _check_hash_size(leaf_hash, "leaf hash", TreeError)
        h = bytes(leaf_hash)
        # Each trailing 1 bit of the old size is a perfect subtree the same height as the one
        # being carried up; merge with it, exactly like incrementing a binary counter.
        size = self._size
        while size & 1:
            h = node_hash(self._hashes.pop(), h)
            size >>= 1
        self._hashes.append(h)
        self._size += 1

    def extend(self, leaf_hashes: Iterable[bytes]) -> None:
        """``append`` for each, in one loop: a verifier feeds a whole chain through here."""
        hashes, size = self._hashes, self._size
        try:
            for leaf in leaf_hashes:
                if len(leaf) != HASH_SIZE:
                    _check_hash_size(leaf, "leaf hash", TreeError)
                h, s = bytes(leaf), size
                while s & 1:
                    h = node_hash(hashes.pop(), h)
                    s >>= 1
                hashes.append(h)
                size += 1
        finally:
            self._size = size

    def extend_blob(self, leaves: bytes, extender: Optional[BlobExtender] = None) -> None:
        """``extend`` with the leaves as one blob of n*32 bytes; with ``extender``, by it.

        What the extender returns is held to the shape it must have (n more leaves, one
        hash per set bit of the new size) before it becomes the state, so a faulty one
        raises TreeError instead of leaving a range that no longer matches its size.
        """
        n, rest = divmod(len(leaves), HASH_SIZE)
        if rest:
            raise TreeError(f"a blob of leaf hashes is {len(leaves)} bytes, not a multiple "
                            f"of {HASH_SIZE}")
        if extender is None:
            self.extend(leaves[i:i + HASH_SIZE] for i in range(0, len(leaves), HASH_SIZE))
            return
        size, frontier = extender(self._size, b"".join(self._hashes), bytes(leaves))
        if size != self._size + n or len(frontier) != HASH_SIZE * size.bit_count():
            raise TreeError(f"the extender gave size {size} with {len(frontier)} bytes of "
                            f"frontier for {self._size} + {n} leaves")
        self._size = size
        self._hashes = [frontier[i:i + HASH_SIZE] for i in range(0, len(frontier), HASH_SIZE)]

    def root(self) -> bytes:
        if not self._hashes:
            return EMPTY_ROOT
        # RFC 6962 splits at the largest power of two, so the tree is the perfect subtrees
        # joined right to left: MTH = h0 . (h1 . (h2 . ...)).
        h = self._hashes[-1]
        for left in reversed(self._hashes[:-1]):
            h = node_hash(left, h)
        return h

    def __repr__(self) -> str:
        return f"CompactRange(size={self._size}, hashes={len(self._hashes)})"


class LeafBlob(Sequence[bytes]):
    """Leaf hashes held as one growing blob of n*32 bytes, read as a sequence of 32-byte
    ``bytes``. A verifier keeps a chain's every leaf for its consistency proofs: 10M
    leaves are 320 MB here, three times that as Python objects, and the blob goes to
    compiled code as it is (``blob``), with no join over ten million objects."""

    __slots__ = ("_blob",)

    def __init__(self, blob: bytes = b"") -> None:
        self._blob = bytearray()
        self.extend_blob(blob)

    def append(self, leaf_hash: bytes) -> None:
        _check_hash_size(leaf_hash, "leaf hash", TreeError)
        self._blob += leaf_hash

    def extend_blob(self, leaves: bytes) -> None:
        if len(leaves) % HASH_SIZE:
            raise TreeError(f"a blob of leaf hashes is {len(leaves)} bytes, not a multiple "
                            f"of {HASH_SIZE}")
        self._blob += leaves

    def blob(self) -> bytes:
        """The leaves, concatenated (a copy: the caller cannot change these)."""
        return bytes(self._blob)

    def slice_blob(self, begin: int, end: int) -> bytes:
        """Leaves [begin, end), concatenated."""
        if not 0 <= begin <= end <= len(self):
            raise TreeError(f"leaves [{begin}, {end}) out of range for {len(self)}")
        return bytes(self._blob[begin * HASH_SIZE:end * HASH_SIZE])

    def __len__(self) -> int:
        return len(self._blob) // HASH_SIZE

    @overload
    def __getitem__(self, index: int) -> bytes: ...

    @overload
    def __getitem__(self, index: slice) -> list[bytes]: ...

    def __getitem__(self, index: Union[int, slice]) -> Union[bytes, list[bytes]]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        n = len(self)
        if index < 0:
            index += n
        if not 0 <= index < n:
            raise IndexError(f"leaf {index} out of range for {n} leaves")
        return bytes(self._blob[index * HASH_SIZE:(index + 1) * HASH_SIZE])

    def __iter__(self) -> Iterator[bytes]:
        blob = self._blob
        return (bytes(blob[i:i + HASH_SIZE]) for i in range(0, len(blob), HASH_SIZE))

    def __eq__(self, other: object) -> bool:
        if isinstance(other, LeafBlob):
            return self._blob == other._blob
        if isinstance(other, Sequence) and not isinstance(other, (bytes, bytearray, str)):
            return len(other) == len(self) and all(a == b for a, b in zip(self, other))
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        return f"LeafBlob({len(self)} leaves)"


def join_hashes(hashes: Sequence[bytes], what: str = "leaf hash", where: str = "") -> bytes:
    """The blob of these 32-byte hashes (as a driver's column block gives them), refusing
    one of another length with TreeError: a short and a long hash would otherwise shift
    every later one. ``what`` and ``where`` word the error ("leaf hash 3 is 31 bytes")."""
    if not set(map(len, hashes)) <= {HASH_SIZE}:  # a C loop, not one in Python
        bad = next(i for i, h in enumerate(hashes) if len(h) != HASH_SIZE)
        raise TreeError(f"{what} {bad}{where} is {len(hashes[bad])} bytes, want {HASH_SIZE}")
    return b"".join(hashes)


def root(leaf_hashes: Sequence[bytes]) -> bytes:
    """MTH of the leaves: O(n) hashes, O(log n) memory, no recursion."""
    cr = CompactRange()
    cr.extend(leaf_hashes)
    return cr.root()


def _range_root(leaf_hashes: Sequence[bytes], begin: int, end: int) -> bytes:
    # Indexing instead of slicing: the caller's sequence may be large or lazily loaded.
    cr = CompactRange()
    for i in range(begin, end):
        cr.append(leaf_hashes[i])
    return cr.root()


# --------------------------------------------------------------------------- proof generation


def _split(n: int) -> int:
    """k, the largest power of two < n (n >= 2): where RFC 6962 splits a tree of n leaves."""
    return 1 << ((n - 1).bit_length() - 1)


# The root of leaves [begin, end), computed elsewhere (the collector's compiled code): the
# proof generators call it for each sibling subtree, which is where their time goes.
SubtreeRoot = Callable[[int, int], bytes]


def inclusion_proof(
    leaf_hashes: Sequence[bytes], index: int, tree_size: int | None = None,
    subtree_root: Optional[SubtreeRoot] = None,
) -> list[bytes]:
    """PATH(index, D[0:tree_size]) of RFC 6962 section 2.1.1, bottom-up.

    ``subtree_root``: see SubtreeRoot; by default this module's loop.
    Raises TreeError (a ValueError) unless 0 <= index < tree_size <= len(leaf_hashes).
    """
    root_of = subtree_root or (lambda begin, end: _range_root(leaf_hashes, begin, end))
    if tree_size is None:
        tree_size = len(leaf_hashes)
    if not 0 <= tree_size <= len(leaf_hashes):
        raise TreeError(f"tree size {tree_size} out of range for {len(leaf_hashes)} leaves")
    if not 0 <= index < tree_size:
        raise TreeError(f"leaf index {index} out of range for tree size {tree_size}")
    # Walk from the root down to the leaf; each step records the sibling subtree's root.
    top_down: list[bytes] = []
    begin, end = 0, tree_size
    while end - begin > 1:
        mid = begin + _split(end - begin)
        if index < mid:
            top_down.append(root_of(mid, end))
            end = mid
        else:
            top_down.append(root_of(begin, mid))
            begin = mid
    top_down.reverse()  # the proof lists the siblings from the leaf up
    return top_down


def consistency_proof(leaf_hashes: Sequence[bytes], size1: int, size2: int,
                      subtree_root: Optional[SubtreeRoot] = None) -> list[bytes]:
    """PROOF(size1, D[0:size2]) of RFC 6962 section 2.1.2 (empty when size1 == size2).

    ``subtree_root``: see SubtreeRoot; by default this module's loop.
    Raises TreeError (a ValueError) unless 0 < size1 <= size2 <= len(leaf_hashes): a proof
    from the empty tree is meaningless (see the module docstring).
    """
    root_of = subtree_root or (lambda begin, end: _range_root(leaf_hashes, begin, end))
    if not 0 <= size2 <= len(leaf_hashes):
        raise TreeError(f"size2 {size2} out of range for {len(leaf_hashes)} leaves")
    if not 0 < size1 <= size2:
        raise TreeError(f"need 0 < size1 <= size2, got size1={size1}, size2={size2}")
    # SUBPROOF(m, D[begin:end], b), unrolled: every step appends one subtree root *after*
    # the rest of the proof, so collect them in reverse and flip at the end.
    reversed_proof: list[bytes] = []
    begin, end, m, whole = 0, size2, size1, True
    while m != end - begin:
        k = _split(end - begin)
        if m <= k:
            reversed_proof.append(root_of(begin + k, end))
            end = begin + k
        else:
            reversed_proof.append(root_of(begin, begin + k))
            begin, m, whole = begin + k, m - k, False
    if not whole:
        # The old tree's last perfect subtree; omitted when it is the whole old tree, whose
        # root the verifier already holds.
        reversed_proof.append(root_of(begin, end))
    reversed_proof.reverse()
    return reversed_proof


# --------------------------------------------------------------------------- verification


def _check_hash_size(h: bytes, what: str, error: type[ValueError] = ProofError) -> None:
    if len(h) != HASH_SIZE:
        raise error(f"{what} is {len(h)} bytes, want {HASH_SIZE}")


def _check_proof_hashes(proof: Sequence[bytes]) -> None:
    # Not needed for soundness (a short hash can never chain to a valid root), but it names
    # the broken element instead of reporting a bare root mismatch.
    for i, h in enumerate(proof):
        _check_hash_size(h, f"proof hash {i}")


def _verify_match(size: int, calculated: bytes, expected: bytes) -> None:
    if calculated != expected:
        raise ProofError(
            f"root mismatch at tree size {size}: "
            f"calculated {calculated.hex()}, expected {bytes(expected).hex()}"
        )


def _decomp_incl_proof(index: int, size: int) -> tuple[int, int]:
    """Split an inclusion proof into (inner, border) lengths.

    ``inner`` hashes lie below the point where the paths to ``index`` and to ``size - 1``
    diverge; the ``border`` hashes above it are all left siblings on the right border.
    """
    inner = (index ^ (size - 1)).bit_length()
    border = (index >> inner).bit_count()
    return inner, border


def _chain_inner(seed: bytes, proof: Sequence[bytes], index: int) -> bytes:
    for i, h in enumerate(proof):
        seed = node_hash(seed, h) if (index >> i) & 1 == 0 else node_hash(h, seed)
    return seed


def _chain_inner_right(seed: bytes, proof: Sequence[bytes], index: int) -> bytes:
    # Only the left siblings: yields the same subtree as it was in the older, smaller tree.
    for i, h in enumerate(proof):
        if (index >> i) & 1:
            seed = node_hash(h, seed)
    return seed


def _chain_border_right(seed: bytes, proof: Sequence[bytes]) -> bytes:
    for h in proof:
        seed = node_hash(h, seed)
    return seed


def verify_inclusion(
    leaf_hash: bytes, index: int, tree_size: int, proof: Sequence[bytes], root: bytes
) -> None:
    """Check that ``leaf_hash`` is leaf ``index`` of the tree of ``tree_size`` with ``root``.

    Returns None on success, raises ProofError otherwise.
    """
    if index < 0:
        raise ProofError(f"leaf index {index} is negative")
    if index >= tree_size:
        raise ProofError(f"leaf index {index} out of range for tree size {tree_size}")
    _check_hash_size(leaf_hash, "leaf hash")
    inner, border = _decomp_incl_proof(index, tree_size)
    if len(proof) != inner + border:
        raise ProofError(
            f"wrong inclusion proof size {len(proof)}, want {inner + border} "
            f"for leaf {index} of {tree_size}"
        )
    _check_proof_hashes(proof)
    h = _chain_inner(bytes(leaf_hash), proof[:inner], index)
    h = _chain_border_right(h, proof[inner:])
    _verify_match(tree_size, h, root)


def verify_consistency(
    size1: int, size2: int, proof: Sequence[bytes], root1: bytes, root2: bytes
) -> None:
    """Check that the tree of ``size1`` with ``root1`` is a prefix of ``size2`` with ``root2``.

    Returns None on success, raises ProofError otherwise.
    """
    if size1 < 0:
        raise ProofError(f"size1 {size1} is negative")
    if size2 < size1:
        raise ProofError(f"size2 ({size2}) < size1 ({size1})")
    if size1 == 0:
        raise ProofError("consistency proof from an empty tree (size1 = 0) is meaningless")
    if size1 == size2:
        if proof:
            raise ProofError(f"size1 = size2 = {size1}, but the proof has {len(proof)} hashes")
        _verify_match(size1, root1, root2)
        return
    if not proof:
        raise ProofError(f"empty consistency proof for size1 {size1} < size2 {size2}")

    # The proof is, in effect, the tail of an inclusion proof for the node at level ``shift``
    # that ends the old tree, read in the tree of size2.
    inner, border = _decomp_incl_proof(size1 - 1, size2)
    shift = (size1 & -size1).bit_length() - 1  # trailing zero bits of size1
    inner -= shift  # shift < inner, since size1 < size2
    # That node's hash leads the proof, unless size1 is a power of two: then it is root1.
    seed, start = (root1, 0) if size1 == 1 << shift else (proof[0], 1)
    if len(proof) != start + inner + border:
        raise ProofError(
            f"wrong consistency proof size {len(proof)}, want {start + inner + border} "
            f"for sizes {size1} -> {size2}"
        )
    _check_proof_hashes(proof)
    path = proof[start:]
    mask = (size1 - 1) >> shift  # the node's index on level ``shift``

    # The same path must give root1 (left siblings only) and root2 (all of it).
    h1 = _chain_inner_right(bytes(seed), path[:inner], mask)
    _verify_match(size1, _chain_border_right(h1, path[inner:]), root1)
    h2 = _chain_inner(bytes(seed), path[:inner], mask)
    _verify_match(size2, _chain_border_right(h2, path[inner:]), root2)
