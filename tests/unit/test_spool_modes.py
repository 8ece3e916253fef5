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


def test_appending_and_replaying_never_list_a_directory(tmp_path, monkeypatch):
    # After an overload the spool holds one file per record (a caller past a full
    # queue spools its own record): a listing per batch made appends and replays
    # quadratic, and the soak's intake fell to a few records a second.
    spool = Spool(str(tmp_path / "spool"), max_bytes=1 << 20)
    listings = []
    real = os.listdir
    monkeypatch.setattr(os, "listdir", lambda path: listings.append(path) or real(path))
    for n in range(200):
        spool.append(b"batch %d" % n)
    replayed = []
    while spool:
        run = spool.oldest_run(64, 5)
        assert 0 < len(run) <= 5  # "batch nnn" is 9 bytes: 7 would fit in 64
        for handle, data in run:
            replayed.append(data)
            spool.remove(handle)
    assert replayed == [b"batch %d" % n for n in range(200)]
    assert listings == []


def test_an_adopted_spool_is_replayed_first_and_released_when_done(tmp_path):
    root = str(tmp_path / "spool")
    dead = Spool(root, max_bytes=1 << 20)
    dead.append(b"old 1")
    dead.append(b"old 2")
    dead.close()  # its process died: the directory is unlocked
    spool = Spool(root, max_bytes=1 << 20)
    spool.append(b"new 1")
    assert [d for _, d in spool.oldest_run(1 << 20, 10)] == [b"old 1", b"old 2", b"new 1"]
    for handle, _ in spool.oldest_run(1 << 20, 2):
        spool.remove(handle)
    assert sorted(os.listdir(root)) == [os.path.basename(spool._own)]  # released
    assert spool.oldest() is not None and spool.bytes == len(b"new 1")
