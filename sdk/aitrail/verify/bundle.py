"""Proof bundles: one record, proven to be in a signed checkpoint, checkable offline.

A bundle is a JSON document in one canonical form (sorted keys, two-space indent,
UTF-8, a final newline; hashes as lowercase hex). ``verify_bundle`` insists on that
form byte for byte, so any change to the file -- even one that JSON would read as
the same value -- fails it. What it proves, with nothing but the collector's
public key:

1. the envelope's canonical encoding (docs/canonical-envelope.md) gives ``leaf_hash``;
2. the inclusion proof places that leaf at ``leaf_index`` in a tree of ``tree_size``
   whose root is the checkpoint's;
3. the checkpoint is signed by the key, for the envelope's chain.
"""

from __future__ import annotations

import json
from typing import Any, Mapping, Sequence

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from aitrail.errors import AitrailError
from aitrail.verify import merkle
from aitrail.verify.checkpoint import CheckpointError, SignedCheckpoint, verify_signature
from aitrail.verify.envelope import (
    CURRENT_VERSION,
    VERSION_FIELDS,
    EncodingError,
    canonical_bytes,
    canonical_envelope,
    version_of,
)
from aitrail.verify.hashes import leaf_hash

# The bundle format names the envelope's encoding: v1 bundles carry v1 envelopes
# (and stay valid); v2 and v3 bundles carry envelopes of their version, with
# "envelope_version": 2 or 3.
FORMATS = {"aitrail-proof-bundle/v1": 1, "aitrail-proof-bundle/v2": 2,
           "aitrail-proof-bundle/v3": 3}
FORMAT_OF = {version: name for name, version in FORMATS.items()}
FORMAT = FORMAT_OF[CURRENT_VERSION]
KEYS = frozenset({"format", "chain_id", "record_id", "seq", "leaf_index", "leaf_hash",
                  "tree_size", "inclusion_proof", "envelope", "checkpoint"})
# JSON types per envelope field kind: exact, so `true` cannot stand in for 1.
_TYPES = {
    "str": lambda v: type(v) is str, "lstr": lambda v: type(v) is str,
    "u64": lambda v: type(v) is int, "time": lambda v: type(v) is int,
    "f64?": lambda v: v is None or type(v) is float,
    "map": lambda v: type(v) is dict and all(type(x) is str for kv in v.items() for x in kv),
}


class BundleError(AitrailError, ValueError):
    """The bundle is malformed or does not prove what it claims; the message says which."""


def dumps(bundle: Mapping[str, Any]) -> str:
    """The one canonical text of a bundle."""
    return json.dumps(bundle, sort_keys=True, indent=2, ensure_ascii=False) + "\n"


def make_bundle(envelope: Mapping[str, Any], seq: int, leaf_hash: bytes,
                proof: Sequence[bytes], signed: SignedCheckpoint) -> str:
    """The bundle of one record: ``envelope`` is the stored row's (any version), its
    maps as dicts or as their stored entries. Raises BundleError when a stored map holds
    a key twice: a bundle's map (a JSON object) holds one entry per key, so it would
    show the row as it was sealed, and verify."""
    try:
        sealed = canonical_envelope(envelope)
    except EncodingError as exc:
        raise BundleError(f"record {envelope.get('record_id', '')}: no proof bundle, the "
                          f"stored row was changed after sealing ({exc})") from None
    cp = signed.checkpoint
    return dumps({
        "format": FORMAT_OF[version_of(envelope)], "chain_id": envelope["chain_id"],
        "record_id": envelope["record_id"],
        "seq": seq, "leaf_index": seq - 1, "leaf_hash": leaf_hash.hex(),
        "tree_size": cp.size, "inclusion_proof": [h.hex() for h in proof],
        "envelope": sealed,
        "checkpoint": signed.text(),
    })


def _hex32(value: Any, what: str) -> bytes:
    if not isinstance(value, str) or len(value) != 64 or value != value.lower():
        raise BundleError(f"{what}: expected 64 lowercase hex digits")
    try:
        return bytes.fromhex(value)
    except ValueError:
        raise BundleError(f"{what}: expected 64 lowercase hex digits") from None


def _parse(text: str) -> dict[str, Any]:
    try:
        bundle = json.loads(text)
    except ValueError as exc:
        raise BundleError(f"not JSON: {exc}") from None
    if not isinstance(bundle, dict) or set(bundle) != KEYS:
        raise BundleError(f"expected exactly the keys {', '.join(sorted(KEYS))}")
    if bundle["format"] not in FORMATS:
        raise BundleError(f"format {bundle['format']!r}: expected one of "
                          f"{', '.join(repr(f) for f in FORMATS)}")
    if dumps(bundle) != text:
        raise BundleError("not in canonical form (sorted keys, 2-space indent, final newline): "
                          "the file was edited")
    return bundle


def _envelope(bundle: Mapping[str, Any]) -> dict[str, Any]:
    env = bundle["envelope"]
    version = FORMATS[bundle["format"]]
    fields = VERSION_FIELDS[version]
    names = [f.name for f in fields] + (["envelope_version"] if version != 1 else [])
    if not isinstance(env, dict) or sorted(env) != sorted(names):
        raise BundleError(f"envelope: expected exactly the canonical envelope fields of "
                          f"version {version}")
    if version != 1 and (type(env["envelope_version"]) is not int
                         or env["envelope_version"] != version):
        raise BundleError(f"envelope.envelope_version: expected {version} (the format's)")
    for f in fields:
        if not _TYPES[f.kind](env[f.name]):
            raise BundleError(f"envelope.{f.name}: wrong type for a {f.kind} field")
    if env["chain_id"] != bundle["chain_id"] or env["record_id"] != bundle["record_id"]:
        raise BundleError("envelope: chain_id / record_id differ from the bundle's")
    return env


def verify_bundle(text: str, public_key: Ed25519PublicKey) -> dict[str, Any]:
    """Check a bundle; returns it parsed. Raises BundleError (a ValueError) on any failure."""
    bundle = _parse(text)
    env = _envelope(bundle)
    for key in ("seq", "leaf_index", "tree_size"):
        if type(bundle[key]) is not int or bundle[key] < 0:
            raise BundleError(f"{key}: expected a whole number")
    if bundle["leaf_index"] != bundle["seq"] - 1:
        raise BundleError("leaf_index must be seq - 1")
    leaf = _hex32(bundle["leaf_hash"], "leaf_hash")
    try:
        computed = leaf_hash(canonical_bytes(env))
    except EncodingError as exc:
        raise BundleError(f"envelope: cannot be encoded ({exc})") from None
    if computed != leaf:
        raise BundleError("the envelope does not give leaf_hash: the record was changed")
    proof = bundle["inclusion_proof"]
    if not isinstance(proof, list):
        raise BundleError("inclusion_proof: expected a list of hashes")
    path = [_hex32(h, f"inclusion_proof[{i}]") for i, h in enumerate(proof)]
    try:
        signed = SignedCheckpoint.parse(bundle["checkpoint"])
        verify_signature(signed, public_key)
    except (CheckpointError, TypeError) as exc:
        raise BundleError(f"checkpoint: {exc}") from None
    cp = signed.checkpoint
    if cp.origin != env["chain_id"] or cp.size != bundle["tree_size"]:
        raise BundleError("checkpoint: chain or tree size differ from the bundle's")
    try:
        merkle.verify_inclusion(leaf, bundle["leaf_index"], cp.size, path, cp.root)
    except merkle.ProofError as exc:
        raise BundleError(f"inclusion proof: {exc}") from None
    return bundle


# ------------------------------------------------------------------ proof archives
# A proof archive holds the bundles of several records in one file (the console's
# "download the task's proofs"): a ZIP file whose members named ``*.json`` are each a
# bundle in the canonical form above, checked one by one; other members (a README,
# the public key ``public-key.pem``) are not read by the verifier, which takes the key
# it trusts from its caller, never from the archive.

ARCHIVE_KEY_NAME = "public-key.pem"
MAX_ARCHIVE_MEMBER = 16 * 2**20  # bytes: a bundle is a few KB; this bounds a hostile file
MAX_ARCHIVE_BUNDLES = 100_000


def is_archive(data: bytes) -> bool:
    return data[:4] == b"PK\x03\x04"


def archive_bundles(data: bytes) -> list[tuple[str, str]]:
    """(member name, bundle text) of every ``*.json`` member of a proof archive, by
    name. Raises BundleError when the file is not a ZIP, holds no bundle, or a member
    is too large or not UTF-8."""
    import io
    import zipfile
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile as exc:
        raise BundleError(f"not a proof archive (ZIP): {exc}") from None
    members = sorted((i for i in archive.infolist()
                      if i.filename.endswith(".json") and not i.is_dir()),
                     key=lambda i: i.filename)
    if not members:
        raise BundleError("the archive holds no proof bundle (*.json)")
    if len(members) > MAX_ARCHIVE_BUNDLES:
        raise BundleError(f"the archive holds more than {MAX_ARCHIVE_BUNDLES} bundles")
    out = []
    for info in members:
        if info.file_size > MAX_ARCHIVE_MEMBER:
            raise BundleError(f"{info.filename}: larger than {MAX_ARCHIVE_MEMBER} bytes")
        try:
            with archive.open(info) as fh:
                raw = fh.read(MAX_ARCHIVE_MEMBER + 1)
            text = raw.decode("utf-8")
        except (zipfile.BadZipFile, UnicodeDecodeError, OSError, RuntimeError) as exc:
            raise BundleError(f"{info.filename}: cannot be read ({exc})") from None
        if len(raw) > MAX_ARCHIVE_MEMBER:
            raise BundleError(f"{info.filename}: larger than {MAX_ARCHIVE_MEMBER} bytes")
        out.append((info.filename, text))
    return out


def make_archive(bundles: Sequence[tuple[str, str]], public_key_pem: bytes,
                 readme: str) -> bytes:
    """A proof archive of ``(member name, bundle text)`` pairs, with the public key and
    a README for the person who receives it."""
    import io
    import zipfile
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("README.txt", readme)
        archive.writestr(ARCHIVE_KEY_NAME, public_key_pem)
        for name, text in bundles:
            archive.writestr(name, text)
    return buf.getvalue()
