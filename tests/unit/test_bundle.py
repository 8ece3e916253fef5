"""Proof bundles refused for what they hold, before any signature is needed."""

import pytest

from aitrail.verify import bundle as b
from aitrail.verify.bundle import BundleError, verify_bundle
from aitrail.verify.envelope import FIELDS, empty_envelope


def _text(**envelope_fields) -> str:
    env = empty_envelope()
    env.update(chain_id="main", record_id="r1", **envelope_fields)
    return b.dumps({"format": b.FORMAT, "chain_id": "main", "record_id": "r1", "seq": 1,
                    "leaf_index": 0, "leaf_hash": "00" * 32, "tree_size": 1,
                    "inclusion_proof": [], "envelope": env, "checkpoint": "x"})


U64_FIELDS = [f.name for f in FIELDS if f.kind in ("u64", "time")]


@pytest.mark.parametrize("value", [2**64, -1])
@pytest.mark.parametrize("name", [U64_FIELDS[0], "input_tokens", "received_time"])
def test_an_out_of_range_whole_number_is_a_bundle_error(name, value):
    with pytest.raises(BundleError, match="cannot be encoded"):
        verify_bundle(_text(**{name: value}), None)


def test_a_map_key_twice_gets_no_bundle_and_a_bundle_with_one_does_not_verify():
    """A stored map holding a key twice (an entry written in after sealing) cannot go in
    a bundle, whose maps are JSON objects: the bundle maker refuses, naming the key. A
    bundle edited to hold a JSON key twice (a reader keeps the last, the sealed one)
    fails as not canonical."""
    import json
    from pathlib import Path

    from aitrail.verify.checkpoint import SignedCheckpoint, load_public_key
    vectors = json.loads((Path(__file__).parent.parent / "testdata" / "bundles.json")
                         .read_text())
    case = next(c for c in vectors["valid"] if '"claim_type": "auto"' in c["text"])
    key = load_public_key(vectors["key"]["public_key_pem"].encode())
    assert verify_bundle(case["text"], key)
    parsed = json.loads(case["text"])
    env = dict(parsed["envelope"], attributes=[("claim_type", "forged")]
               + sorted(parsed["envelope"]["attributes"].items()))
    with pytest.raises(BundleError, match="attributes holds the key 'claim_type' 2 times"):
        b.make_bundle(env, parsed["seq"], bytes.fromhex(parsed["leaf_hash"]), [],
                      SignedCheckpoint.parse(parsed["checkpoint"]))
    twice = case["text"].replace('"claim_type": "auto"',
                                 '"claim_type": "forged",\n      "claim_type": "auto"', 1)
    assert json.loads(twice)["envelope"]["attributes"]["claim_type"] == "auto"
    with pytest.raises(BundleError, match="not in canonical form"):
        verify_bundle(twice, key)
