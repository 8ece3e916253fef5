"""The wheel `pip install aitrail` gets: every file the packages read at run time is in
it, and setuptools builds it without warning that it would leave a directory out.

A data directory with no Python in it (the console's templates, the dashboards' SQL)
is shipped today even when it is missing from `packages`, with a warning that a later
setuptools will drop it; a console without templates would then fail only after
install. The wheel is built from this checkout with the venv's own setuptools (no
network), compiled part included.
"""

from __future__ import annotations

import os
import subprocess
import zipfile
from pathlib import Path

from support import PY, ROOT

# What the interpreter and the build make, not files the packages read.
_NOT_DATA = {".py", ".pyc", ".c", ".so"}
_SOURCES = {"aitrail": ROOT / "sdk" / "aitrail",
            "aitrail_collector": ROOT / "collector" / "aitrail_collector"}


def _data_files() -> set[str]:
    """Every non-code file under the two packages, as its path inside the wheel
    (``aitrail_collector/sql`` is a link to ``dashboards/sql``: followed)."""
    found = set()
    for package, src in _SOURCES.items():
        for folder, dirs, files in os.walk(src, followlinks=True):
            dirs[:] = [d for d in dirs if d != "__pycache__"]
            for name in files:
                path = Path(folder, name)
                if path.suffix not in _NOT_DATA:
                    found.add(f"{package}/{path.relative_to(src).as_posix()}")
    return found


def test_the_wheel_holds_every_data_file_and_builds_without_warnings(tmp_path: Path) -> None:
    out = subprocess.run(
        [PY, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-cache-dir",
         "-w", str(tmp_path), str(ROOT)],
        capture_output=True, text=True, timeout=240)
    log = out.stdout + out.stderr
    assert out.returncode == 0, log
    assert "would be ignored" not in log and "is absent from the `packages`" not in log, log
    (wheel,) = tmp_path.glob("aitrail-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    wanted = _data_files()
    # The files the console and the dashboards cannot start without, named so that a
    # change to _NOT_DATA cannot empty the check.
    assert {"aitrail_collector/web/console/templates/base.html",
            "aitrail_collector/web/console/static/console.css",
            "aitrail_collector/sql/v_override_daily.sql",
            "aitrail_collector/audit.proto", "aitrail/py.typed"} <= wanted
    assert wanted - names == set()
