"""The pure checks behind ``verify --since-checkpoint`` and the trust-root report."""

from __future__ import annotations

import os

from aitrail.verify import hashes, merkle
from aitrail.verify.checkpoint import Checkpoint, generate_keypair, key_id, load_private_key, sign
from aitrail.verify.pinned import (
    PINNED_BAD_SIGNATURE,
    PINNED_INCONSISTENT,
    PINNED_UNKNOWN_CHAIN,
    TRUNCATED,
    Extension,
    check_pinned,
)
from aitrail.verify.trust_root import NOT_INDEPENDENT, is_inside, trust_root, verdict_ok

T0 = 1_790_000_000 * 10**9


def _key():
    return load_private_key(generate_keypair()[0])


def _leaves(n, salt=""):
    return [hashes.leaf_hash(f"{salt}{i}".encode()) for i in range(n)]


def _cp(key, number, leaves, size):
    return sign(Checkpoint(origin="main", number=number, size=size,
                           root=merkle.root(leaves[:size]), chain_hash=bytes(32),
                           time_ns=T0 + number, prev=bytes(32) if number == 1 else b"\1" * 32,
                           key_id=key_id(key.public_key())), key)


def _ext(signed, leaves, size1):
    size2 = signed.checkpoint.size
    return Extension(signed, merkle.consistency_proof(leaves, size1, size2))


def _kinds(findings):
    return sorted(f.kind for f in findings)


def test_consistent_later_history_is_no_finding():
    key, leaves = _key(), _leaves(20)
    pinned, later = _cp(key, 3, leaves, 10), _cp(key, 7, leaves, 20)
    out = check_pinned(pinned, chains=["main"], public_key=key.public_key(), head_seq=20,
                       stored=[pinned, later], root_at_size=merkle.root(leaves[:10]),
                       extension=_ext(later, leaves, 10))
    assert out == []


def test_truncation_below_the_pinned_size_is_a_finding():
    key, leaves = _key(), _leaves(20)
    pinned = _cp(key, 5, leaves, 20)
    older = _cp(key, 3, leaves, 12)  # the newest checkpoints were deleted with the records
    out = check_pinned(pinned, chains=["main"], public_key=key.public_key(), head_seq=12,
                       stored=[older], extension=None)
    assert _kinds(out) == [TRUNCATED]
    assert "13..20" in out[0].detail and out[0].seq == 13


def test_rewritten_history_resigned_with_the_same_key_is_a_finding():
    key, leaves, forged = _key(), _leaves(20), _leaves(20, salt="x")
    pinned = _cp(key, 3, leaves, 10)
    resigned_3, resigned_7 = _cp(key, 3, forged, 10), _cp(key, 7, forged, 20)
    out = check_pinned(pinned, chains=["main"], public_key=key.public_key(), head_seq=20,
                       stored=[resigned_3, resigned_7], root_at_size=merkle.root(forged[:10]),
                       extension=_ext(resigned_7, forged, 10))
    assert _kinds(out) == [PINNED_INCONSISTENT] * 3


def test_remote_check_without_rebuilt_root_relies_on_the_consistency_proof():
    key, leaves, forged = _key(), _leaves(20), _leaves(20, salt="x")
    pinned, resigned = _cp(key, 3, leaves, 10), _cp(key, 7, forged, 20)
    out = check_pinned(pinned, chains=["main"], public_key=key.public_key(), head_seq=20,
                       stored=[resigned], extension=_ext(resigned, forged, 10))
    assert _kinds(out) == [PINNED_INCONSISTENT]
    assert "not a consistent extension" in out[0].detail


def test_unknown_chain_and_wrong_key():
    key, leaves = _key(), _leaves(5)
    pinned = _cp(key, 1, leaves, 5)
    assert _kinds(check_pinned(pinned, chains=["other"], public_key=None, head_seq=0,
                               stored=[])) == [PINNED_UNKNOWN_CHAIN]
    assert _kinds(check_pinned(pinned, chains=["main"], public_key=_key().public_key(),
                               head_seq=5, stored=[])) == [PINNED_BAD_SIGNATURE]


def test_no_stored_checkpoint_extends_it():
    key, leaves = _key(), _leaves(10)
    pinned = _cp(key, 4, leaves, 10)
    out = check_pinned(pinned, chains=["main"], public_key=key.public_key(), head_seq=10,
                       stored=[_cp(key, 2, leaves, 5)], extension=None)
    assert _kinds(out) == [PINNED_INCONSISTENT]


def test_inside_the_data_directory_resolves_symlinks(tmp_path):
    data = tmp_path / "data"
    (data / "anchor").mkdir(parents=True)
    elsewhere = tmp_path / "elsewhere"
    os.symlink(data / "anchor", elsewhere)
    assert is_inside(str(data / "anchor"), str(data))
    assert is_inside(str(elsewhere), str(data))
    assert is_inside("file://" + str(elsewhere), str(data))
    assert not is_inside(str(tmp_path / "data2"), str(data))
    assert not is_inside("s3://bucket/data", str(data))


def test_a_trust_root_inside_the_data_directory_qualifies_the_verdict(tmp_path):
    data = str(tmp_path)
    root = trust_root(data_dir=data, key_path=f"{data}/signing-key.pub", key_id="k1",
                      key_source="data directory default", anchor=f"{data}/anchor",
                      anchor_describe="directory", anchor_source="data directory default")
    assert root["independent"] is False and len(root["warnings"]) == 2
    assert verdict_ok({"trust_root": root}) == f"OK, but {NOT_INDEPENDENT}"
    outside = trust_root(data_dir=data, key_path="/etc/aitrail/key.pub", key_id="k1",
                         key_source="--public-key", anchor="s3://b/p", anchor_describe="s3",
                         anchor_source="--anchor")
    assert outside["independent"] is True and outside["warnings"] == []
    assert verdict_ok({"trust_root": outside}) == "OK"
    none = trust_root(data_dir=data, key_path=None, key_id=None, key_source=None, anchor=None,
                      anchor_describe=None, anchor_source=None)
    assert none["independent"] is False and any("no public key" in w for w in none["warnings"])
