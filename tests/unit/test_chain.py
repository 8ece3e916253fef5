"""The canonical envelope encoding and the chain's verification logic (no store)."""

import hashlib
import struct

import pytest

from aitrail.verify import chain, hashes
from aitrail.verify.chain import INSERTED, MISSING, MODIFIED, OUT_OF_ORDER, Link, Sealer
from aitrail.verify.envelope import (
    ROW_ENCODERS,
    STORED_FIELDS,
    VERSION_FIELDS,
    VERSION_TAGS,
    as_row,
    canonical_bytes,
    empty_envelope,
    row_has_stray,
    zero_value,
)
from aitrail.verify.hashes import ZERO_HASH, commitment


def _str(s: str) -> bytes:
    b = s.encode()
    return struct.pack(">I", len(b)) + b


@pytest.mark.parametrize("version", [1, 2])
def test_canonical_bytes_follow_the_documented_layout(version):
    env = empty_envelope(version)
    env.update(chain_id="c", record_id="r", start_time=5, confidence=0.5,
               attributes={"b": "2", "a": "1"})
    expected = [_str(f"aitrail.envelope.v{version}")]
    assert VERSION_TAGS[version] == f"aitrail.envelope.v{version}".encode()
    for f in VERSION_FIELDS[version]:
        v = env[f.name]
        if f.kind in ("str", "lstr"):
            expected.append(_str(v))
        elif f.kind in ("u64", "time"):
            expected.append(struct.pack(">Q", v))
        elif f.kind == "f64?":
            expected.append(b"\x00" if v is None else b"\x01" + struct.pack(">d", v))
        else:
            items = sorted(v.items())
            expected.append(struct.pack(">I", len(items)))
            expected += [_str(k) + _str(x) for k, x in items]
    assert canonical_bytes(env) == b"".join(expected)


def test_canonical_bytes_do_not_depend_on_map_insertion_order():
    a, b = empty_envelope(), empty_envelope()
    a["attributes"] = {"x": "1", "y": "2"}
    b["attributes"] = {"y": "2", "x": "1"}
    assert canonical_bytes(a) == canonical_bytes(b)


def test_field_boundaries_are_unambiguous():
    a, b = empty_envelope(), empty_envelope()
    a.update(task_id="ab", request_id="c")
    b.update(task_id="a", request_id="bc")
    assert canonical_bytes(a) != canonical_bytes(b)


def test_non_finite_confidence_cannot_be_sealed():
    env = empty_envelope()
    env["confidence"] = float("nan")
    with pytest.raises(ValueError):
        canonical_bytes(env)


def test_hashes_follow_rfc6962_leaf_and_the_chain_rule():
    assert hashes.leaf_hash(b"x") == hashlib.sha256(b"\x00x").digest()
    assert hashes.chain_hash(b"p" * 32, b"l" * 32) == hashlib.sha256(b"p" * 32 + b"l" * 32).digest()


def test_commitment_is_salted_sha256():
    assert commitment(b"salt", "text") == hashlib.sha256(b"salttext").hexdigest()


# ------------------------------------------------------------------ classification

def _chain(n: int) -> tuple[list[Link], list[dict]]:
    sealer = Sealer("c")
    links, envs = [], []
    for i in range(n):
        env = empty_envelope()
        env.update(chain_id="c", record_id=f"r{i + 1}", start_time=i + 1)
        links.append(sealer.seal(env))
        envs.append(env)
    return links, envs


def _kinds(findings):
    return sorted((f.kind, f.seq) for f in findings)


def test_intact_chain_has_no_findings():
    links, envs = _chain(10)
    assert chain.links_intact(links)
    assert list(chain.check_rows("c", zip(links, envs))) == []
    assert chain.classify_links("c", links) == []


def test_a_changed_field_is_reported_as_modified():
    links, envs = _chain(5)
    envs[2]["model"] = "forged"
    findings = list(chain.check_rows("c", zip(links, envs)))
    assert [(f.kind, f.seq, f.record_id) for f in findings] == [(MODIFIED, 3, "r3")]


@pytest.mark.parametrize("field, value", [
    ("confidence", float("nan")), ("confidence", float("inf")), ("confidence", "0.5"),
    ("input_tokens", 2**64), ("start_time", -1), ("input_tokens", "7"),
    ("attributes", {"k": 1}),
])
def test_a_stored_row_that_cannot_be_encoded_is_modified_not_an_error(field, value):
    links, envs = _chain(5)
    envs[2][field] = value
    findings = list(chain.check_rows("c", zip(links, envs)))
    assert [(f.kind, f.seq, f.record_id) for f in findings] == [(MODIFIED, 3, "r3")]
    assert "cannot be encoded canonically" in findings[0].detail
    assert "changed after sealing" in findings[0].detail


def test_the_incremental_link_checker_stays_broken_from_the_first_bad_link():
    links, _ = _chain(6)
    checker = chain.LinkChecker()
    assert [checker.add(link) for link in links[:3]] == [True] * 3
    assert [checker.add(link) for link in links[4:]] == [False, False]  # seq 4 is gone
    assert not checker.intact and not chain.links_intact(links[:3] + links[4:])
    assert chain.links_intact(links[3:], start_seq=4, start_hash=links[2].chain_hash)


def test_a_deleted_record_is_reported_missing_at_its_seq():
    links, _ = _chain(8)
    del links[4]
    assert not chain.links_intact(links)
    assert _kinds(chain.classify_links("c", links)) == [(MISSING, 5)]


def test_deleting_the_second_to_last_record_is_missing_not_inserted():
    links, _ = _chain(6)
    del links[4]
    assert _kinds(chain.classify_links("c", links)) == [(MISSING, 5)]


def test_two_swapped_records_are_out_of_order_and_nothing_else():
    links, _ = _chain(8)
    a, b = links[3], links[4]
    links[3] = Link(4, b.record_id, b.prev_hash, b.leaf_hash, b.chain_hash)
    links[4] = Link(5, a.record_id, a.prev_hash, a.leaf_hash, a.chain_hash)
    found = chain.classify_links("c", links)
    assert _kinds(found) == [(OUT_OF_ORDER, 4), (OUT_OF_ORDER, 5)]
    assert {f.record_id for f in found} == {"r4", "r5"}


def test_a_forged_row_reusing_a_seq_is_inserted():
    links, _ = _chain(6)
    forged = Link(3, "forged", links[1].chain_hash, b"\x01" * 32,
                  hashes.chain_hash(links[1].chain_hash, b"\x01" * 32))
    links.insert(3, forged)
    found = chain.classify_links("c", links)
    assert [(f.kind, f.record_id) for f in found] == [(INSERTED, "forged")]


def test_a_forged_row_appended_with_garbage_hashes_is_inserted():
    links, _ = _chain(4)
    links.append(Link(5, "forged", b"\x07" * 32, b"\x08" * 32, b"\x09" * 32))
    assert [(f.kind, f.record_id) for f in chain.classify_links("c", links)] == [(INSERTED, "forged")]


def test_a_forged_row_with_renumbered_successors_is_inserted():
    links, _ = _chain(6)
    renumbered = [Link(l.seq + 1, l.record_id, l.prev_hash, l.leaf_hash, l.chain_hash)
                  for l in links[3:]]
    forged = Link(4, "forged", b"\x07" * 32, b"\x08" * 32, b"\x09" * 32)
    found = chain.classify_links("c", links[:3] + [forged] + renumbered)
    assert (INSERTED, "forged") in [(f.kind, f.record_id) for f in found]
    assert all(f.kind != MISSING for f in found)


@pytest.mark.parametrize("version", [1, 2, 3])
def test_the_published_spec_lists_the_fields_in_sealing_order(version):
    import re
    from pathlib import Path
    doc = (Path(__file__).resolve().parents[2] / "docs/canonical-envelope.md").read_text()
    # Each version's table follows its heading "## Fields, version N".
    section = doc.split(f"## Fields, version {version}\n", 1)[1].split("\n## ", 1)[0]
    listed = re.findall(r"^\| \d+ \| `(\w+)` \| (\w+\??) \|", section, flags=re.M)
    assert listed == [(f.name, "str" if f.kind == "lstr" else f.kind)
                      for f in VERSION_FIELDS[version]]


from hypothesis import given, settings
from hypothesis import strategies as st

_text = st.text(max_size=20)
def _envelope_of(version):
    fields = {
        f.name: (_text if f.kind in ("str", "lstr") else
                 st.integers(0, 2**64 - 1) if f.kind in ("u64", "time") else
                 st.one_of(st.none(), st.floats(allow_nan=False, allow_infinity=False))
                 if f.kind == "f64?" else st.dictionaries(_text, _text, max_size=4))
        for f in VERSION_FIELDS[version]}
    fields["envelope_version"] = st.just(version)
    return st.fixed_dictionaries(fields)


_envelopes = st.one_of(_envelope_of(1), _envelope_of(2), _envelope_of(3))


@settings(max_examples=300, deadline=None)
@given(_envelopes)
def test_the_fast_encoder_matches_the_reference_encoding(env):
    from aitrail.verify.envelope import canonical_bytes_reference
    assert canonical_bytes(env) == canonical_bytes_reference(env)
    row = as_row(env)  # the same envelope as a stored row, as the verifier reads it
    assert ROW_ENCODERS[env["envelope_version"]](row) == canonical_bytes(env)
    assert not row_has_stray(row)


# ------------------------------------------------------------------ stored rows (scan_rows)

def _blocks(links, envs, size=3):
    """The rows as the store gives them to the verifier: column blocks of ``size`` rows."""
    rows = [as_row(env, link.seq, link.prev_hash, link.leaf_hash, link.chain_hash)
            for link, env in zip(links, envs)]
    return [[list(col) for col in zip(*rows[i:i + size])] for i in range(0, len(rows), size)]


def _stored(env):
    """A stored row's every column: the envelope's, the other versions' at zero."""
    return {**{f.name: zero_value(f) for f in STORED_FIELDS}, **env}


def test_scan_rows_passes_an_intact_chain_block_by_block():
    links, envs = _chain(7)
    got = []
    summary = chain.scan_rows(_blocks(links, envs), on_block=lambda a, b: got.extend(zip(a, b)))
    assert summary == chain.ChainSummary(7, 7, [], True)
    assert got == [(link.leaf_hash, link.chain_hash) for link in links]
    later = chain.scan_rows(_blocks(links[3:], envs[3:]), 4, links[2].chain_hash)
    assert later == chain.ChainSummary(4, 7, [], True)
    assert not chain.scan_rows(_blocks(links[3:], envs[3:])).intact  # not from seq 1
    del links[4], envs[4]
    assert chain.scan_rows(_blocks(links, envs)) == chain.ChainSummary(6, 7, [], False)


def _relink(link, **change):
    return Link(**{**vars(link), **change})


@pytest.mark.parametrize("tamper", [
    lambda links, envs: envs[2].update(model="forged"),
    lambda links, envs: envs[2].update(attributes={"k": "v"}),
    lambda links, envs: envs[2].update(confidence=float("nan")),
    lambda links, envs: envs[2].update(score_value=float("-inf")),
    lambda links, envs: envs[2].update(start_time=-1),
    lambda links, envs: envs[2].update(input_tokens=2**64),
    lambda links, envs: envs[2].update(error_message="x"),       # not sealed by v3
    lambda links, envs: envs[2].update(envelope_version=7),
    lambda links, envs: links.__setitem__(2, _relink(links[2], leaf_hash=b"\x01" * 32)),
    lambda links, envs: links.__setitem__(2, _relink(links[2], chain_hash=b"\x01" * 32)),
], ids=["field", "map", "nan", "inf", "negative_time", "u64_overflow", "stray", "version",
        "leaf_hash", "chain_hash"])
def test_scan_rows_fails_exactly_the_rows_check_rows_reports(tamper):
    links, envs = _chain(5)
    envs = [_stored(dict(env, envelope_version=3)) for env in envs]
    tamper(links, envs)
    reported = [f.seq for f in chain.check_rows("c", zip(links, envs))]
    assert reported == [3]
    assert chain.scan_rows(_blocks(links, envs)).failing_seqs == reported


_kind_values = {"str": _text, "lstr": _text, "u64": st.integers(-1, 2**64),
                "time": st.integers(-1, 2**63 - 1),
                "f64?": st.one_of(st.none(), st.floats()),
                "map": st.dictionaries(_text, _text, max_size=3)}


@st.composite
def _sealed_then_tampered(draw):
    """A row sealed under any version, then perhaps any one column set to any value its
    column can hold (a time or u64 out of the encoding's range, a NaN, ...)."""
    env = _stored(draw(_envelopes))
    leaf = hashes.leaf_hash(canonical_bytes(env))
    f = draw(st.sampled_from(STORED_FIELDS))
    if draw(st.booleans()):
        env[f.name] = draw(_kind_values[f.kind])
    return Link(1, "r", ZERO_HASH, leaf, hashes.chain_hash(ZERO_HASH, leaf)), env


@settings(max_examples=300, deadline=None)
@given(_sealed_then_tampered())
def test_a_stored_row_passes_scan_rows_exactly_when_check_rows_finds_nothing(case):
    """The verifier's checks on stored bytes agree with the reference on envelope dicts."""
    link, env = case
    row = as_row(env, link.seq, link.prev_hash, link.leaf_hash, link.chain_hash)
    assert chain.row_ok(row) == (list(chain.check_rows("c", [(link, env)])) == [])


def test_the_framed_value_cache_stays_bounded_and_does_not_change_the_bytes():
    """lstr values are framed once per value, but the cache keeps only so many short
    ones: a field whose values never repeat (or are long) costs no memory."""
    from aitrail.verify.envelope import _Framed
    cache = _Framed(text=True)
    for i in range(_Framed.LIMIT + 10):
        assert cache[f"v{i}"] == _str(f"v{i}")
    assert len(cache) == _Framed.LIMIT
    long, short = "x" * (_Framed.LONGEST + 1), "model"
    fresh = _Framed(text=True)
    assert fresh[long] == _str(long) and fresh[short] == _str(short)
    assert long not in fresh and short in fresh
    assert _Framed(text=False)[b"\xc3\xa9"] == _str("é")
