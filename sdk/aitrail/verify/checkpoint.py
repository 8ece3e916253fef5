"""Signed checkpoints: a chain's Merkle tree size and root, Ed25519-signed by the collector.

A checkpoint commits to everything sealed on one chain up to ``size``: the RFC 6962 root of
the leaf hashes, the linear chain's head hash, the time, and the digest of the previous
checkpoint (so checkpoints form a chain of their own, and a missing one can be named by its
``number``). The exact text form, the signature and the key id are specified in
docs/checkpoints.md; this module is the reference implementation.

It depends on the standard library and ``cryptography`` only, so an auditor holding the
collector's public key can verify with ``pip install aitrail`` and nothing else.
"""

from __future__ import annotations

import base64
import binascii
import errno
import hashlib
import os
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Union

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from aitrail.errors import AitrailError
from aitrail.verify.hashes import EMPTY_ROOT, ZERO_HASH

HEADER = "aitrail-checkpoint/v1"
SIG_PREFIX = "\u2014 sig "  # EM DASH, SPACE: as in C2SP signed notes, it cannot start a body line
MAX_U64 = 2**64 - 1  # sizes and numbers are UInt64 in the store
# Times are 1970-01-01 .. 9999-12-31: the text form has a four-digit year and no sign.
MAX_TIME_NS = 253402300800 * 10**9 - 1

_ORIGIN_RE = re.compile(r"[A-Za-z0-9_.:-]{1,128}")
_KEY_ID_RE = re.compile(r"[0-9a-f]{16}")
_UINT_RE = re.compile(r"0|[1-9][0-9]{0,19}")  # canonical: no sign, no leading zeros
_HEX32_RE = re.compile(r"[0-9a-f]{64}")
_TIME_RE = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})"
                      r"\.([0-9]{9})Z")
_EPOCH = datetime(1970, 1, 1)
_FIELDS = ("origin", "number", "size", "root", "chain", "time", "prev", "key")

PathOrPem = Union[str, "os.PathLike[str]", bytes]


class CheckpointError(AitrailError, ValueError):
    """A checkpoint is malformed, does not parse, or does not verify. The message says why."""


# --------------------------------------------------------------------------- checkpoint


@dataclass(frozen=True)
class Checkpoint:
    """The signed statement about one chain at one tree size. Validated on construction."""

    origin: str       # chain id
    number: int       # 1, 2, 3, ... per chain
    size: int         # Merkle tree size = records sealed
    root: bytes       # RFC 6962 root over the first ``size`` leaf hashes
    chain_hash: bytes  # linear chain head at ``size`` (32 zero bytes when size is 0)
    time_ns: int      # UTC, nanoseconds since the epoch
    prev: bytes       # SHA-256 of the previous checkpoint's full signed text; zeros for number 1
    key_id: str       # key_id() of the signing key

    def __post_init__(self) -> None:
        check_origin(self.origin)
        _check_uint("number", self.number, minimum=1)
        _check_uint("size", self.size, minimum=0)
        for name in ("root", "chain_hash", "prev"):
            value = getattr(self, name)
            if not isinstance(value, bytes) or len(value) != 32:
                raise CheckpointError(f"{name} must be 32 bytes")
        if self.size == 0 and self.root != EMPTY_ROOT:
            raise CheckpointError("size 0 needs the empty-tree root SHA-256('')")
        if self.size == 0 and self.chain_hash != ZERO_HASH:
            raise CheckpointError("size 0 needs a zero chain hash")
        # Checkpoint 1 has no predecessor; every later one must name its predecessor.
        if (self.number == 1) != (self.prev == ZERO_HASH):
            raise CheckpointError("prev must be 32 zero bytes for number 1 and only for number 1")
        if type(self.time_ns) is not int or not 0 <= self.time_ns <= MAX_TIME_NS:
            raise CheckpointError("time_ns must be an int between 1970 and 9999")
        if not isinstance(self.key_id, str) or not _KEY_ID_RE.fullmatch(self.key_id):
            raise CheckpointError(f"key id {self.key_id!r} is not 16 lowercase hex digits")

    def body(self) -> bytes:
        """The exact bytes that are signed (docs/checkpoints.md, "Text form")."""
        lines = [
            HEADER,
            f"origin {self.origin}",
            f"number {self.number}",
            f"size {self.size}",
            f"root {base64.b64encode(self.root).decode()}",
            f"chain {self.chain_hash.hex()}",
            f"time {format_time(self.time_ns)}",
            f"prev {self.prev.hex()}",
            f"key {self.key_id}",
        ]
        return "".join(line + "\n" for line in lines).encode("utf-8")


@dataclass(frozen=True)
class SignedCheckpoint:
    checkpoint: Checkpoint
    signature: bytes  # Ed25519 over checkpoint.body(), 64 bytes

    def text(self) -> str:
        """Body, a blank line, then ``— sig <key id> <base64 signature>``."""
        sig = base64.b64encode(self.signature).decode()
        return (self.checkpoint.body().decode("utf-8") + "\n"
                + f"{SIG_PREFIX}{self.checkpoint.key_id} {sig}\n")

    def digest(self) -> bytes:
        """SHA-256 of text(): what the next checkpoint's ``prev`` holds."""
        return hashlib.sha256(self.text().encode("utf-8")).digest()

    @classmethod
    def parse(cls, text: str) -> "SignedCheckpoint":
        """Strict parse: any deviation from the canonical text raises CheckpointError.

        Strictness is what makes ``parse(t).text() == t``: two different texts never parse to
        the same checkpoint, so a digest always names exactly one checkpoint.
        """
        if not isinstance(text, str):
            raise CheckpointError("checkpoint text must be str")
        if not text.endswith("\n"):
            raise CheckpointError("checkpoint text must end with a newline")
        lines = text[:-1].split("\n")
        if len(lines) != 11:
            raise CheckpointError(f"checkpoint text has {len(lines)} lines, expected 11")
        if lines[0] != HEADER:
            raise CheckpointError(f"line 1 must be {HEADER!r}")
        values = [_field(lines[i + 1], name, i + 2) for i, name in enumerate(_FIELDS)]
        if lines[9] != "":
            raise CheckpointError("line 10 must be empty (between body and signature)")
        cp = Checkpoint(
            origin=check_origin(values[0]),
            number=_parse_uint("number", values[1]),
            size=_parse_uint("size", values[2]),
            root=_parse_b64("root", values[3], 32),
            chain_hash=_parse_hex32("chain", values[4]),
            time_ns=parse_time(values[5]),
            prev=_parse_hex32("prev", values[6]),
            key_id=values[7],
        )
        signature = _parse_sig_line(lines[10], cp.key_id)
        return cls(cp, signature)


def check_origin(origin: str) -> str:
    """A chain id usable as a checkpoint origin, a directory name and an S3 key segment."""
    # "." and ".." match the character class but would walk the anchor directory tree.
    if not isinstance(origin, str) or not _ORIGIN_RE.fullmatch(origin) or origin in (".", ".."):
        raise CheckpointError(f"origin {origin!r} must match [A-Za-z0-9_.:-]{{1,128}}"
                              " and not be '.' or '..'")
    return origin


def _check_uint(name: str, value: int, minimum: int) -> None:
    if type(value) is not int or not minimum <= value <= MAX_U64:
        raise CheckpointError(f"{name} must be an int in [{minimum}, 2^64-1]")


def _field(line: str, name: str, lineno: int) -> str:
    prefix = name + " "
    if not line.startswith(prefix):
        raise CheckpointError(f"line {lineno} must be '{name} <value>', got {line[:40]!r}")
    return line[len(prefix):]


def _parse_uint(name: str, value: str) -> int:
    if not _UINT_RE.fullmatch(value):
        raise CheckpointError(f"{name} {value[:40]!r} is not a canonical decimal number")
    return int(value)


def _parse_hex32(name: str, value: str) -> bytes:
    if not _HEX32_RE.fullmatch(value):
        raise CheckpointError(f"{name} must be 64 lowercase hex digits")
    return bytes.fromhex(value)


def _parse_b64(name: str, value: str, length: int) -> bytes:
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise CheckpointError(f"{name} is not valid base64") from None
    # Re-encoding catches non-canonical forms (stray padding bits) that decode all the same.
    if len(raw) != length or base64.b64encode(raw).decode() != value:
        raise CheckpointError(f"{name} must be the canonical base64 of {length} bytes")
    return raw


def _parse_sig_line(line: str, key_id: str) -> bytes:
    if not line.startswith(SIG_PREFIX):
        raise CheckpointError(f"line 11 must start with {SIG_PREFIX!r}")
    parts = line[len(SIG_PREFIX):].split(" ")
    if len(parts) != 2:
        raise CheckpointError("signature line must be '\u2014 sig <key id> <base64 signature>'")
    if parts[0] != key_id:
        raise CheckpointError(f"signature line names key {parts[0][:40]!r}, body names {key_id}")
    return _parse_b64("signature", parts[1], 64)


# --------------------------------------------------------------------------- time


def format_time(time_ns: int) -> str:
    """RFC 3339 UTC with exactly nine fractional digits: one canonical form per instant."""
    secs, frac = divmod(time_ns, 10**9)
    # Naive arithmetic from the epoch, not fromtimestamp(): no local time zone, no float.
    dt = _EPOCH + timedelta(seconds=secs)
    return f"{dt:%Y-%m-%dT%H:%M:%S}.{frac:09d}Z"


def parse_time(value: str) -> int:
    m = _TIME_RE.fullmatch(value)
    if not m:
        raise CheckpointError(f"time {value[:40]!r} is not YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ")
    year, month, day, hour, minute, second = (int(g) for g in m.groups()[:6])
    try:
        dt = datetime(year, month, day, hour, minute, second)  # rejects Feb 30, 24:00, :60
    except ValueError as e:
        raise CheckpointError(f"time {value!r}: {e}") from None
    ns = (dt - _EPOCH) // timedelta(seconds=1) * 10**9 + int(m.group(7))
    if not 0 <= ns <= MAX_TIME_NS:
        raise CheckpointError(f"time {value!r} is before 1970")
    return ns


# --------------------------------------------------------------------------- signing


def sign(cp: Checkpoint, private_key: Ed25519PrivateKey) -> SignedCheckpoint:
    """Sign cp.body(). The checkpoint must already name this key's id."""
    actual = key_id(private_key.public_key())
    if cp.key_id != actual:
        raise CheckpointError(f"checkpoint names key {cp.key_id}, signing key is {actual}")
    return SignedCheckpoint(cp, private_key.sign(cp.body()))


def verify_signature(signed: SignedCheckpoint, public_key: Ed25519PublicKey) -> None:
    """Raise CheckpointError unless ``signed`` carries a valid signature by ``public_key``."""
    expected = key_id(public_key)
    if signed.checkpoint.key_id != expected:
        raise CheckpointError(f"signed by key {signed.checkpoint.key_id}, expected key {expected}")
    try:
        public_key.verify(signed.signature, signed.checkpoint.body())
    except InvalidSignature:
        raise CheckpointError(
            f"bad signature on checkpoint {signed.checkpoint.origin}#{signed.checkpoint.number}"
        ) from None


# --------------------------------------------------------------------------- keys


def key_id(public_key: Ed25519PublicKey) -> str:
    """First 8 bytes of SHA-256 of the raw 32-byte public key, as 16 lowercase hex digits."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).digest()[:8].hex()


def generate_keypair() -> tuple[bytes, bytes]:
    """(private PEM, PKCS#8 unencrypted; public PEM, SubjectPublicKeyInfo)."""
    private_key = Ed25519PrivateKey.generate()
    private_pem = private_key.private_bytes(serialization.Encoding.PEM,
                                            serialization.PrivateFormat.PKCS8,
                                            serialization.NoEncryption())
    public_pem = private_key.public_key().public_bytes(serialization.Encoding.PEM,
                                                       serialization.PublicFormat.SubjectPublicKeyInfo)
    return private_pem, public_pem


def _read_pem(source: PathOrPem) -> tuple[bytes, str]:
    """bytes are PEM content; str / PathLike are a file to read."""
    if isinstance(source, bytes):
        return source, "key data"
    try:
        return Path(source).read_bytes(), f"file {os.fspath(source)}"
    except OSError as e:
        raise CheckpointError(f"cannot read key file {os.fspath(source)}: {e.strerror}") from None


def load_private_key(source: PathOrPem) -> Ed25519PrivateKey:
    data, what = _read_pem(source)
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        # TypeError: the key is encrypted; ValueError: not PEM or not a private key.
        raise CheckpointError(f"{what} is not an unencrypted PEM private key") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise CheckpointError(f"{what} is not an Ed25519 private key")
    return key


def load_public_key(source: PathOrPem) -> Ed25519PublicKey:
    data, what = _read_pem(source)
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, UnsupportedAlgorithm):
        raise CheckpointError(f"{what} is not a PEM public key") from None
    if not isinstance(key, Ed25519PublicKey):
        raise CheckpointError(f"{what} is not an Ed25519 public key")
    return key


def write_keypair(private_path: Union[str, "os.PathLike[str]"],
                  public_path: Union[str, "os.PathLike[str]"]) -> str:
    """Write a new key pair (private key mode 0600, public 0644); return its key id.

    Raises FileExistsError (an OSError) if either file exists, writing nothing.

    Refuses to overwrite either file: losing a signing key would orphan every checkpoint it
    signed, so an existing key is never replaced silently.
    """
    for path in (private_path, public_path):
        if os.path.lexists(path):
            raise FileExistsError(errno.EEXIST, "refusing to overwrite a key file", os.fspath(path))
    private_pem, public_pem = generate_keypair()
    _write_new(private_path, private_pem, 0o600)
    try:
        _write_new(public_path, public_pem, 0o644)
    except BaseException:
        os.unlink(private_path)  # no half pair left behind
        raise
    return key_id(load_public_key(public_pem))


def _write_new(path: Union[str, "os.PathLike[str]"], data: bytes, mode: int) -> None:
    # O_EXCL: a file that appeared since the check above is still never overwritten.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        os.fchmod(fd, mode)  # the umask must not widen or narrow what we chose
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)
