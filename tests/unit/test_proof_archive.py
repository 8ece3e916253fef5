"""Proof archives (aitrail.verify.bundle.make_archive / archive_bundles): several
bundles in one ZIP, each checked as a bundle on its own by `aitrail verify-proof`,
with the key given to the verifier, never the one in the archive."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import pytest

from aitrail.verify.bundle import (
    BundleError,
    archive_bundles,
    is_archive,
    make_archive,
    verify_bundle,
)
from aitrail.verify.checkpoint import load_public_key

VECTORS = json.loads((Path(__file__).parent.parent / "testdata" / "bundles.json").read_text())
KEY = VECTORS["key"]["public_key_pem"].encode()


def test_an_archive_round_trips_its_bundles():
    texts = [(f"bundles/{c['name']}.json", c["text"]) for c in VECTORS["valid"][:3]]
    data = make_archive(texts, KEY, "how to verify\n")
    assert is_archive(data) and not is_archive(texts[0][1].encode())
    found = archive_bundles(data)
    assert found == sorted(texts)
    key = load_public_key(KEY)
    assert all(verify_bundle(text, key) for _, text in found)
    names = zipfile.ZipFile(io.BytesIO(data)).namelist()
    assert "public-key.pem" in names and "README.txt" in names


def test_an_archive_without_bundles_or_not_a_zip_is_refused():
    with pytest.raises(BundleError, match="no proof bundle"):
        archive_bundles(make_archive([], KEY, "empty\n"))
    with pytest.raises(BundleError, match="not a proof archive"):
        archive_bundles(b"PK\x03\x04 truncated")


def test_a_member_that_is_not_utf8_is_refused():
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("bundles/a.json", b"\xff\xfe")
    with pytest.raises(BundleError, match="bundles/a.json: cannot be read"):
        archive_bundles(buf.getvalue())
