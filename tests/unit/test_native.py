"""aitrail_collector.native: the compiled chain and Merkle loops give exactly what the
pure-Python reference (aitrail.verify.hashes / aitrail.verify.merkle) gives, and refuse bad
input with a clear error instead of crashing. (The checkpoint audit with the compiled
extender: test_audit_blocks.py.)

The RFC 6962 vectors are read in place from ../shared/testdata/rfc6962 (as test_merkle does).
"""

from __future__ import annotations

import base64
import json
import os
import random
from pathlib import Path

import pytest
from test_checkpoint_audit import _leaves

from aitrail.errors import AitrailError
from aitrail.verify import merkle
from aitrail.verify.hashes import ZERO_HASH, chain_hash, leaf_hash
from aitrail.verify.merkle import CompactRange, TreeError
from aitrail_collector import native

VECTORS = Path(__file__).resolve().parents[2].parent / "shared" / "testdata" / "rfc6962"
# The RFC 6962 reference leaves the numbered vector folders are built on.
REF_HASHES = [leaf_hash(bytes.fromhex(x)) for x in (
    "", "00", "10", "2021", "3031", "40414243", "5051525354555657",
    "606162636465666768696a6b6c6d6e6f")]
SIZES = (0, 1, 2, 3, 7, 8, 9, 31, 32, 33, 1000)
STARTS = (0, 1, 2, 3, 5, 7, 8, 13, 255, 256, 1023)  # odd frontiers and full ones


def _blob(n: int, rng: random.Random) -> bytes:
    return rng.randbytes(32 * n)


def _split(blob: bytes) -> list[bytes]:
    return [blob[i:i + 32] for i in range(0, len(blob), 32)]


def _reference(start: bytes, leaves: bytes) -> CompactRange:
    """The SDK's tree over ``start`` then ``leaves``, leaf by leaf."""
    tree = CompactRange()
    for leaf in _split(start) + _split(leaves):
        tree.append(leaf)
    return tree


def test_the_compiled_module_is_built_in_this_install():
    # The install (setup.py) must have built it: without this, the suite would pass on
    # the fallback and the compiled code would go untested.
    assert native.AVAILABLE, f"aitrail_collector.native._hashing not built: {native.IMPORT_ERROR}"
    assert native.status() == "native"
    from aitrail_collector.native import _hashing
    assert native._c is _hashing


IMPLEMENTATIONS = [pytest.param(native.extend, id="compiled"),
                   pytest.param(native.py_extend, id="fallback")]


@pytest.mark.parametrize("kind", ["inclusion", "consistency"])
def test_roots_of_the_rfc6962_vectors(kind):
    found = 0
    for path in sorted((VECTORS / kind).glob("[0-9]*/happy-path.json")):
        v = json.loads(path.read_text())
        pairs = ([(v["treeSize"], v["root"])] if kind == "inclusion"
                 else [(v["size1"], v["root1"]), (v["size2"], v["root2"])])
        for size, want in pairs:
            assert native.root(b"".join(REF_HASHES[:size])) == base64.b64decode(want), path
            found += 1
    assert found, f"no happy-path vectors under {VECTORS / kind}"


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_extend_equals_the_reference_from_any_frontier(impl):
    rng = random.Random(6962)
    for start_n in STARTS:
        start = _blob(start_n, rng)
        before = _reference(start, b"")
        for n in SIZES:
            leaves = _blob(n, rng)
            want = _reference(start, leaves)
            size, frontier = impl(before.size, b"".join(before.hashes), leaves)
            assert (size, _split(frontier)) == (want.size, want.hashes), (start_n, n)


def test_extend_range_in_steps_equals_one_root():
    rng = random.Random(1)
    leaves = _blob(2000, rng)
    tree, i = CompactRange(), 0
    while i < 2000:
        j = i + rng.randrange(0, 300)
        native.extend_range(tree, leaves[32 * i:32 * j])
        i = j
    assert tree.size == 2000 and tree.root() == merkle.root(_split(leaves))
    assert native.root(leaves) == tree.root() and native.root(b"") == merkle.root([])


@pytest.mark.parametrize("impl", [native.chain_hashes, native.py_chain_hashes])
def test_chain_hashes_equal_the_reference(impl):
    rng = random.Random(2)
    for n in SIZES:
        leaves = _blob(n, rng)
        for prev in (ZERO_HASH, rng.randbytes(32)):
            want, last = b"", prev
            for leaf in _split(leaves):
                last = chain_hash(last, leaf)
                want += last
            assert impl(prev, leaves) == want, n


@pytest.mark.parametrize("impl", [native.split_pairs, native.py_split_pairs])
def test_split_pairs_gives_the_first_and_the_second_hash_of_each_pair(impl):
    rng = random.Random(3)
    for n in SIZES:
        pairs = _blob(2 * n, rng)
        rows = _split(pairs)
        firsts, seconds = impl(memoryview(pairs))
        assert (_split(firsts), _split(seconds)) == (rows[0::2], rows[1::2]), n


def test_a_blob_can_be_any_bytes_like_object():
    leaves = os.urandom(32 * 5)
    assert native.extend(0, b"", memoryview(leaves)) == native.extend(0, b"", leaves)
    assert native.chain_hashes(bytearray(32), memoryview(leaves)) == \
        native.chain_hashes(ZERO_HASH, leaves)


@pytest.mark.parametrize("call, message", [
    (lambda: native.extend(0, b"", b"x" * 33), "leaves blob is 33 bytes, not a multiple of 32"),
    (lambda: native.extend(3, b"x" * 32, b""), "size 3 has 2 hashes, got 1"),
    (lambda: native.extend(1, b"x" * 31, b""), "frontier is 31 bytes"),
    (lambda: native.extend(0, b"x" * 32, b""), "size 0 has 0 hashes, got 1"),
    (lambda: native.extend(-1, b"", b""), "tree size -1 is negative"),
    (lambda: native.extend(2**63 - 1, b"x" * 32 * 63, b"y" * 32), "beyond"),
    (lambda: native.extend(2**64, b"", b""), "size 18446744073709551616 has 1 hashes"),
    (lambda: native.chain_hashes(b"short", b""), "prev hash is 5 bytes"),
    (lambda: native.chain_hashes(ZERO_HASH, b"x" * 40), "40 bytes, not a multiple of 32"),
    (lambda: native.join([b"a" * 32, b"b" * 31, b"c" * 33]), "leaf hash 1 is 31 bytes"),
    (lambda: native.extend_range(CompactRange(), b"x" * 5), "5 bytes, not a multiple"),
    (lambda: native.split_pairs(b"x" * 96), "pairs blob is 96 bytes, not a multiple of 64"),
])
def test_bad_input_is_a_tree_error(call, message):
    with pytest.raises(TreeError, match=message) as caught:
        call()
    assert isinstance(caught.value, AitrailError) and isinstance(caught.value, ValueError)


@pytest.mark.parametrize("args", [
    (0, b"", b"x" * 33), (3, b"x" * 32, b""), (-1, b"", b""), (2**64, b"", b""),
    (2**64 - 1, b"x" * 32 * 64, b""), (2**63 - 1, b"x" * 32 * 63, b"y" * 32),
])
def test_the_compiled_code_checks_its_arguments_itself(args):
    # Called directly (past the wrapper's checks), it refuses instead of reading out of
    # bounds or wrapping a size around.
    with pytest.raises(ValueError):
        native._c.extend(*args)
    with pytest.raises(ValueError):
        native._c.chain_hashes(b"x" * 31, b"")
    with pytest.raises(ValueError):
        native._c.split_pairs(b"x" * 65)
    with pytest.raises(TypeError):
        native._c.extend("1", b"", b"")


def test_extend_blob_refuses_an_extender_that_returns_the_wrong_shape():
    tree = CompactRange()
    tree.extend(_leaves(3))
    with pytest.raises(TreeError, match="the extender gave size 4 with 64 bytes"):
        tree.extend_blob(b"x" * 32, lambda size, frontier, leaves: (4, b"y" * 64))
    assert tree.size == 3 and tree.root() == merkle.root(_leaves(3))  # state kept


def test_without_the_compiled_module_the_fallback_runs_and_says_so_once(monkeypatch, caplog):
    monkeypatch.setattr(native, "_c", None)
    monkeypatch.setattr(native, "AVAILABLE", False)
    monkeypatch.setattr(native, "IMPORT_ERROR", "No module named '_hashing'")
    monkeypatch.setattr(native, "_warned", False)
    leaves = os.urandom(32 * 9)
    assert native.root(leaves) == merkle.root(_split(leaves))
    assert native.status() == "python"
    with caplog.at_level("WARNING", logger="aitrail.collector"):
        native.warn_if_unavailable()
        native.warn_if_unavailable()
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1 and "pure Python" in warnings[0]
    assert "No module named '_hashing'" in warnings[0] and "libssl-dev" in warnings[0]


def test_proofs_from_compiled_subtree_roots_equal_the_reference():
    leaves = _leaves(70)
    roots = native.subtree_roots(leaves)
    for size2 in range(1, 71):
        assert roots(0, size2) == merkle.root(leaves[:size2])
        for size1 in range(1, size2 + 1):
            assert merkle.consistency_proof(leaves, size1, size2, roots) == \
                merkle.consistency_proof(leaves, size1, size2), (size1, size2)
            assert merkle.inclusion_proof(leaves, size1 - 1, size2, roots) == \
                merkle.inclusion_proof(leaves, size1 - 1, size2), (size1, size2)
    with pytest.raises(TreeError, match=r"leaves \[3, 71\) out of range for 70"):
        roots(3, 71)
