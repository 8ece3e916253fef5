"""Signed checkpoints: the text form, strict parsing, Ed25519 signatures and key files."""

from __future__ import annotations

import base64
import hashlib
import os
import stat

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from aitrail.verify.checkpoint import (
    Checkpoint,
    CheckpointError,
    SignedCheckpoint,
    format_time,
    generate_keypair,
    key_id,
    load_private_key,
    load_public_key,
    parse_time,
    sign,
    verify_signature,
    write_keypair,
)
from aitrail.verify.hashes import EMPTY_ROOT, ZERO_HASH

# A fixed key, so the golden text below (signature included) is reproducible.
SEED_KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
SEED_KEY_ID = "56475aa75463474c"  # sha256(raw public key)[:8].hex(), computed independently
TIME_NS = 1795847400_123456789  # 2026-11-28T06:30:00.123456789Z


def make_cp(number: int = 17, size: int = 123456, key: str = SEED_KEY_ID, **kw) -> Checkpoint:
    fields = dict(origin="main", number=number, size=size, root=bytes(range(32)),
                  chain_hash=bytes(range(32, 64)), time_ns=TIME_NS,
                  prev=hashlib.sha256(b"previous").digest() if number > 1 else ZERO_HASH,
                  key_id=key)
    fields.update(kw)
    return Checkpoint(**fields)


@pytest.fixture(scope="module")
def signed() -> SignedCheckpoint:
    return sign(make_cp(), SEED_KEY)


GOLDEN_BODY = (
    "aitrail-checkpoint/v1\n"
    "origin main\n"
    "number 17\n"
    "size 123456\n"
    f"root {base64.b64encode(bytes(range(32))).decode()}\n"
    f"chain {bytes(range(32, 64)).hex()}\n"
    "time 2026-11-28T06:30:00.123456789Z\n"
    f"prev {hashlib.sha256(b'previous').hexdigest()}\n"
    "key 56475aa75463474c\n"
)


# --------------------------------------------------------------------------- text form


def test_body_is_the_documented_text():
    assert make_cp().body() == GOLDEN_BODY.encode()


def test_text_is_body_blank_line_and_signature_line(signed):
    sig = base64.b64encode(SEED_KEY.sign(GOLDEN_BODY.encode())).decode()
    assert signed.text() == GOLDEN_BODY + "\n" + f"\u2014 sig 56475aa75463474c {sig}\n"
    assert len(signed.signature) == 64


def test_round_trip(signed):
    text = signed.text()
    parsed = SignedCheckpoint.parse(text)
    assert parsed == signed
    assert parsed.text() == text
    assert parsed.checkpoint.body() == signed.checkpoint.body()


def test_round_trip_edge_values():
    cp = Checkpoint(origin="a.b_c:d-9", number=1, size=0, root=EMPTY_ROOT, chain_hash=ZERO_HASH,
                    time_ns=0, prev=ZERO_HASH, key_id=SEED_KEY_ID)
    s = sign(cp, SEED_KEY)
    assert SignedCheckpoint.parse(s.text()) == s
    big = make_cp(number=2**64 - 1, size=2**64 - 1, time_ns=253402300800 * 10**9 - 1)
    s = sign(big, SEED_KEY)
    assert "time 9999-12-31T23:59:59.999999999Z\n" in s.text()
    assert SignedCheckpoint.parse(s.text()) == s


def test_digest_is_sha256_of_text(signed):
    assert signed.digest() == hashlib.sha256(signed.text().encode()).digest()
    nxt = make_cp(number=18, prev=signed.digest())
    assert f"prev {signed.digest().hex()}\n" in nxt.body().decode()


@pytest.mark.parametrize("ns, text", [
    (0, "1970-01-01T00:00:00.000000000Z"),
    (1, "1970-01-01T00:00:00.000000001Z"),
    (951782400 * 10**9, "2000-02-29T00:00:00.000000000Z"),
    (TIME_NS, "2026-11-28T06:30:00.123456789Z"),
])
def test_time_format(ns, text):
    assert format_time(ns) == text
    assert parse_time(text) == ns


# --------------------------------------------------------------------------- signatures


def test_verify_with_right_key(signed):
    verify_signature(signed, SEED_KEY.public_key())
    verify_signature(SignedCheckpoint.parse(signed.text()), SEED_KEY.public_key())


def test_verify_with_another_key_names_both_ids(signed):
    other = Ed25519PrivateKey.generate().public_key()
    with pytest.raises(CheckpointError, match=f"signed by key {SEED_KEY_ID}, expected key "
                                              f"{key_id(other)}"):
        verify_signature(signed, other)


def test_forged_key_id_gives_bad_signature(signed):
    # Someone claims another key's id over a signature made with SEED_KEY.
    other = Ed25519PrivateKey.generate()
    forged = SignedCheckpoint(make_cp(key=key_id(other.public_key())), signed.signature)
    with pytest.raises(CheckpointError, match="bad signature"):
        verify_signature(forged, other.public_key())


def test_sign_refuses_a_key_the_checkpoint_does_not_name():
    other = Ed25519PrivateKey.generate()
    with pytest.raises(CheckpointError, match="names key"):
        sign(make_cp(), other)


def test_changed_field_fails_verification(signed):
    changed = SignedCheckpoint(make_cp(size=123457), signed.signature)
    with pytest.raises(CheckpointError, match="bad signature"):
        verify_signature(changed, SEED_KEY.public_key())


def test_every_single_bit_flip_is_caught(signed):
    """No one-bit change anywhere in the text verifies as the same checkpoint."""
    raw = signed.text().encode()
    public = SEED_KEY.public_key()
    accepted = []
    for i in range(len(raw)):
        for bit in range(8):
            flipped = bytearray(raw)
            flipped[i] ^= 1 << bit
            try:
                parsed = SignedCheckpoint.parse(bytes(flipped).decode("utf-8"))
                verify_signature(parsed, public)
            except (CheckpointError, UnicodeDecodeError):
                continue
            if parsed == signed:
                accepted.append((i, bit))
            else:  # verified but as a different checkpoint: still must never happen here
                accepted.append((i, bit, "different"))
    assert accepted == []


# --------------------------------------------------------------------------- strict parse


def _replace_line(text: str, index: int, new: str) -> str:
    lines = text.split("\n")
    lines[index] = new
    return "\n".join(lines)


@pytest.mark.parametrize("mutate, message", [
    (lambda t: t.replace("size 123456\n", ""), "lines"),                       # missing line
    (lambda t: t.replace("size 123456\n", "size 123456\nextra 1\n"), "lines"),  # extra line
    (lambda t: t + "\n", "lines"),                                              # trailing blank
    (lambda t: t[:-1], "newline"),
    (lambda t: t.replace("\n", "\r\n"), "line 1"),
    (lambda t: t.replace("aitrail-checkpoint/v1", "aitrail-checkpoint/v2"), "line 1"),
    (lambda t: t.replace("number 17", "number 017"), "canonical"),               # leading zero
    (lambda t: t.replace("size 123456", "size 0123456"), "canonical"),
    (lambda t: t.replace("number 17", "number +17"), "canonical"),
    (lambda t: t.replace("number 17", "number  17"), "canonical"),
    (lambda t: t.replace("number 17", "number 0"), "number"),
    (lambda t: t.replace("size 123456", "size 18446744073709551616"), "size"),     # 2^64
    (lambda t: t.replace("origin main", "origin ma/in"), "origin"),
    (lambda t: t.replace("origin main", "origin .."), "origin"),
    (lambda t: t.replace("origin main\nnumber", "number"), "lines"),
    (lambda t: _swap(t, "origin main", "number 17"), "line 2"),                  # line order
    (lambda t: t.replace("root AAEC", "root !AEC"), "base64"),                    # bad base64
    (lambda t: t.replace("root AAEC", "root AAE"), "base64"),
    (lambda t: t.replace("=\nchain", "\nchain"), "base64"),                       # no padding
    (lambda t: t.replace("Hh8=\nchain", "Hh9=\nchain"), "canonical base64"),     # pad bits
    (lambda t: t.replace("chain 2021", "chain 2O21"), "hex"),
    (lambda t: t.replace("chain 202122", "chain 20212"), "hex"),
    (lambda t: t.replace("2a2b2c", "2A2B2C"), "hex"),                             # upper case
    (lambda t: t.replace(".123456789Z", ".123456Z"), "time"),
    (lambda t: t.replace(".123456789Z", ".123456789+00:00"), "time"),
    (lambda t: t.replace("2026-11-28", "2026-02-30"), "time"),
    (lambda t: t.replace("T06:30:00", "T24:30:00"), "time"),
    (lambda t: t.replace("2026-11-28", "1969-12-31"), "1970"),
    (lambda t: t.replace("key 56475aa75463474c", "key 56475AA75463474C"), "key id"),
    (lambda t: t.replace("\u2014 sig 56475aa75463474c", "\u2014 sig 0000000000000000"),
     "names key"),
    (lambda t: t.replace("\u2014 sig", "- sig"), "line 11"),
    (lambda t: _replace_line(t, 9, " "), "line 10"),
    (lambda t: t[:-5] + "!" + t[-4:], "signature"),                               # sig base64
    (lambda t: t.replace("==\n", "\n")[:-1] + "AAAA==\n", "signature"),           # 67 bytes
])
def test_strict_parse_rejects(signed, mutate, message):
    text = signed.text()
    bad = mutate(text)
    assert bad != text, "mutation did not apply"
    with pytest.raises(CheckpointError, match=message):
        SignedCheckpoint.parse(bad)


def _swap(text: str, a: str, b: str) -> str:
    return text.replace(a, "\0").replace(b, a).replace("\0", b)


def test_parse_rejects_non_str(signed):
    with pytest.raises(CheckpointError):
        SignedCheckpoint.parse(signed.text().encode())  # type: ignore[arg-type]


@pytest.mark.parametrize("field, value", [
    ("origin", ""), ("origin", "x" * 129), ("origin", "a b"), ("origin", "."),
    ("number", 0), ("number", True), ("size", -1), ("size", 2**64),
    ("root", bytes(31)), ("chain_hash", "00" * 32), ("prev", ZERO_HASH),
    ("time_ns", -1), ("time_ns", 1.5), ("key_id", "XYZ"),
])
def test_checkpoint_validates_fields(field, value):
    with pytest.raises(CheckpointError):
        make_cp(**{field: value})


def test_checkpoint_validates_empty_tree_and_first_prev():
    with pytest.raises(CheckpointError, match="empty-tree"):
        make_cp(size=0, chain_hash=ZERO_HASH)
    with pytest.raises(CheckpointError, match="zero chain"):
        make_cp(size=0, root=EMPTY_ROOT)
    with pytest.raises(CheckpointError, match="prev"):
        make_cp(number=1, prev=bytes([1]) * 32)


# --------------------------------------------------------------------------- keys


def test_key_id_is_stable_and_documented():
    public = SEED_KEY.public_key()
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    assert key_id(public) == hashlib.sha256(raw).digest()[:8].hex() == SEED_KEY_ID
    pem = public.public_bytes(serialization.Encoding.PEM,
                              serialization.PublicFormat.SubjectPublicKeyInfo)
    assert key_id(load_public_key(pem)) == SEED_KEY_ID
    assert key_id(load_public_key(pem)) == key_id(load_public_key(pem))


def test_generate_keypair_pems_match():
    private_pem, public_pem = generate_keypair()
    assert private_pem.startswith(b"-----BEGIN PRIVATE KEY-----")
    assert public_pem.startswith(b"-----BEGIN PUBLIC KEY-----")
    private = load_private_key(private_pem)
    public = load_public_key(public_pem)
    assert key_id(private.public_key()) == key_id(public)
    cp = make_cp(key=key_id(public))
    verify_signature(sign(cp, private), public)
    assert generate_keypair()[1] != public_pem  # fresh randomness each call


def test_write_keypair_modes_and_use(tmp_path):
    old_umask = os.umask(0o077)  # the modes must not depend on the caller's umask
    try:
        kid = write_keypair(tmp_path / "k.pem", tmp_path / "k.pub")
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE((tmp_path / "k.pem").stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "k.pub").stat().st_mode) == 0o644
    private = load_private_key(tmp_path / "k.pem")
    public = load_public_key(str(tmp_path / "k.pub"))
    assert kid == key_id(public) == key_id(private.public_key())
    verify_signature(sign(make_cp(key=kid), private), public)


@pytest.mark.parametrize("existing", ["k.pem", "k.pub"])
def test_write_keypair_refuses_to_overwrite(tmp_path, existing):
    (tmp_path / existing).write_bytes(b"precious")
    with pytest.raises(FileExistsError, match="refusing to overwrite"):
        write_keypair(tmp_path / "k.pem", tmp_path / "k.pub")
    assert (tmp_path / existing).read_bytes() == b"precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == [existing]  # no half pair written


def test_load_key_errors(tmp_path):
    ec_key = ec.generate_private_key(ec.SECP256R1())
    ec_priv = ec_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                   serialization.NoEncryption())
    ec_pub = ec_key.public_key().public_bytes(serialization.Encoding.PEM,
                                              serialization.PublicFormat.SubjectPublicKeyInfo)
    (tmp_path / "ec.pub").write_bytes(ec_pub)
    with pytest.raises(CheckpointError, match="not an Ed25519 public key"):
        load_public_key(tmp_path / "ec.pub")
    with pytest.raises(CheckpointError, match="not an Ed25519 private key"):
        load_private_key(ec_priv)
    private_pem, public_pem = generate_keypair()
    with pytest.raises(CheckpointError, match="not a PEM public key"):
        load_public_key(private_pem)
    with pytest.raises(CheckpointError, match="not an unencrypted PEM private key"):
        load_private_key(public_pem)
    with pytest.raises(CheckpointError, match="not a PEM public key"):
        load_public_key(b"garbage")
    with pytest.raises(CheckpointError, match="cannot read key file"):
        load_public_key(tmp_path / "missing.pub")
    encrypted = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"pw"))
    with pytest.raises(CheckpointError, match="unencrypted"):
        load_private_key(encrypted)
