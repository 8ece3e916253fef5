"""Red-team findings 1, 2, 3, 9 and 12: the trust root, pinned checkpoints, the crash
window, the store's file modes and on-demand checkpoints (real collectors, real engine)."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from support import PY, CollectorProc, cli, engine, make_record, stub

from aitrail.v1 import audit_pb2 as pb
from aitrail.verify.bundle import verify_bundle
from aitrail.verify.checkpoint import load_public_key, write_keypair

E, C = "aitrail.envelopes", "aitrail.checkpoints"
NOT_INDEPENDENT = "cannot detect a rewrite by someone who can write the data directory"


def _emit(col: CollectorProc, n: int, tag: str = "a") -> list[str]:
    recs = [make_record(task_id=f"T-{tag}-{i}", **{"resolution.final_decision": f"{tag}{i}"})
            for i in range(n)]
    resp = stub(col.grpc).Export(pb.ExportRequest(records=recs), timeout=60)
    assert resp.accepted == n, resp
    return [r.record_id for r in recs]


def _verify(*args: str) -> tuple[int, dict, str]:
    out = cli("verify", "--format", "json", *args)
    assert out.returncode in (0, 1), out.stderr
    text = cli("verify", *args)
    return out.returncode, json.loads(out.stdout), text.stdout


def _poll(done, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while True:
        value = done()
        if value or time.monotonic() > deadline:
            assert value
            return value
        time.sleep(0.2)


# ---------------------------------------------------------------- 1: the trust root

def test_a_default_setup_is_reported_as_unable_to_detect_a_rewrite(tmp_path):
    col = CollectorProc(tmp_path / "store").start()
    try:
        _emit(col, 5)
        page = urllib.request.urlopen(col.url + "/console/status", timeout=30).read().decode()
    finally:
        col.stop()
    log = col.log.read_text()
    assert "trust root: the anchor" in log and "inside the data directory" in log
    assert "inside the data directory" in page and "Trust root" in page
    code, report, text = _verify("--data-dir", str(col.data_dir))
    assert code == 0, report
    root = report["trust_root"]
    assert root["independent"] is False
    assert root["public_key"]["source"] == "data directory default"
    assert root["public_key"]["inside_data_dir"] and root["anchor"]["inside_data_dir"]
    assert f"OK, but this {NOT_INDEPENDENT}" in text
    assert "trust root:" in text and "signing-key.pub" in text


def test_a_trust_root_outside_the_data_directory_is_named_and_not_qualified(tmp_path):
    keys, anchor = tmp_path / "keys", tmp_path / "anchor-elsewhere"
    keys.mkdir()
    write_keypair(str(keys / "k.pem"), str(keys / "k.pub"))
    col = CollectorProc(tmp_path / "store", "--signing-key", str(keys / "k.pem"),
                        "--anchor", str(anchor), "--production").start()
    try:
        _emit(col, 5)
    finally:
        col.stop()
    assert "trust root:" not in col.log.read_text()
    code, report, text = _verify("--data-dir", str(col.data_dir), "--public-key",
                                 str(keys / "k.pub"), "--anchor", str(anchor))
    assert code == 0, report
    root = report["trust_root"]
    assert root["independent"] is True and root["warnings"] == []
    assert root["public_key"]["source"] == "--public-key"
    assert root["anchor"]["source"] == "--anchor"
    assert NOT_INDEPENDENT not in text and text.splitlines()[-1].startswith("OK") or "OK:" in text


def test_production_refuses_a_trust_root_in_the_data_directory(tmp_path):
    store = tmp_path / "store"
    store.mkdir()
    write_keypair(str(store / "k.pem"), str(store / "k.pub"))
    base = [PY, "-m", "aitrail.cli", "collector", "--data-dir", str(store),
            "--grpc-listen", "127.0.0.1:0", "--http-listen", "", "--production"]
    for extra, says in [([], "--production needs --signing-key"),
                        (["--signing-key", str(store / "k.pem"), "--anchor", "s3://b/p"],
                         "inside the data directory"),
                        (["--signing-key", str(store / "k.pem")], "--production needs --anchor")]:
        out = subprocess.run(base + extra, capture_output=True, text=True, timeout=60)
        assert out.returncode == 2 and says in out.stderr, (extra, out.stderr)


# ---------------------------------------------------------------- 2: a pinned checkpoint

def test_a_pinned_checkpoint_names_a_truncation_the_store_no_longer_shows(tmp_path):
    """No key given: delete the newest records with the checkpoints that cover them, in
    the store and the anchor. Plain verify cannot see it; the kept checkpoint does."""
    col = CollectorProc(tmp_path / "store", "--checkpoint-latency", "0.3").start()
    try:
        _emit(col, 10, tag="a")
        first = _poll(lambda: [c for c in col.get("/api/v1/checkpoints")["checkpoints"]
                               if c["size"] == 10])
        _emit(col, 5, tag="b")
        kept = _poll(lambda: [c for c in col.get("/api/v1/checkpoints")["checkpoints"]
                              if c["size"] == 15])[0]
    finally:
        col.stop()
    pinned = tmp_path / "kept.checkpoint"
    pinned.write_text(kept["text"])
    last_good = first[0]["number"]
    engine(col.data_dir, f"ALTER TABLE {E} DELETE WHERE seq > 10 SETTINGS mutations_sync = 1",
           f"ALTER TABLE {C} DELETE WHERE number > {last_good} SETTINGS mutations_sync = 1")
    for path in (col.data_dir / "anchor" / "main").iterdir():
        numbers = [int(p) for p in path.name.split(".")[0].split("-")]
        if max(numbers) > last_good:
            path.unlink()
    os.remove(col.data_dir / "signing-key.pub")
    code, report, _ = _verify("--data-dir", str(col.data_dir))
    assert code == 0 and report["trust_root"]["independent"] is False
    assert any("no public key" in w for w in report["warnings"])
    code, report, text = _verify("--data-dir", str(col.data_dir), "--since-checkpoint",
                                 str(pinned))
    assert code == 1
    truncated = [f for f in report["findings"] if f["kind"] == "truncated"]
    assert truncated and "11..15" in truncated[0]["detail"], report["findings"]
    assert report["trust_root"]["pinned"]["size"] == 15
    # Through a running collector too (the CLI fetches checkpoints and a proof).
    col = CollectorProc(col.data_dir, "--checkpoint-latency", "0.3").start()
    try:
        out = cli("verify", "--url", col.url, "--format", "json", "--since-checkpoint",
                  str(pinned))
    finally:
        col.stop()
    assert out.returncode == 1, out.stderr
    kinds = {f["kind"] for f in json.loads(out.stdout)["findings"]}
    assert "truncated" in kinds


# ---------------------------------------------------------------- 3: the crash window

def test_records_deleted_after_a_kill_are_caught_by_the_anchor(tmp_path):
    """Default latency (5 s). 6 s after the batch was acknowledged the collector is
    killed; the records and their database checkpoints are deleted. The anchor already
    holds the checkpoint covering them: the collector refuses to start on that store,
    and verify names the deletion from the anchor's copy."""
    col = CollectorProc(tmp_path / "store").start()
    _emit(col, 4, tag="old")
    col.stop()
    col = CollectorProc(tmp_path / "store").start()
    before = max(c["number"] for c in col.get("/api/v1/checkpoints")["checkpoints"])
    _emit(col, 6, tag="new")
    acked = time.monotonic()
    while time.monotonic() - acked < 6.0:
        time.sleep(0.1)
    col.kill()
    engine(col.data_dir, f"ALTER TABLE {E} DELETE WHERE seq > 4 SETTINGS mutations_sync = 1",
           f"ALTER TABLE {C} DELETE WHERE number > {before} SETTINGS mutations_sync = 1")
    out = subprocess.run([PY, "-m", "aitrail.cli", "collector", "--data-dir", str(col.data_dir),
                          "--grpc-listen", "127.0.0.1:0", "--http-listen", ""],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2, out.stderr
    assert "the anchor" in out.stderr and "were deleted from the database" in out.stderr
    code, report, _ = _verify("--data-dir", str(col.data_dir))
    assert code == 1
    assert any(f["kind"] == "missing" and "5..10 were deleted" in f["detail"]
               for f in report["findings"]), report["findings"]


# ---------------------------------------------------------------- 9: file modes

def _loose(root: Path) -> dict[str, str]:
    out = {}
    for top, dirs, files in os.walk(root):
        for name in dirs + files + ([] if top != str(root) else ["."]):
            path = os.path.join(top, name)
            mode = os.lstat(path).st_mode
            if not stat.S_ISLNK(mode) and stat.S_IMODE(mode) & 0o077:
                out[os.path.relpath(path, root)] = oct(stat.S_IMODE(mode))
    return out


def test_the_store_is_private_to_its_user_and_verify_warns_otherwise(tmp_path):
    col = CollectorProc(tmp_path / "store").start()
    try:
        _emit(col, 20)
        assert _loose(col.data_dir) == {}  # the engine's files too, while it runs
    finally:
        col.stop()
    files = [p for p in col.data_dir.rglob("*") if p.is_file()]
    assert len(files) > 20 and _loose(col.data_dir) == {}
    assert stat.S_IMODE(col.data_dir.stat().st_mode) == 0o700
    # A verify that opens the store itself has nothing to say about it: the engine's
    # own files of that session (its status file) are private too.
    code, report, _ = _verify("--data-dir", str(col.data_dir))
    assert code == 0
    assert not [w for w in report["warnings"] if "open to group or others" in w], report
    assert _loose(col.data_dir) == {}
    files[0].chmod(0o644)
    col.data_dir.chmod(0o755)
    code, report, _ = _verify("--data-dir", str(col.data_dir))
    assert code == 0
    assert any("open to group or others" in w for w in report["warnings"]), report["warnings"]
    col.start()  # the collector takes the access off again at start
    col.stop()
    assert _loose(col.data_dir) == {}


# ---------------------------------------------------------------- 12: on-demand checkpoints

def test_concurrent_proofs_of_fresh_records_make_at_most_one_checkpoint(tmp_path):
    col = CollectorProc(tmp_path / "store", "--checkpoint-latency", "120").start()
    try:
        before = len(col.get("/api/v1/checkpoints?limit=1000")["checkpoints"])
        ids = _emit(col, 20)

        def prove(record_id: str) -> str:
            url = f"{col.url}/api/v1/records/{record_id}/proof"
            with urllib.request.urlopen(url, timeout=120) as resp:
                return resp.read().decode()
        with ThreadPoolExecutor(20) as pool:
            bundles = list(pool.map(prove, ids))
        after = len(col.get("/api/v1/checkpoints?limit=1000")["checkpoints"])
    finally:
        col.stop()
    assert after - before <= 1
    key = load_public_key(col.data_dir / "signing-key.pub")
    assert {verify_bundle(b, key)["record_id"] for b in bundles} == set(ids)
