"""The SDK spool holds unsent audit records: only its owner may read them."""

from __future__ import annotations

import os
import stat

from aitrail.export.spool import Spool


def test_spool_files_are_0600_and_directories_0700_whatever_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        spool = Spool(str(tmp_path / "spool"), max_bytes=1 << 20)
        spool.append(b"batch one")
        spool.append(b"batch two")
    finally:
        os.umask(old)
    modes = {}
    for top, dirs, files in os.walk(tmp_path / "spool"):
        for name in dirs + files:
            path = os.path.join(top, name)
            modes[os.path.relpath(path, tmp_path)] = stat.S_IMODE(os.lstat(path).st_mode)
    modes["spool"] = stat.S_IMODE(os.stat(tmp_path / "spool").st_mode)
    assert len(modes) >= 4
    loose = {p: oct(m) for p, m in modes.items()
             if m != (0o700 if os.path.isdir(tmp_path / p) else 0o600)}
    assert loose == {}
