"""The collector's per-record hashing loops, compiled (``_hashing.c``), over blobs of hashes.

The ledger and verification hand over n leaf hashes as one blob of n*32 bytes and get one
blob back, so Python pays per batch, not per record (DESIGN.md, "Hot paths"):

* ``chain_hashes(prev, leaves)``   the hash chain: chain_i = SHA-256(chain_{i-1} || leaf_i)
* ``extend(size, frontier, leaves)`` an RFC 6962 compact range carried over n more leaves;
  ``CompactRange.extend_blob(leaves, extend)`` is how the SDK's tree takes it
* ``root(leaves)``                 the Merkle root of a blob of leaves
* ``subtree_roots(leaves)``        subtree roots for the proof generators of the SDK
* ``split_pairs(pairs)``           n (leaf, chain) hash pairs, as the engine's RawBLOB of
  two hash columns gives them, as the blob of the leaves and the blob of the chain hashes

``AVAILABLE`` says whether the compiled module is in use. It is built by the install
(setup.py, OpenSSL's libcrypto) but optional, so an install without a compiler still works:
then these functions are the pure-Python reference (``aitrail.verify.hashes`` /
``aitrail.verify.merkle``), with the same results, and ``warn_if_unavailable`` says so once
at start-up. Arguments are checked here and refused with TreeError (an AitrailError and a
ValueError); the C code checks them again, so it never reads out of bounds.
"""

from __future__ import annotations

import importlib
import logging
from typing import Any, Callable, Optional, Sequence

from aitrail.verify.hashes import HASH_SIZE, chain_hash
from aitrail.verify.merkle import CompactRange, LeafBlob, TreeError, join_hashes

log = logging.getLogger("aitrail.collector")

_c: Any = None
IMPORT_ERROR: Optional[str] = None
try:  # by name: ``from . import _hashing`` would report a missing file as a circular import
    _c = importlib.import_module("aitrail_collector.native._hashing")
except ImportError as exc:  # built without a compiler / OpenSSL headers: the reference
    IMPORT_ERROR = str(exc)

AVAILABLE: bool = _c is not None
_warned = False

# Sizes above this do not fit the C code's 64-bit counter; no real chain comes near it.
MAX_SIZE = 2**63 - 1


def _blob(data: bytes, what: str) -> int:
    n, rest = divmod(len(data), HASH_SIZE)
    if rest:
        raise TreeError(f"{what} is {len(data)} bytes, not a multiple of {HASH_SIZE}")
    return n


def join(hashes: Sequence[bytes]) -> bytes:
    """The blob of these 32-byte leaf hashes, refusing one of another length
    (``merkle.join_hashes``)."""
    return join_hashes(hashes)


def chain_hashes(prev: bytes, leaves: bytes) -> bytes:
    """n*32 bytes of chain hashes for the n*32 bytes of ``leaves``, the first linking to
    ``prev``: chain_i = SHA-256(chain_{i-1} || leaf_i) (aitrail.verify.hashes.chain_hash)."""
    if len(prev) != HASH_SIZE:
        raise TreeError(f"prev hash is {len(prev)} bytes, want {HASH_SIZE}")
    _blob(leaves, "the leaves blob")
    if _c is not None:
        return bytes(_c.chain_hashes(prev, leaves))
    return py_chain_hashes(prev, leaves)


def py_chain_hashes(prev: bytes, leaves: bytes) -> bytes:
    """``chain_hashes`` by the reference code (the fallback; the tests hold C to it)."""
    out, last = bytearray(), bytes(prev)
    for i in range(0, len(leaves), HASH_SIZE):
        last = chain_hash(last, bytes(leaves[i:i + HASH_SIZE]))
        out += last
    return bytes(out)


def extend(size: int, frontier: bytes, leaves: bytes) -> tuple[int, bytes]:
    """The compact range of ``size`` leaves with ``frontier`` (its hashes, concatenated)
    after the n*32 bytes of ``leaves``: (size + n, new frontier), exactly what
    ``CompactRange.extend`` gives. The ``extender`` of ``CompactRange.extend_blob``."""
    n = _blob(leaves, "the leaves blob")
    k = _blob(frontier, "the frontier")
    if not isinstance(size, int) or size < 0:
        raise TreeError(f"tree size {size} is negative")
    if k != size.bit_count():
        raise TreeError(f"a compact range of size {size} has {size.bit_count()} hashes, "
                        f"got {k}")
    if size + n > MAX_SIZE:
        raise TreeError(f"tree size {size} + {n} leaves is beyond {MAX_SIZE}")
    if _c is not None:
        new_size, new_frontier = _c.extend(size, frontier, leaves)
        return int(new_size), bytes(new_frontier)
    return py_extend(size, frontier, leaves)


def py_extend(size: int, frontier: bytes, leaves: bytes) -> tuple[int, bytes]:
    """``extend`` by the reference code, ``CompactRange.extend`` (the fallback)."""
    cr = CompactRange.from_hashes(
        size, [bytes(frontier[i:i + HASH_SIZE]) for i in range(0, len(frontier), HASH_SIZE)])
    cr.extend_blob(bytes(leaves))
    return cr.size, b"".join(cr.hashes)


def extend_range(tree: CompactRange, leaves: bytes) -> None:
    """Append the n*32 bytes of ``leaves`` to ``tree``, in C when it is built."""
    tree.extend_blob(leaves, extend)


def root(leaves: bytes) -> bytes:
    """The RFC 6962 Merkle root (MTH) of the n*32 bytes of ``leaves``."""
    tree = CompactRange()
    extend_range(tree, leaves)
    return tree.root()


def subtree_roots(leaves: Sequence[bytes]) -> Callable[[int, int], bytes]:
    """The root of leaves [begin, end) of these, in C: the ``subtree_root`` of
    ``aitrail.verify.merkle.inclusion_proof`` / ``consistency_proof``. Joins them once
    (a LeafBlob is one blob already)."""
    blob = leaves.blob() if isinstance(leaves, LeafBlob) else join(leaves)

    def subtree_root(begin: int, end: int) -> bytes:
        if not 0 <= begin <= end <= len(leaves):
            raise TreeError(f"leaves [{begin}, {end}) out of range for {len(leaves)}")
        return root(blob[begin * HASH_SIZE:end * HASH_SIZE])
    return subtree_root


def split_pairs(pairs: bytes) -> tuple[bytes, bytes]:
    """(the n first hashes, the n second hashes) of n*64 bytes of 32-byte hash pairs."""
    n, rest = divmod(len(pairs), 2 * HASH_SIZE)
    if rest:
        raise TreeError(f"the pairs blob is {len(pairs)} bytes, not a multiple of "
                        f"{2 * HASH_SIZE}")
    if _c is not None:
        firsts, seconds = _c.split_pairs(pairs)
        return bytes(firsts), bytes(seconds)
    return py_split_pairs(pairs)


def py_split_pairs(pairs: bytes) -> tuple[bytes, bytes]:
    """``split_pairs`` in Python (the fallback; the tests hold C to it)."""
    step, view = 2 * HASH_SIZE, memoryview(pairs)
    return (b"".join(view[i:i + HASH_SIZE] for i in range(0, len(pairs), step)),
            b"".join(view[i + HASH_SIZE:i + step] for i in range(0, len(pairs), step)))


def status() -> str:
    """"native" when the compiled loops are in use, else "python"."""
    return "native" if AVAILABLE else "python"


def warn_if_unavailable() -> None:
    """Log once, at start-up, that the pure-Python hashing loops are in use and why."""
    global _warned
    if AVAILABLE or _warned:
        return
    _warned = True
    log.warning("the compiled hashing module (aitrail_collector.native._hashing) is not "
                "built (%s): the chain and Merkle hashing run in pure Python, several times "
                "slower. Reinstall with gcc, the Python headers and libssl-dev present "
                "(scripts/install does this on Debian).", IMPORT_ERROR)


__all__ = ["AVAILABLE", "IMPORT_ERROR", "chain_hashes", "extend", "extend_range", "join",
           "py_chain_hashes", "py_extend", "py_split_pairs", "root", "split_pairs",
           "subtree_roots",
           "status", "warn_if_unavailable"]
