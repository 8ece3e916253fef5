"""Per-record cost of the compiled hashing loops (aitrail_collector.native) against the
pure-Python reference and against plain hashlib.sha256 over the same bytes, in one run.

* chain: chain_i = SHA-256(chain_{i-1} || leaf_i), one 64-byte input per record
* Merkle: an RFC 6962 compact range over n leaves from empty, n - 1 node hashes
  SHA-256(0x01 || l || r) of 65 bytes
* a consistency proof (n/2 + 1 -> n) from compiled subtree roots and from the reference

BASELINE: hashlib.sha256(x).digest() in a Python loop over exactly those inputs (built
beforehand, so it times only the hashing): what the reference pays at the least.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import time

from _common import machine_line, print_table

from aitrail.verify import merkle
from aitrail.verify.hashes import ZERO_HASH, chain_hash
from aitrail.verify.merkle import CompactRange
from aitrail_collector import native


def best(fn, repeat: int) -> float:
    """The fastest of ``repeat`` runs, in seconds: the least disturbed by the machine."""
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--records", type=int, default=200_000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    n, repeat = args.records, args.repeat
    blob = os.urandom(32 * n)
    leaves = [blob[i:i + 32] for i in range(0, len(blob), 32)]
    chains = native.chain_hashes(ZERO_HASH, blob)
    assert native.root(blob) == _py_root(leaves)
    assert chains == native.py_chain_hashes(ZERO_HASH, blob)

    # The inputs the loops hash, for the baseline: prev || leaf, and every node's 0x01 || l || r.
    chain_inputs = [p + leaf for p, leaf in zip([ZERO_HASH] + [chains[i:i + 32] for i in
                                                range(0, len(chains) - 32, 32)], leaves)]
    node_inputs = _node_inputs(leaves)
    sha = hashlib.sha256

    def base_chain() -> None:
        for data in chain_inputs:
            sha(data).digest()

    def base_nodes() -> None:
        for data in node_inputs:
            sha(data).digest()

    def py_chain() -> None:
        last = ZERO_HASH
        for leaf in leaves:
            last = chain_hash(last, leaf)

    rows = []
    for name, c_fn, py_fn, base_fn in [
        ("chain hashes", lambda: native.chain_hashes(ZERO_HASH, blob), py_chain, base_chain),
        ("Merkle compact range (extend from empty)", lambda: native.extend(0, b"", blob),
         lambda: CompactRange().extend(leaves), base_nodes),
    ]:
        base = best(base_fn, repeat)
        for label, fn in ((f"{name}, compiled (C, OpenSSL)", c_fn),
                          (f"{name}, pure Python (aitrail.verify)", py_fn)):
            s = best(fn, repeat)
            rows.append((label, f"{s / n * 1e9:,.0f}", f"{n / s:,.0f}", f"{base / s:.2f}x"))
        rows.append(("  BASELINE hashlib.sha256 over the same inputs", f"{base / n * 1e9:,.0f}",
                     f"{n / base:,.0f}", "1.00x"))
    # A consistency proof between two checkpoints (what the checkpoint audit makes for
    # each consecutive pair) hashes up to every leaf of the newer tree again.
    subtree_root = native.subtree_roots(leaves)
    m = n // 2 + 1
    proof_c = best(lambda: merkle.consistency_proof(leaves, m, n, subtree_root), repeat)
    proof_py = best(lambda: merkle.consistency_proof(leaves, m, n), 1)
    rows.append((f"consistency proof {m:,} -> {n:,}, compiled subtree roots",
                 f"{proof_c / n * 1e9:,.0f}", f"{n / proof_c:,.0f}", ""))
    rows.append((f"consistency proof {m:,} -> {n:,}, pure Python", f"{proof_py / n * 1e9:,.0f}",
                 f"{n / proof_py:,.0f}", f"({proof_py / proof_c:.1f}x slower)"))
    print(f"bench_native: {n:,} records, best of {repeat}; compiled module in use: "
          f"{native.AVAILABLE}; {machine_line()}")
    print_table("Hashing loops per record", ("loop", "ns/record", "records/s",
                                             "speed vs baseline"), rows)


def _py_root(leaves: list[bytes]) -> bytes:
    tree = CompactRange()
    tree.extend(leaves)
    return tree.root()


def _node_inputs(leaves: list[bytes]) -> list[bytes]:
    """0x01 || l || r of every node hash the compact range computes, in its order."""
    out: list[bytes] = []
    stack: list[bytes] = []
    for size, leaf in enumerate(leaves):
        h = leaf
        while size & 1:
            data = b"\x01" + stack.pop() + h
            out.append(data)
            h = hashlib.sha256(data).digest()
            size >>= 1
        stack.append(h)
    return out


if __name__ == "__main__":
    main()
