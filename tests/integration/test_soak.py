"""The soak run (bench/soak.py) as a test: a minute of steady SDK load against a real
collector; nothing lost, the chain verifies, and neither process's memory keeps growing.

The script does the work and judges; this test runs it and checks its verdict
from the JSON object it prints last.
"""

import json
import socket
import subprocess
import sys

import pytest
from support import ROOT

SECONDS = 60
RATE = 1000  # records per second: moderate, so a busy CI machine keeps up


@pytest.mark.slow
@pytest.mark.timeout(SECONDS + 240)
def test_a_minute_of_steady_load_loses_nothing_and_memory_stays_bounded():
    out = subprocess.run([sys.executable, str(ROOT / "bench" / "soak.py"), "--seconds",
                          str(SECONDS), "--rate", str(RATE), "--sample-every", "3"],
                         capture_output=True, text=True, timeout=SECONDS + 220, cwd=ROOT)
    text = out.stdout + out.stderr
    lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
    assert lines, text
    result = json.loads(lines[-1])

    assert result["flushed"] and result["client_exit"] == 0, text
    assert result["collector_exit"] == 0, text
    assert result["emitted"] >= SECONDS * RATE * 0.9, text  # the load really was steady
    assert result["emitted"] == result["stored"], text
    assert result["verify_ok"], text
    for name in ("collector", "sdk"):
        figures = result[name]
        assert figures["samples"] >= 5, (name, text)
        assert figures["growth_pct"] < result["max_growth_pct"], (name, figures, text)
    assert result["client_stats"]["dropped"] == 0 and result["client_stats"]["rejected"] == 0
    assert result["ok"] and not result["problems"], text
    assert out.returncode == 0, text


@pytest.mark.timeout(120)
def test_a_client_that_falls_behind_its_rate_still_reports_and_stops_at_its_end(tmp_path):
    # A rate no client reaches, a collector that is not there (durable delivery spools):
    # the client must end its load phase on time, reporting how far behind it fell,
    # not catch up forever (a soak with 3 clients on 2 cores was killed so).
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()
    out = subprocess.run([sys.executable, str(ROOT / "bench" / "soak.py"), "_client",
                          "--endpoint", f"127.0.0.1:{port}", "--spool-dir", str(tmp_path),
                          "--seconds", "2", "--rate", "10000000", "--style", "decorator",
                          "--progress-every", "0.5", "--flush-timeout", "1"],
                         capture_output=True, text=True, timeout=100, cwd=ROOT)
    lines = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    load = [m for m in lines if m.get("phase") == "load"]
    assert len(load) >= 3, out.stdout + out.stderr  # progress while behind
    final = lines[-1]
    assert final["phase"] == "done" and final["load_seconds"] < 3, final
    assert 0 < final["emitted"] < final["due"], final  # behind, and it says so
