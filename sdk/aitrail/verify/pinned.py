"""A pinned checkpoint: one an auditor kept, against which later history is held.

``aitrail verify --since-checkpoint FILE`` reads the text of a checkpoint saved
earlier (from ``/api/v1/checkpoints``, a proof bundle or the anchor) and makes any
later history that is not consistent with it a finding: the chain it names is
gone, it does not verify under the trusted key, the chain is now shorter than it
(truncation), the stored records no longer rebuild its root, or no stored
checkpoint extends it consistently. This module is the pure part: the callers
gather the facts (from the store, or from a collector's API) and pass them in.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from aitrail.errors import AitrailError
from aitrail.verify import merkle
from aitrail.verify.chain import Finding
from aitrail.verify.checkpoint import CheckpointError, SignedCheckpoint, verify_signature
from aitrail.verify.merkle import ProofError

PINNED_UNKNOWN_CHAIN = "pinned_chain_unknown"
PINNED_BAD_SIGNATURE = "pinned_bad_signature"
TRUNCATED = "truncated"
PINNED_INCONSISTENT = "pinned_inconsistent"


class PinnedError(AitrailError, ValueError):
    """The pinned checkpoint file cannot be used: it is not a checkpoint text."""


def parse_pinned(text: str, where: str = "--since-checkpoint") -> SignedCheckpoint:
    try:
        return SignedCheckpoint.parse(text)
    except CheckpointError as exc:
        raise PinnedError(f"{where}: not a signed checkpoint text ({exc})") from None


@dataclass
class Extension:
    """A stored checkpoint at least as large as the pinned one, with the consistency
    proof from the pinned size to it (None: no proof could be had)."""
    signed: SignedCheckpoint
    proof: Optional[list[bytes]]


def describe(pinned: SignedCheckpoint) -> dict[str, object]:
    cp = pinned.checkpoint
    return {"chain_id": cp.origin, "number": cp.number, "size": cp.size,
            "root": cp.root.hex(), "key_id": cp.key_id, "time_ns": cp.time_ns}


def check_pinned(pinned: SignedCheckpoint, *, chains: Sequence[str],
                 public_key: Optional[Ed25519PublicKey], head_seq: int,
                 stored: Sequence[SignedCheckpoint],
                 root_at_size: Optional[bytes] = None,
                 extension: Optional[Extension] = None) -> list[Finding]:
    """Findings for later history that is not consistent with ``pinned``.

    ``chains``: the chains the store holds. ``head_seq``: the stored chain's last seq.
    ``stored``: its stored checkpoints that verify under the trusted key (any order).
    ``root_at_size``: the root the stored records give at the pinned size, when the
    caller rebuilt it (None: not rebuilt). ``extension``: the newest stored checkpoint
    with its consistency proof from the pinned size (None: none is large enough).
    """
    cp = pinned.checkpoint
    chain = cp.origin
    out: list[Finding] = []

    def finding(kind: str, detail: str, seq: int = 0) -> None:
        out.append(Finding(kind, chain, seq, "", f"pinned checkpoint {cp.number} "
                           f"(size {cp.size}): {detail}"))

    if chain not in chains:
        finding(PINNED_UNKNOWN_CHAIN, f"the store holds no chain {chain!r}: the whole chain "
                "was deleted or renamed")
        return out
    if public_key is not None:
        try:
            verify_signature(pinned, public_key)
        except CheckpointError as exc:
            finding(PINNED_BAD_SIGNATURE, f"does not verify under the trusted key ({exc}); "
                    "it proves nothing about this chain")
            return out
    if head_seq < cp.size:
        finding(TRUNCATED, f"the chain now ends at seq {head_seq}: records "
                f"{head_seq + 1}..{cp.size}, which it covers, were deleted", seq=head_seq + 1)
    for other in stored:
        o = other.checkpoint
        if o.number == cp.number and other.text() != pinned.text():
            finding(PINNED_INCONSISTENT, f"the store's checkpoint {o.number} differs from it: "
                    "the checkpoints were re-signed after it was kept")
    if root_at_size is not None and root_at_size != cp.root:
        finding(PINNED_INCONSISTENT, f"the stored records 1..{cp.size} no longer rebuild its "
                "root: records it covers were changed, removed, added or reordered")
    if extension is None:
        if head_seq >= cp.size:
            finding(PINNED_INCONSISTENT, "no stored checkpoint is as large as it, so none "
                    "extends it (the later checkpoints were deleted)")
    else:
        e = extension.signed.checkpoint
        if cp.size == 0:
            pass  # the empty tree is a prefix of every tree
        elif e.size == cp.size:
            if e.root != cp.root:
                finding(PINNED_INCONSISTENT, f"stored checkpoint {e.number} has the same size "
                        "but another root")
        elif extension.proof is None:
            if root_at_size is None:
                finding(PINNED_INCONSISTENT, f"no consistency proof to stored checkpoint "
                        f"{e.number} could be had")
        else:
            try:
                merkle.verify_consistency(cp.size, e.size, extension.proof, cp.root, e.root)
            except ProofError as exc:
                finding(PINNED_INCONSISTENT, f"stored checkpoint {e.number} (size {e.size}) is "
                        f"not a consistent extension of it ({exc})")
    return out


def newest_extension(pinned: SignedCheckpoint,
                     stored: Sequence[SignedCheckpoint]) -> Optional[SignedCheckpoint]:
    """The newest stored checkpoint at least as large as the pinned one."""
    size = pinned.checkpoint.size
    fits = [s for s in stored if s.checkpoint.size >= size]
    return max(fits, key=lambda s: s.checkpoint.number, default=None)


__all__ = ["Extension", "PINNED_BAD_SIGNATURE", "PINNED_INCONSISTENT", "PINNED_UNKNOWN_CHAIN",
           "PinnedError", "TRUNCATED", "check_pinned", "describe", "newest_extension",
           "parse_pinned"]
