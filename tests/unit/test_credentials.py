"""The one plumbing for secret tokens (collector/aitrail_collector/credentials.py):
concurrent writers in several processes lose nothing, files are 0600, and only
hashes are stored."""

from __future__ import annotations

import json
import multiprocessing
import os
import stat

from aitrail_collector import credentials
from aitrail_collector.ingest import apikeys


def _create_keys(path: str, service: str, n: int) -> list[str]:
    return [apikeys.create_key(path, service) for _ in range(n)]


def test_concurrent_apikey_creates_in_several_processes_lose_no_key(tmp_path):
    path = str(tmp_path / "keys.json")
    ctx = multiprocessing.get_context("spawn")  # fresh interpreters, like separate CLI runs
    with ctx.Pool(6) as pool:
        made = pool.starmap(_create_keys, [(path, f"svc-{i}", 8) for i in range(6)])
    tokens = [t for batch in made for t in batch]
    keys = apikeys.load_keys(path)
    assert len(tokens) == 48 and len(keys) == 48
    assert sorted(k.key_id for k in keys.values()) == sorted(
        t[len(apikeys.PREFIX):].split("_", 1)[0] for t in tokens)
    ring = apikeys.KeyRing(path)
    for i, batch in enumerate(made):
        for token in batch:
            assert ring.service_for([("authorization", f"Bearer {token}")]) == f"svc-{i}"
    assert not [n for n in os.listdir(tmp_path) if n.endswith(".tmp")]


def test_keys_file_is_0600_and_holds_no_secret(tmp_path):
    path = str(tmp_path / "keys.json")
    token = apikeys.create_key(path, "svc")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    text = open(path).read()
    assert token.rsplit("_", 1)[1] not in text
    assert json.loads(text)["keys"][0]["service"] == "svc"


def test_write_secret_never_exposes_the_content_to_others(tmp_path, monkeypatch):
    """The temporary file is 0600 before the first byte is written, whatever the umask."""
    seen = []
    real_fdopen = os.fdopen

    def spy(fd, *args, **kwargs):
        seen.append(stat.S_IMODE(os.fstat(fd).st_mode))
        return real_fdopen(fd, *args, **kwargs)
    monkeypatch.setattr(credentials.os, "fdopen", spy)
    old = os.umask(0)
    try:
        credentials.write_secret(str(tmp_path / "token"), "aitl_secret\n")
    finally:
        os.umask(old)
    assert seen == [0o600]
    assert stat.S_IMODE(os.stat(tmp_path / "token").st_mode) == 0o600


def test_tokens_are_hashed_and_checked_in_constant_form():
    token_id, token = credentials.new_token("aitk_")
    assert token.startswith(f"aitk_{token_id}_") and len(token_id) == 12
    assert credentials.split_token("aitk_", token) == (token_id, token)
    assert credentials.split_token("aitk_", "aitk_nounderscore") is None
    assert credentials.matches(credentials.digest(token), token)
    assert not credentials.matches(credentials.digest(token), token + "x")
