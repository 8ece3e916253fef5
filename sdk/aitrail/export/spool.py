"""The durable spool: batches the collector could not take yet, kept on local disk.

Layout: ``<spool_dir>/<owner>/<number>.batch``, one serialized ExportRequest per
file, written to a temporary name, fsynced and renamed into place, so a crash
leaves either the whole batch or none of it. Files are replayed in number
order and deleted once the collector acknowledged them.

The files waiting are also kept in memory, in replay order: appending and replaying
never list a directory, which after an overload can hold 100k one-record batches
(listing it per batch made both quadratic).

Each process owns one directory, held with a POSIX lock (``lockf``; unlike
``flock`` it is not inherited across ``fork``). A process that starts and finds
an unlocked directory left by a process that died adopts it and replays it
first, so records survive an application restart.
"""

from __future__ import annotations

import builtins
import fcntl
import os
import stat
import threading
import uuid
from collections import deque

from aitrail.errors import AitrailError
from aitrail.files import fsync_dir

SUFFIX = ".batch"


class SpoolFull(AitrailError):
    pass


def _private_dir(path: str) -> None:
    os.makedirs(path, mode=0o700, exist_ok=True)
    if stat.S_IMODE(os.stat(path).st_mode) & 0o077:
        os.chmod(path, 0o700)


class Spool:
    def __init__(self, root: str, max_bytes: int) -> None:
        self.root = root
        self.max_bytes = max_bytes
        # Unsent audit records: for this user only (0700 directories, 0600 files),
        # whatever the process's umask.
        _private_dir(root)
        self._lock = threading.Lock()
        self._lock_fds: list[int] = []
        # The batch files to replay, oldest first: adopted directories' (listed once),
        # then our own as they are written.
        self._waiting: deque[str] = deque()
        self._next = 0  # our directory is new: its files are numbered from 1
        self._bytes = 0
        own = os.path.join(root, f"{os.getpid()}-{uuid.uuid4().hex[:8]}")
        if self._claim(own) is None:  # a new directory: only a broken lockf gets here
            raise OSError(f"cannot lock the spool directory {own}")
        self._own = own
        self._adopt_orphans()

    # ------------------------------------------------------------ ownership
    def _claim(self, path: str) -> str | None:
        _private_dir(path)
        fd = os.open(os.path.join(path, "owner.lock"), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return None
        self._lock_fds.append(fd)
        return path

    def _adopt_orphans(self) -> None:
        for name in sorted(os.listdir(self.root)):
            path = os.path.join(self.root, name)
            if path == self._own or not os.path.isdir(path):
                continue
            if self._claim(path) is None:
                continue  # a live process owns it
            files = self._files(path)
            if files:
                self._waiting.extend(files)
                self._bytes += sum(os.path.getsize(f) for f in files)
            else:
                self._release(path)

    def _release(self, path: str) -> None:
        # Refused batches stay for inspection; only an empty directory goes.
        for name in os.listdir(path):
            if name == "owner.lock" or name.endswith(".tmp"):
                os.remove(os.path.join(path, name))
        try:
            os.rmdir(path)
        except OSError:
            pass

    @staticmethod
    def _files(path: str) -> list[str]:
        names = sorted(n for n in os.listdir(path) if n.endswith(SUFFIX))
        return [os.path.join(path, n) for n in names]

    # ------------------------------------------------------------ use
    @property
    def bytes(self) -> int:
        return self._bytes

    def append(self, data: builtins.bytes) -> None:
        """Durably add one batch; raises SpoolFull past ``max_bytes``."""
        with self._lock:
            if self._bytes + len(data) > self.max_bytes:
                raise SpoolFull(f"spool at {self.root} holds {self._bytes} bytes; "
                                f"limit {self.max_bytes}")
            self._next += 1
            final = os.path.join(self._own, f"{self._next:012d}{SUFFIX}")
            tmp = final + ".tmp"
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            os.fchmod(fd, 0o600)  # an older .tmp left by a crash keeps its mode otherwise
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.rename(tmp, final)
            fsync_dir(self._own)
            self._waiting.append(final)
            self._bytes += len(data)

    def oldest(self) -> tuple[str, builtins.bytes] | None:
        """The next batch to replay, as (handle, bytes), or None when empty."""
        run = self.oldest_run(0, 1)
        return run[0] if run else None

    def oldest_run(self, max_bytes: int, max_batches: int) -> list[tuple[str, builtins.bytes]]:
        """The oldest batches, in order, as (handle, bytes): at most ``max_batches``,
        as many as fit in ``max_bytes`` together, and always the oldest one (empty:
        the spool is)."""
        run: list[tuple[str, builtins.bytes]] = []
        size = 0
        with self._lock:
            for path in self._waiting:
                if run and (len(run) == max_batches
                            or size + os.path.getsize(path) > max_bytes):
                    break
                with open(path, "rb") as fh:
                    data = fh.read()
                run.append((path, data))
                size += len(data)
        return run

    def remove(self, handle: str) -> None:
        with self._lock:
            size = os.path.getsize(handle)
            os.remove(handle)
            self._bytes -= size
            self._done(handle)

    def quarantine(self, handle: str) -> None:
        """Set aside a batch the collector refuses outright (kept for inspection)."""
        with self._lock:
            size = os.path.getsize(handle)
            os.rename(handle, handle + ".refused")
            self._bytes -= size
            self._done(handle)

    def _done(self, handle: str) -> None:
        # Batches are replayed oldest first: the handle is almost always the first.
        if self._waiting and self._waiting[0] == handle:
            self._waiting.popleft()
        else:
            self._waiting.remove(handle)
        folder = os.path.dirname(handle)
        if folder != self._own and not (self._waiting and
                                        os.path.dirname(self._waiting[0]) == folder):
            self._release(folder)  # an adopted directory replayed to its end

    def __bool__(self) -> bool:
        return self._bytes > 0

    def __len__(self) -> int:
        """How many batches wait."""
        return len(self._waiting)

    def close(self) -> None:
        for fd in self._lock_fds:
            os.close(fd)
        self._lock_fds = []

