"""`pip install aitrail` alone (no collector extra): the SDK's CLI works, says how to
get the collector's commands, verifies a proof bundle offline, and refuses what
needs the collector with a clear message instead of a traceback."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest
from support import ROOT, cli

pytestmark = pytest.mark.slow

# The SDK-only venv runs what pip installed in it, alone: not the checkout's sources
# that support.py puts on PYTHONPATH for the other tests' processes.
ALONE = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}


@pytest.fixture(scope="module")
def sdk_venv(tmp_path_factory) -> Path:
    where = tmp_path_factory.mktemp("sdk-venv")
    venv.EnvBuilder(with_pip=True).create(where)
    py = where / "bin" / "python"
    # A copy: building from the work tree would leave build/ in it.
    src = where / "src"
    shutil.copytree(ROOT, src, symlinks=True, ignore=shutil.ignore_patterns(
        ".venv", ".git", "build", "*.egg-info", "aitrail-data", "__pycache__", "bench", "tests"))
    out = subprocess.run([str(py), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                          str(src)], capture_output=True, text=True, timeout=600, env=ALONE)
    assert out.returncode == 0, out.stderr[-3000:]
    return where


def _run(env: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(env / "bin" / "aitrail"), *args], capture_output=True, text=True,
                          timeout=120, cwd=env, env=ALONE)


def test_the_sdk_alone_has_no_collector_dependencies(sdk_venv):
    code = ("import importlib.util as u, sys; "
            "sys.exit(any(u.find_spec(m) for m in ('chdb', 'clickhouse_connect', 'fastapi')))")
    assert subprocess.run([str(sdk_venv / "bin" / "python"), "-c", code],
                          env=ALONE).returncode == 0


def test_help_lists_the_sdk_commands_and_says_how_to_get_the_collector(sdk_venv):
    out = _run(sdk_venv, "--help")
    assert out.returncode == 0, out.stderr
    for command in ("query", "timeline", "export", "verify", "prove", "verify-proof"):
        assert command in out.stdout
    assert "pip install 'aitrail[collector]'" in " ".join(out.stdout.split())


def test_collector_commands_and_direct_store_reads_say_they_need_the_extra(sdk_venv):
    out = _run(sdk_venv, "collector")
    assert out.returncode == 2
    assert "needs the collector extra: pip install 'aitrail[collector]'" in out.stderr
    out = _run(sdk_venv, "query", "--data-dir", str(sdk_venv))
    assert out.returncode == 2
    assert "reading a store directly needs the collector extra" in out.stderr
    assert "Traceback" not in out.stderr


def test_verify_proof_works_with_the_sdk_alone(sdk_venv, tmp_path):
    """A bundle made by a real collector's store checks out in the SDK-only venv."""
    data = tmp_path / "store"
    demo = subprocess.run([sys.executable, "-m", "aitrail.cli", "demo", "--data-dir", str(data),
                           "--no-serve", "--tasks", "3", "--grpc-listen", "127.0.0.1:0",
                           "--http-listen", "127.0.0.1:0"], capture_output=True, text=True,
                          timeout=300)
    assert demo.returncode == 0, demo.stderr
    record_id = next(w for line in demo.stdout.splitlines() if "aitrail prove" in line
                     for w in line.split() if w.count("-") == 4)
    bundle = tmp_path / "proof.json"
    assert cli("prove", record_id, "--data-dir", str(data), "-o", str(bundle)).returncode == 0
    out = _run(sdk_venv, "verify-proof", str(bundle), "--public-key",
               str(data / "signing-key.pub"))
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.startswith(f"OK: record {record_id}")
