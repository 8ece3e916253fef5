"""CheckpointAudit on synthetic checkpoints: what needs no store (links, gaps, periods)."""

from __future__ import annotations

import hashlib

from aitrail.verify import hashes, merkle
from aitrail.verify.audit import CheckpointAudit, Trust
from aitrail.verify.checkpoint import Checkpoint, generate_keypair, key_id, load_private_key, sign

HOUR_NS = 3600 * 10**9
T0 = 1_790_000_000 * 10**9


def _leaves(n: int) -> list[bytes]:
    return [hashes.leaf_hash(str(i).encode()) for i in range(n)]


def _chain_hashes(leaves: list[bytes]) -> list[bytes]:
    out, prev = [], bytes(32)
    for leaf in leaves:
        prev = hashlib.sha256(prev + leaf).digest()
        out.append(prev)
    return out


def _signed_series(key, sizes, times, leaves):
    chain = _chain_hashes(leaves)
    rows, prev = [], None
    for number, (size, t) in enumerate(zip(sizes, times), start=1):
        cp = Checkpoint(origin="main", number=number, size=size,
                        root=merkle.root(leaves[:size]),
                        chain_hash=chain[size - 1] if size else bytes(32), time_ns=t,
                        prev=prev.digest() if prev else bytes(32),
                        key_id=key_id(key.public_key()))
        prev = sign(cp, key)
        rows.append((number, size, prev.text(), []))
    return rows


def _run(rows, leaves, trust):
    audit = CheckpointAudit("main", rows, None, trust)
    for leaf, ch in zip(leaves, _chain_hashes(leaves)):
        audit.add(leaf, ch)
    audit.finish(len(leaves))
    return audit


def test_clean_series_has_no_findings_and_no_quiet_periods():
    key = load_private_key(generate_keypair()[0])
    leaves = _leaves(30)
    rows = _signed_series(key, [0, 10, 10, 30], [T0, T0 + HOUR_NS, T0 + 2 * HOUR_NS,
                                                 T0 + 3 * HOUR_NS], leaves)
    audit = _run(rows, leaves, Trust(public_key=key.public_key()))
    assert audit.findings == [] and audit.periods == []
    assert audit.summary()["last"]["size"] == 30


def test_silence_longer_than_the_cadence_is_reported_as_a_period():
    key = load_private_key(generate_keypair()[0])
    leaves = _leaves(5)
    rows = _signed_series(key, [0, 5, 5], [T0, T0 + HOUR_NS, T0 + 40 * HOUR_NS], leaves)
    audit = _run(rows, leaves, Trust(public_key=key.public_key(), max_gap_s=25 * 3600))
    assert audit.findings == []
    assert audit.periods == [{"from": T0 + HOUR_NS, "to": T0 + 40 * HOUR_NS, "after": 2,
                              "hours": 39.0}]


def test_a_checkpoint_missing_everywhere_and_a_broken_prev_link_are_named():
    key = load_private_key(generate_keypair()[0])
    leaves = _leaves(12)
    rows = _signed_series(key, [0, 4, 8, 12], [T0 + i * HOUR_NS for i in range(4)], leaves)
    audit = _run([rows[0], rows[1], rows[3]], leaves, Trust(public_key=key.public_key()))
    assert [(f.kind, f.detail) for f in audit.findings] == [
        ("checkpoint_missing", "checkpoint 3: absent from the database and the anchor "
                               "(checkpoint 4 follows 2)")]
    # Numbers 3 and 4 taken from another series (its number 2 was signed at another
    # time), so number 3's prev does not name the genuine number 2:
    other = _signed_series(key, [0, 4, 8, 12], [T0, T0 + 5, T0 + 2 * HOUR_NS,
                                                T0 + 3 * HOUR_NS], leaves)
    audit = _run([rows[0], rows[1], other[2], other[3]], leaves,
                 Trust(public_key=key.public_key()))
    assert [(f.kind, f.detail) for f in audit.findings] == [
        ("checkpoint_inconsistent", "checkpoint 3: its prev digest does not name checkpoint 2")]


def test_without_a_public_key_signatures_are_not_claimed():
    key = load_private_key(generate_keypair()[0])
    leaves = _leaves(3)
    rows = _signed_series(key, [3], [T0], leaves)
    audit = _run(rows, leaves, Trust())
    assert audit.findings == [] and audit.summary()["key_id"] is None
    assert any("anchor" in w for w in audit.warnings)


class _AnchorEntry:
    """An anchor object as the collector's ``anchor.AnchorEntry`` gives it."""

    def __init__(self, number: int, text: str):
        from aitrail.verify.checkpoint import SignedCheckpoint
        self.name, self.number, self.text, self.error = f"{number:020d}", number, text, None
        self.signed = SignedCheckpoint.parse(text)


def test_a_text_in_both_the_database_and_the_anchor_is_signature_checked_once(monkeypatch):
    import aitrail.verify.audit as audit_module
    key = load_private_key(generate_keypair()[0])
    leaves = _leaves(20)
    rows = _signed_series(key, [5, 10, 20], [T0, T0 + HOUR_NS, T0 + 2 * HOUR_NS], leaves)
    checked = []
    real = audit_module.verify_signature
    monkeypatch.setattr(audit_module, "verify_signature",
                        lambda signed, pk: (checked.append(signed.checkpoint.number),
                                            real(signed, pk))[1])
    anchor = [_AnchorEntry(n, text) for n, _, text, _ in rows]
    audit = CheckpointAudit("main", rows, anchor, Trust(public_key=key.public_key()))
    assert sorted(checked) == [1, 2, 3]
    for leaf, ch in zip(leaves, _chain_hashes(leaves)):
        audit.add(leaf, ch)
    audit.finish(len(leaves))
    assert audit.findings == []


def test_an_anchor_copy_that_differs_is_checked_on_its_own_and_its_bad_signature_named():
    key = load_private_key(generate_keypair()[0])
    other = load_private_key(generate_keypair()[0])
    leaves = _leaves(20)
    rows = _signed_series(key, [5, 10, 20], [T0, T0 + HOUR_NS, T0 + 2 * HOUR_NS], leaves)
    forged = _signed_series(other, [5, 10, 20], [T0, T0 + HOUR_NS, T0 + 2 * HOUR_NS], leaves)
    anchor = [_AnchorEntry(1, rows[0][2]), _AnchorEntry(2, forged[1][2]),
              _AnchorEntry(3, rows[2][2])]
    audit = CheckpointAudit("main", rows, anchor, Trust(public_key=key.public_key()))
    bad = [f.detail for f in audit.findings if f.kind == "checkpoint_bad_signature"]
    assert len(bad) == 1 and bad[0].startswith("checkpoint 2: the anchor copy: signed by key")
