"""Every benchmark script loads: a name one of them imports from another that was
since removed (bench_storage once imported bench_query's dropped layout variants)
fails here, not on the machine that regenerates the 10M store to rerun the figures.
Nothing is measured: the scripts' work runs only under ``__main__``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench"

# One interpreter imports them all (each would otherwise pay the engine's import).
_LOAD = """
import importlib, sys
sys.path.insert(0, sys.argv[1])
failed = []
for name in sys.argv[2:]:
    try:
        importlib.import_module(name)
    except Exception as exc:
        failed.append(f"{name}: {type(exc).__name__}: {exc}")
print("\\n".join(failed))
sys.exit(1 if failed else 0)
"""


def test_every_bench_script_imports() -> None:
    names = sorted(p.stem for p in BENCH.glob("*.py"))
    assert "bench_storage" in names and "bench_export" in names
    out = subprocess.run([sys.executable, "-c", _LOAD, str(BENCH), *names],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
