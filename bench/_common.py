"""Shared helpers for the benchmarks: a collector subprocess, percentiles, tables."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Sequence

ROOT = Path(__file__).resolve().parent.parent
# The `aitrail` command next to the Python running the benchmark (the venv it was
# started from), else the checkout's own .venv.
VENV_BIN = next((d for d in (Path(sys.executable).parent, ROOT / ".venv" / "bin")
                 if (d / "aitrail").exists()), ROOT / ".venv" / "bin")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class CollectorProcess:
    """``aitrail collector`` on a data dir, gRPC on a free loopback port; HTTP too (at
    ``url``) when asked."""

    def __init__(self, data_dir: str, http: bool = False, args: Sequence[str] = ()):
        self.data_dir = data_dir
        self.port = free_port()
        self.endpoint = f"127.0.0.1:{self.port}"
        self.url = f"http://127.0.0.1:{free_port()}" if http else ""
        os.makedirs(os.path.dirname(data_dir), exist_ok=True)
        self.log_path = os.path.join(os.path.dirname(data_dir), "collector.log")
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [str(VENV_BIN / "aitrail"), "collector", "--data-dir", data_dir,
             "--grpc-listen", self.endpoint, "--http-listen", self.url[len("http://"):],
             *args],
            stdout=self._log, stderr=subprocess.STDOUT)
        self._wait_ready(60.0)

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                sys.exit(f"collector exited ({self.proc.returncode}); see {self.log_path}:\n"
                         + Path(self.log_path).read_text())
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    pass
                if self.url:  # the HTTP side starts after gRPC
                    urllib.request.urlopen(self.url + "/healthz", timeout=1).close()
                return
            except OSError:
                time.sleep(0.05)
        self.stop()
        sys.exit(f"collector did not listen on {self.endpoint} within {timeout} s")

    def stop(self, timeout: float = 30.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode


def run_verify(data_dir: str) -> str:
    """``aitrail verify --data-dir`` on a store no collector holds; its output line."""
    out = subprocess.run([str(VENV_BIN / "aitrail"), "verify", "--data-dir", data_dir],
                         capture_output=True, text=True, timeout=600)
    return (out.stdout + out.stderr).strip() + f"  (exit {out.returncode})"


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of an already sorted sequence."""
    index = min(len(sorted_values) - 1, max(0, round(q / 100 * len(sorted_values)) - 1))
    return sorted_values[index]


def print_table(title: str, header: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    cells = [[str(h) for h in header]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    print(f"\n{title}")
    for n, row in enumerate(cells):
        print("  " + "  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                               for i, (c, w) in enumerate(zip(row, widths))))
        if n == 0:
            print("  " + "  ".join("-" * w for w in widths))


def machine_line() -> str:
    import platform
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                if line.startswith("model name")), platform.processor())
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return (f"{os.cpu_count()} CPU(s), {cpu}, Python {platform.python_version()}, "
            f"load average {load}")
