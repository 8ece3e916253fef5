"""The committed known-answer vectors in tests/testdata/ agree with the SDK, and are current.

The vectors are written by scripts/make-vectors and read here in place; implementations in
other languages check against the same files (tests/testdata/README.md).
"""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from aitrail.verify.bundle import BundleError, verify_bundle

# Project modules: one block, so that a module move is one edit here.
from aitrail.verify.chain import Sealer
from aitrail.verify.checkpoint import (
    CheckpointError,
    SignedCheckpoint,
    format_time,
    key_id,
    load_public_key,
    sign,
    verify_signature,
)
from aitrail.verify.envelope import (
    ROW_ENCODERS,
    VERSION_FIELDS,
    as_row,
    canonical_bytes,
    canonical_bytes_reference,
)
from aitrail.verify.hashes import ZERO_HASH as GENESIS
from aitrail.verify.hashes import chain_hash, leaf_hash

TESTDATA = Path(__file__).resolve().parents[1] / "testdata"
SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "make-vectors"


def _load(name: str) -> dict:
    return json.loads((TESTDATA / name).read_text(encoding="utf-8"))


ENVELOPES = _load("envelopes.json")
CHECKPOINTS = _load("checkpoints.json")
BUNDLES = _load("bundles.json")


def _ids(cases):
    return [c["name"] for c in cases]


# --------------------------------------------------------------------------- envelopes


def test_envelope_vectors_cover_what_they_should():
    names = set(_ids(ENVELOPES["cases"]))
    for needed in ("zero", "model_call", "review", "map_key_order", "confidence_absent",
                   "confidence_0", "confidence_1", "confidence_half", "confidence_0_1",
                   "confidence_negative_zero", "unicode_text", "nul_character",
                   "combining_decomposed", "max_u64", "v2_zero", "v2_apikey_and_mtls"):
        assert needed in names
    assert len(names) == len(ENVELOPES["cases"]), "case names must be unique"


@pytest.mark.parametrize("case", ENVELOPES["cases"] + ENVELOPES["chain"],
                         ids=_ids(ENVELOPES["cases"] + ENVELOPES["chain"]))
def test_envelope_case(case):
    env = case["envelope"]
    version = env.get("envelope_version", 1)
    names = [f.name for f in VERSION_FIELDS[version]]
    assert list(env) == names + (["envelope_version"] if version != 1 else [])
    canonical = canonical_bytes(env)
    assert canonical.hex() == case["canonical_hex"]
    assert canonical_bytes_reference(env) == canonical
    assert ROW_ENCODERS[version](as_row(env)) == canonical  # the verifier's, on stored rows
    leaf = leaf_hash(canonical)
    assert leaf.hex() == case["leaf_hash"]
    assert chain_hash(bytes.fromhex(case["prev_chain_hash"]), leaf).hex() == case["chain_hash"]


def test_standalone_envelope_cases_start_from_genesis():
    assert {c["prev_chain_hash"] for c in ENVELOPES["cases"]} == {GENESIS.hex()}


def test_map_order_in_the_file_is_not_already_sorted():
    # The vector is only a test of sorting if the file gives the keys out of order.
    params = next(c for c in ENVELOPES["cases"] if c["name"] == "map_key_order")
    keys = list(params["envelope"]["parameters"])
    assert keys != sorted(keys, key=lambda k: k.encode("utf-8"))


def test_negative_zero_keeps_its_sign_bit():
    by_name = {c["name"]: c for c in ENVELOPES["cases"]}
    neg = by_name["confidence_negative_zero"]
    assert str(neg["envelope"]["confidence"]) == "-0.0"
    assert "018000000000000000" in neg["canonical_hex"]
    assert neg["leaf_hash"] != by_name["confidence_0"]["leaf_hash"]


def test_chain_is_sealed_in_order_from_genesis():
    sealer = Sealer(ENVELOPES["chain"][0]["envelope"]["chain_id"])
    prev = GENESIS
    for n, case in enumerate(ENVELOPES["chain"], start=1):
        assert case["seq"] == n
        assert case["prev_chain_hash"] == prev.hex()
        link = sealer.seal(case["envelope"])
        assert (link.seq, link.leaf_hash.hex(), link.chain_hash.hex()) == (
            n, case["leaf_hash"], case["chain_hash"])
        prev = link.chain_hash


# --------------------------------------------------------------------------- checkpoints


def _public_key(info: dict):
    return load_public_key(info["public_key_pem"].encode())


def test_checkpoint_key_material_is_consistent():
    for info in (CHECKPOINTS["key"], CHECKPOINTS["other_key"], BUNDLES["key"]):
        private = Ed25519PrivateKey.from_private_bytes(
            bytes.fromhex(info["private_key_seed_hex_TEST_ONLY"]))
        public = private.public_key()
        raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        assert raw.hex() == info["public_key_raw_hex"]
        assert key_id(public) == info["key_id"] == hashlib.sha256(raw).hexdigest()[:16]
        assert key_id(_public_key(info)) == info["key_id"]
    assert BUNDLES["key"] == CHECKPOINTS["key"]


@pytest.mark.parametrize("case", CHECKPOINTS["valid"], ids=_ids(CHECKPOINTS["valid"]))
def test_valid_checkpoint(case):
    text = case["text"]
    signed = SignedCheckpoint.parse(text)
    verify_signature(signed, _public_key(CHECKPOINTS["key"]))
    assert signed.text() == text
    assert signed.digest().hex() == case["digest"] == hashlib.sha256(text.encode()).hexdigest()
    cp = signed.checkpoint
    want = case["checkpoint"]
    assert (cp.origin, cp.number, cp.size, cp.root.hex(), cp.chain_hash.hex(), cp.time_ns,
            cp.prev.hex(), cp.key_id) == (
        want["origin"], want["number"], want["size"], want["root_hex"], want["chain"],
        want["time_ns"], want["prev"], want["key"])
    assert f"time {format_time(cp.time_ns)}\n" in text
    assert cp.body().hex() == case["body_hex"]
    assert signed.signature.hex() == case["signature_hex"]
    # Ed25519 is deterministic: the committed seed re-signs to the same text.
    seed = bytes.fromhex(CHECKPOINTS["key"]["private_key_seed_hex_TEST_ONLY"])
    assert sign(cp, Ed25519PrivateKey.from_private_bytes(seed)).text() == text


def test_valid_checkpoints_link_and_cover_the_envelope_chain():
    by_name = {c["name"]: c for c in CHECKPOINTS["valid"]}
    cps = [by_name[f"vectors_{n}"] for n in (1, 2, 3, 4)]
    assert cps[0]["checkpoint"]["prev"] == "00" * 32
    for before, after in zip(cps, cps[1:]):
        assert after["checkpoint"]["prev"] == before["digest"]
        assert after["checkpoint"]["number"] == before["checkpoint"]["number"] + 1
    heads = [c["chain_hash"] for c in ENVELOPES["chain"]]
    for c in cps:
        assert c["checkpoint"]["chain"] == heads[c["checkpoint"]["size"] - 1]
    empty = by_name["empty_chain"]["checkpoint"]
    assert (empty["size"], empty["chain"]) == (0, "00" * 32)
    assert empty["root_hex"] == hashlib.sha256(b"").hexdigest()


@pytest.mark.parametrize("case", CHECKPOINTS["invalid"], ids=_ids(CHECKPOINTS["invalid"]))
def test_invalid_checkpoint(case):
    assert case["stage"] in ("parse", "verify")
    if case["stage"] == "parse":
        with pytest.raises(CheckpointError) as exc:
            SignedCheckpoint.parse(case["text"])
    else:
        signed = SignedCheckpoint.parse(case["text"])
        with pytest.raises(CheckpointError) as exc:
            verify_signature(signed, _public_key(CHECKPOINTS["key"]))
    assert case["error"] in str(exc.value)


def test_checkpoint_case_names_are_unique():
    names = _ids(CHECKPOINTS["valid"] + CHECKPOINTS["invalid"])
    assert len(names) == len(set(names))


# --------------------------------------------------------------------------- bundles


@pytest.mark.parametrize("case", BUNDLES["valid"], ids=_ids(BUNDLES["valid"]))
def test_valid_bundle(case):
    bundle = verify_bundle(case["text"], _public_key(BUNDLES["key"]))
    assert (bundle["leaf_index"], bundle["tree_size"]) == (case["leaf_index"], case["tree_size"])
    # The bundle's record is the envelopes.json case it names.
    record = {c["name"]: c for c in ENVELOPES["cases"] + ENVELOPES["chain"]}[case["envelope_case"]]
    assert bundle["envelope"] == record["envelope"]
    assert bundle["leaf_hash"] == record["leaf_hash"]
    assert bundle["checkpoint"] in {c["text"] for c in CHECKPOINTS["valid"]}


def test_valid_bundles_cover_trees_of_size_1_2_7_10_and_12():
    assert {c["tree_size"] for c in BUNDLES["valid"]} == {1, 2, 7, 10, 12}


def test_the_chain_changes_envelope_version_and_verifies_across_it():
    """Records 1..7 are v1, 8..10 v2, 11..12 v3, in one chain: a store sealed before v2
    (and before v3) goes on."""
    versions = [c["envelope"].get("envelope_version", 1) for c in ENVELOPES["chain"]]
    assert versions == [1] * 7 + [2] * 3 + [3] * 2
    formats = {json.loads(c["text"])["format"] for c in BUNDLES["valid"]}
    assert formats == {"aitrail-proof-bundle/v1", "aitrail-proof-bundle/v2",
                       "aitrail-proof-bundle/v3"}
    # The v3 records: a model call's response id, and an evaluation of that response.
    call, evaluation = (c["envelope"] for c in ENVELOPES["chain"][10:])
    assert call["response_id"] == evaluation["response_id"] != ""
    assert (evaluation["event_type"], evaluation["score_value"]) == ("evaluation", 0.82)
    assert set(evaluation["commitments"]) == {"explanation"}


@pytest.mark.parametrize("case", BUNDLES["invalid"], ids=_ids(BUNDLES["invalid"]))
def test_invalid_bundle(case):
    with pytest.raises(BundleError) as exc:
        verify_bundle(case["text"], _public_key(BUNDLES["key"]))
    assert case["error"] in str(exc.value)


def test_bundle_case_names_are_unique():
    names = _ids(BUNDLES["valid"] + BUNDLES["invalid"])
    assert len(names) == len(set(names))


# --------------------------------------------------------------------------- the script


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True,
                          text=True, timeout=120)


def test_committed_vectors_are_what_the_script_writes():
    result = _run("--check")
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_script_is_deterministic(tmp_path):
    first, second = tmp_path / "a", tmp_path / "b"
    for out in (first, second):
        result = _run("--out", str(out))
        assert result.returncode == 0, result.stderr
    names = sorted(p.name for p in first.iterdir())
    assert names == ["bundles.json", "checkpoints.json", "envelopes.json"]
    for name in names:
        assert (first / name).read_bytes() == (second / name).read_bytes(), name
        assert (first / name).read_bytes() == (TESTDATA / name).read_bytes(), name


def test_check_reports_a_stale_file(tmp_path):
    assert _run("--out", str(tmp_path)).returncode == 0
    path = tmp_path / "checkpoints.json"
    path.write_text(path.read_text().replace('"number": 2', '"number": 5', 1))
    result = _run("--check", "--out", str(tmp_path))
    assert result.returncode == 1
    assert "checkpoints.json" in result.stdout and "differs" in result.stdout
    assert "envelopes.json" not in result.stdout


def test_signature_bytes_in_texts_are_standard_base64():
    # Guard for the vectors themselves: the sig line's last field decodes to the signature.
    for case in CHECKPOINTS["valid"]:
        sig = case["text"].rstrip("\n").rsplit(" ", 1)[1]
        assert base64.b64decode(sig, validate=True).hex() == case["signature_hex"]
