"""Checking signed checkpoints against the records and against the anchor store.

``verify`` streams a chain's rows by seq once; a ``CheckpointAudit`` rides along,
rebuilding the Merkle tree from the stored leaf hashes and comparing it with
every checkpoint at its size. Around that pass it checks what needs no rows:
each checkpoint's signature, the ``prev`` digests and numbers that chain the
checkpoints together, the anchor store's copies against the database's, and
the consistency proofs between consecutive checkpoints.

Finding kinds (CloudTrail-style, one per problem):

* ``checkpoint_missing``   -- a number is absent from the database (or the anchor)
* ``checkpoint_bad_signature`` -- does not parse, wrong key, or the signature fails
* ``checkpoint_inconsistent`` -- broken prev link, shrinking size, failed consistency
  proof, or the stored records do not rebuild its root / chain hash
* ``checkpoint_differs_from_anchor`` -- database and anchor hold different texts
* record ``missing`` -- a checkpoint covers records that are no longer stored
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional, Protocol, Sequence

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from aitrail.errors import AitrailError
from aitrail.verify import merkle
from aitrail.verify.chain import MISSING, Finding
from aitrail.verify.checkpoint import CheckpointError, SignedCheckpoint, key_id, verify_signature
from aitrail.verify.hashes import HASH_SIZE, ZERO_HASH
from aitrail.verify.merkle import BlobExtender, CompactRange, ProofError, TreeError

CP_MISSING = "checkpoint_missing"
CP_BAD_SIGNATURE = "checkpoint_bad_signature"
CP_INCONSISTENT = "checkpoint_inconsistent"
CP_DIFFERS = "checkpoint_differs_from_anchor"
# Holding every leaf hash in memory for consistency proofs costs 32 bytes per
# record; past this many the rebuilt roots (which imply consistency) stand alone.
MAX_PROOF_LEAVES = 20_000_000


class AuditError(AitrailError, ValueError):
    """Verification cannot be done as asked: no usable checkpoint to start from, or a
    period that ends before it starts. Not a finding: nothing was checked."""


class AnchorEntryLike(Protocol):
    """One object read from an anchor store (the collector's ``anchor.AnchorEntry``)."""
    name: str
    number: Optional[int]
    text: Optional[str]
    signed: Optional[SignedCheckpoint]
    error: Optional[str]


class AnchorLike(Protocol):
    """An anchor store, as far as verification reads it."""
    def entries(self, chain_id: str) -> Sequence[AnchorEntryLike]: ...
    def describe(self) -> str: ...


# A stored checkpoint row: (number, size, signed text, frontier).
CheckpointRow = tuple[int, int, str, Sequence[bytes]]


@dataclass
class Trust:
    """What the verifier trusts instead of the database."""
    public_key: Optional[Ed25519PublicKey] = None  # None: signatures unchecked
    anchor: Optional[AnchorLike] = None            # None: no anchor comparison
    max_gap_s: float = 25 * 3600       # a longer silence between checkpoints is reported
    # Which key and anchor these are and where each came from (aitrail.verify.trust_root);
    # every report carries it, so no verification hides what it trusted.
    root: dict[str, Any] = field(default_factory=dict)


@dataclass
class Known:
    """One checkpoint as the verifier knows it: parsed, from where, checked or not."""
    signed: SignedCheckpoint
    source: str                        # "database" or "anchor"
    frontier: list[bytes] = field(default_factory=list)
    valid: bool = True                 # signature checked (or no key given)


class CheckpointAudit:
    def __init__(self, chain_id: str, db_rows: Sequence[CheckpointRow],
                 anchor_entries: Optional[Sequence[AnchorEntryLike]],
                 trust: Trust, from_number: Optional[int] = None,
                 capture_size: Optional[int] = None,
                 extender: Optional[BlobExtender] = None, unanchored_through: int = 0):
        self.chain_id, self.trust = chain_id, trust
        # A running collector writes a checkpoint to the database first and to the anchor
        # with its next batch: one it issued (number <= this) newer than every anchor
        # copy is on its way there, not missing (a warning, not a finding).
        self.unanchored_through = unanchored_through
        # A compiled compact-range extension for ``add_block`` (the collector's); None: this
        # package's own Python code.
        self.extender = extender
        # The rebuilt root at one size (a pinned checkpoint's), once the rows reach it.
        self.capture_size = capture_size
        self.root_at_capture: Optional[bytes] = None
        self.findings: list[Finding] = []
        self.periods: list[dict[str, Any]] = []
        self.warnings: list[str] = []
        self._broken_anchor: set[int] = set()
        # A signed text's signature check, by text: the anchor's copy of a checkpoint is
        # most often the database's, byte for byte, and one Ed25519 check (~0.1 ms) of
        # each text is enough (a year of a busy chain holds ~100k checkpoints).
        self._signature_errors: dict[str, Optional[str]] = {}
        self.db = self._parse_db(db_rows)
        self.anchor = self._parse_anchor(anchor_entries) if anchor_entries is not None else None
        self._compare_with_anchor()
        self.by_number = {**(self.anchor or {}), **self.db}  # the database copy wins
        self._check_links()
        self.start = self._start_at(from_number)
        self.tree = self._start_tree()
        self.leaves: Optional[merkle.LeafBlob] = merkle.LeafBlob() if self.start is None else None
        # The checkpoints (by identity) whose signed root the rebuilt tree gave.
        self._rebuilt: set[int] = set()
        if capture_size == self.tree.size:
            self.root_at_capture = self.tree.root()
        # Every valid copy is held against the records: where the anchor's copy differs
        # from the database's, each is checked, so a rewritten history shows in both.
        copies = list(self.by_number.values()) + [
            k for n, k in (self.anchor or {}).items()
            if n in self.db and k.signed.text() != self.db[n].signed.text()]
        self._pending = sorted((k for k in copies if k.valid),
                               key=lambda k: (k.signed.checkpoint.size, k.signed.checkpoint.number))
        if self.start is not None:
            start_num = self.start.signed.checkpoint.number
            self._pending = [k for k in self._pending if k.signed.checkpoint.number > start_num]
        # Checkpoints at the starting size (the empty tree, or the start checkpoint's
        # size) are settled before any row: compare them with the starting tree now.
        while self._pending and self._pending[0].signed.checkpoint.size <= self.tree.size:
            known = self._pending.pop(0)
            if known.signed.checkpoint.size == self.tree.size:
                self._compare(known, self.tree.root(), self.start_hash)

    # ------------------------------------------------------------ parsing
    def _finding(self, kind: str, number: int, detail: str, seq: int = 0) -> None:
        self.findings.append(Finding(kind, self.chain_id, seq, "", f"checkpoint {number}: "
                                     f"{detail}" if number else detail))

    def _check(self, text: str, source: str, number: int,
               frontier: Sequence[bytes] = ()) -> Optional[Known]:
        try:
            signed = SignedCheckpoint.parse(text)
        except CheckpointError as exc:
            self._finding(CP_BAD_SIGNATURE, number, f"the {source} copy does not parse: {exc}")
            return None
        known = Known(signed, source, list(frontier))
        if signed.checkpoint.origin != self.chain_id:
            self._finding(CP_BAD_SIGNATURE, number, f"the {source} copy is for chain "
                          f"{signed.checkpoint.origin!r}")
            known.valid = False
        elif self.trust.public_key is not None:
            error = self._signature_error(text, signed, self.trust.public_key)
            if error is not None:
                self._finding(CP_BAD_SIGNATURE, number, f"the {source} copy: {error}")
                known.valid = False
        return known

    def _signature_error(self, text: str, signed: SignedCheckpoint,
                         public_key: Ed25519PublicKey) -> Optional[str]:
        """Why ``signed`` (parsed from ``text``) fails its signature check, or None."""
        if text not in self._signature_errors:
            try:
                verify_signature(signed, public_key)
                self._signature_errors[text] = None
            except CheckpointError as exc:
                self._signature_errors[text] = str(exc)
        return self._signature_errors[text]

    def _parse_db(self, rows: Sequence[CheckpointRow]) -> dict[int, Known]:
        out = {}
        for number, _size, text, frontier in rows:
            known = self._check(text, "database", number, frontier)
            if known is not None:
                if known.signed.checkpoint.number != number:
                    self._finding(CP_INCONSISTENT, number, "stored under another number "
                                  f"than it states ({known.signed.checkpoint.number})")
                    known.valid = False
                out[number] = known
        return out

    def _parse_anchor(self, entries: Sequence[AnchorEntryLike]) -> dict[int, Known]:
        """AnchorEntry objects (aitrail_collector.anchor.stores): a bad object is a finding."""
        out = {}
        for entry in entries:
            if entry.number is None:
                self.warnings.append(entry.error or f"foreign object {entry.name} in the anchor")
                continue
            if entry.error is not None:
                kind = CP_BAD_SIGNATURE if entry.signed is None else CP_DIFFERS
                self._finding(kind, entry.number, entry.error)
                self._broken_anchor.add(entry.number)
                continue
            known = self._check(entry.text or "", "anchor", entry.number)
            if known is not None:
                out[entry.number] = known
        return out

    # ------------------------------------------------------------ without rows
    def _compare_with_anchor(self) -> None:
        if self.anchor is None:
            if self.trust.anchor is None and not self.trust.root:  # else the root says so
                self.warnings.append("no anchor store given: the database's checkpoints were "
                                     "not compared with an independent copy")
            return
        for number in sorted(set(self.db) | set(self.anchor) | self._broken_anchor):
            in_db, in_anchor = self.db.get(number), self.anchor.get(number)
            if in_db is None and in_anchor is None:
                continue
            if in_db and in_anchor:
                if in_db.signed.text() != in_anchor.signed.text():
                    self._finding(CP_DIFFERS, number, "the database and the anchor store hold "
                                  "different texts (rewritten in one of them)")
            elif number in self._broken_anchor:
                continue  # already reported as a bad anchor object
            elif in_anchor:
                self._finding(CP_MISSING, number, "in the anchor store but deleted from the "
                              "database")
            elif number <= self.unanchored_through and number > max(self.anchor, default=0):
                self.warnings.append(f"checkpoint {number} of chain {self.chain_id} is not in "
                                     "the anchor store yet: the collector writes it there "
                                     "with its next anchor batch")
            else:
                self._finding(CP_DIFFERS, number, "in the database but not in the anchor store")

    def _check_links(self) -> None:
        numbers = sorted(self.by_number)
        for a, b in zip(numbers, numbers[1:]):
            if b != a + 1:
                for gone in range(a + 1, b):
                    self._finding(CP_MISSING, gone, "absent from the database and the anchor "
                                  f"(checkpoint {b} follows {a})")
                continue
            ka, kb = self.by_number[a], self.by_number[b]
            ca, cb = ka.signed.checkpoint, kb.signed.checkpoint
            if cb.prev != ka.signed.digest():
                self._finding(CP_INCONSISTENT, b, f"its prev digest does not name checkpoint {a}")
            if cb.size < ca.size:
                self._finding(CP_INCONSISTENT, b, f"size {cb.size} is smaller than checkpoint "
                              f"{a}'s {ca.size}")
            gap = (cb.time_ns - ca.time_ns) / 1e9
            if gap > self.trust.max_gap_s:
                self.periods.append({"from": ca.time_ns, "to": cb.time_ns, "after": a,
                                     "hours": round(gap / 3600, 1)})

    def _start_at(self, number: Optional[int]) -> Optional[Known]:
        if number is None:
            return None
        known = self.by_number.get(number)
        if known is None or not known.valid:
            raise AuditError(f"--from-checkpoint {number}: no valid checkpoint {number} "
                             f"for chain {self.chain_id}")
        return known

    def _start_tree(self) -> CompactRange:
        if self.start is None:
            return CompactRange()
        cp = self.start.signed.checkpoint
        frontier = self.start.frontier or self.db.get(cp.number, self.start).frontier
        try:
            tree = CompactRange.from_hashes(cp.size, frontier)
        except TreeError as exc:
            raise AuditError(f"checkpoint {cp.number} has no usable frontier: {exc}") from None
        if tree.root() != cp.root:
            raise AuditError(f"checkpoint {cp.number}: its stored frontier does not give its "
                             "signed root, so verification cannot start from it")
        return tree

    @property
    def start_seq(self) -> int:
        return 1 if self.start is None else self.start.signed.checkpoint.size + 1

    @property
    def start_hash(self) -> bytes:
        return ZERO_HASH if self.start is None else self.start.signed.checkpoint.chain_hash

    # ------------------------------------------------------------ along the rows
    def add(self, leaf: bytes, chain_hash: bytes) -> None:
        self.tree.append(leaf)
        if self.tree.size == self.capture_size:
            self.root_at_capture = self.tree.root()
        if self.leaves is not None:
            if len(self.leaves) < MAX_PROOF_LEAVES:
                self.leaves.append(leaf)
            else:
                self.leaves = None
        while self._pending and self._pending[0].signed.checkpoint.size <= self.tree.size:
            known = self._pending.pop(0)
            self._compare(known, self.tree.root(), chain_hash)

    def add_block(self, leaves: Sequence[bytes], chain_hashes: Sequence[bytes]) -> None:
        """``add`` for consecutive rows (a driver's column blocks): ``add_blob`` of them
        joined, each hash checked for its length first (a short one would shift every
        later one)."""
        if len(leaves) != len(chain_hashes):
            raise TreeError(f"{len(leaves)} leaf hashes but {len(chain_hashes)} chain hashes")
        self.add_blob(merkle.join_hashes(leaves, "leaf hash", " of the block"),
                      merkle.join_hashes(chain_hashes, "chain hash", " of the block"))

    def add_blob(self, leaves: bytes, chain_hashes: bytes) -> None:
        """``add`` for consecutive rows given as two blobs of n*32 bytes (what the engine
        streams): the tree grows a stretch at a time, stopping only at the sizes that
        need a look (a pending checkpoint's, the capture size)."""
        if len(leaves) % HASH_SIZE or len(leaves) != len(chain_hashes):
            raise TreeError(f"blobs of {len(leaves)} bytes of leaf hashes and "
                            f"{len(chain_hashes)} of chain hashes are not n*{HASH_SIZE} each")
        i, n = 0, len(leaves) // HASH_SIZE
        while i < n:
            stop = n
            for size in (self._pending[0].signed.checkpoint.size if self._pending else None,
                         self.capture_size):
                if size is not None and size > self.tree.size:
                    stop = min(stop, i + size - self.tree.size)
            stretch = leaves[i * HASH_SIZE:stop * HASH_SIZE]
            self.tree.extend_blob(stretch, self.extender)  # extender None: this package's loop
            if self.leaves is not None:
                if len(self.leaves) + (stop - i) <= MAX_PROOF_LEAVES:
                    self.leaves.extend_blob(stretch)
                else:
                    self.leaves = None
            i = stop
            if self.tree.size == self.capture_size:
                self.root_at_capture = self.tree.root()
            while self._pending and self._pending[0].signed.checkpoint.size <= self.tree.size:
                known = self._pending.pop(0)
                self._compare(known, self.tree.root(),
                              bytes(chain_hashes[(stop - 1) * HASH_SIZE:stop * HASH_SIZE]))

    def _compare(self, known: Known, root: bytes, chain_hash: bytes) -> None:
        cp = known.signed.checkpoint
        if root == cp.root:
            self._rebuilt.add(id(known))
        if root != cp.root or chain_hash != cp.chain_hash:
            self._finding(CP_INCONSISTENT, cp.number, f"the stored records 1..{cp.size} do not "
                          f"rebuild its signed root ({known.source} copy): records were "
                          "changed, removed, added or reordered after it was signed")

    def finish(self, head_seq: int) -> None:
        """After the last row: checkpoints the rows never reached, and the proofs."""
        for known in self._pending:
            cp = known.signed.checkpoint
            if head_seq >= cp.size:
                # Rows are missing in the middle: the chain findings name them.
                self._finding(CP_INCONSISTENT, cp.number, f"the stored records 1..{cp.size} "
                              f"do not rebuild its signed root ({known.source} copy): only "
                              f"{self.tree.size} of them are stored")
            else:
                self._finding(MISSING, cp.number, f"covers {cp.size} records but the chain "
                              f"ends at seq {head_seq}: records {head_seq + 1}..{cp.size} "
                              "were deleted", seq=head_seq + 1)
        self._pending = []
        self._consistency_proofs()

    def _consistency_proofs(self) -> None:
        if self.leaves is None:
            if self.start is None:
                self.warnings.append("too many records to hold for consistency proofs; the "
                                     "rebuilt roots were checked instead")
            return
        chain = [self.by_number[n] for n in sorted(self.by_number) if self.by_number[n].valid]
        subtree_root = None
        if self.extender is not None and len(chain) > 1:
            # Each proof hashes up to its tree's every leaf again: with the extender, from
            # the blob of the leaves instead of leaf by leaf in Python.
            leaves, extender = self.leaves, self.extender

            def subtree_root(begin: int, end: int) -> bytes:
                tree = CompactRange()
                tree.extend_blob(leaves.slice_blob(begin, end), extender)
                return tree.root()
        for a, b in zip(chain, chain[1:]):
            ca, cb = a.signed.checkpoint, b.signed.checkpoint
            # The empty tree is a prefix of every tree: nothing to prove (RFC 9162).
            if ca.size == 0 or cb.size > len(self.leaves) or cb.size < ca.size:
                continue
            # Two roots the stored leaves rebuilt are roots of prefixes of one sequence:
            # the proof from those leaves verifies by construction. Building it anyway
            # rehashes up to every leaf per pair, hours for a year of checkpoints.
            if id(a) in self._rebuilt and id(b) in self._rebuilt:
                continue
            proof = merkle.consistency_proof(self.leaves, ca.size, cb.size, subtree_root)
            try:
                merkle.verify_consistency(ca.size, cb.size, proof, ca.root, cb.root)
            except ProofError as exc:
                self._finding(CP_INCONSISTENT, cb.number, f"no consistency with checkpoint "
                              f"{ca.number} ({exc})")

    def valid_checkpoints(self) -> list[SignedCheckpoint]:
        """Every checkpoint copy (database and anchor) that parsed and verified."""
        copies = list(self.db.values()) + list((self.anchor or {}).values())
        return [k.signed for k in copies if k.valid]

    # ------------------------------------------------------------ report
    def summary(self) -> dict[str, Any]:
        last = max(self.by_number.values(), key=lambda k: k.signed.checkpoint.number,
                   default=None)
        key = self.trust.public_key
        return {
            "checkpoints": len(self.by_number),
            "anchored": None if self.anchor is None else len(self.anchor),
            "key_id": key_id(key) if key is not None else None,
            "last": None if last is None else {
                "number": last.signed.checkpoint.number, "size": last.signed.checkpoint.size,
                "time_ns": last.signed.checkpoint.time_ns},
            "from_checkpoint": None if self.start is None else self.start.signed.checkpoint.number,
            "periods_without_checkpoint": self.periods,
        }
