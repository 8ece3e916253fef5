"""The hash primitives and constants of the ledger, each defined once.

Every other module takes them from here, so the sealer, the verifier, the
checkpoints and the payload store cannot drift apart (DESIGN.md, "Sealing";
docs/canonical-envelope.md)::

    leaf_hash(d)          = SHA-256(0x00 || d)               # RFC 6962 leaf
    node_hash(l, r)       = SHA-256(0x01 || l || r)          # RFC 6962 interior node
    chain_hash(prev, l)   = SHA-256(prev || l)               # the hash chain
    commitment(salt, c)   = hex SHA-256(salt || UTF-8 c)     # what the envelope keeps of a payload
    EMPTY_ROOT            = SHA-256()                        # root of the empty tree
    ZERO_HASH             = 32 zero bytes                    # before the first record / checkpoint
"""

from __future__ import annotations

import hashlib

HASH_SIZE = 32

# What the first record of a chain links to, the chain hash of an empty chain,
# and the ``prev`` of a chain's first checkpoint.
ZERO_HASH = bytes(HASH_SIZE)

# RFC 6962 MTH({}): the root of the tree of no leaves.
EMPTY_ROOT = hashlib.sha256(b"").digest()


def leaf_hash(data: bytes) -> bytes:
    # The 0x00 / 0x01 prefixes keep a leaf from passing for an interior node (second preimage).
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def chain_hash(prev: bytes, leaf: bytes) -> bytes:
    return hashlib.sha256(prev + leaf).digest()


def commitment(salt: bytes, content: str) -> str:
    """Hex SHA-256(salt || content): what the envelope keeps of a payload."""
    return hashlib.sha256(salt + content.encode("utf-8")).hexdigest()


def salt_bytes(salt_hex: str) -> bytes:
    """A stored payload salt (hex) as bytes. An edited salt that is not hex gives no
    bytes, so the commitment check then fails instead of raising."""
    try:
        return bytes.fromhex(salt_hex)
    except ValueError:
        return b""


__all__ = ["EMPTY_ROOT", "HASH_SIZE", "ZERO_HASH", "chain_hash", "commitment", "leaf_hash",
           "node_hash", "salt_bytes"]
