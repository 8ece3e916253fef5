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
