"""Secret tokens, one set of plumbing for every kind: ingest API keys
(``ingest/apikeys.py``), console API tokens (``web/auth/accounts.py``) and the
running collector's local CLI token (``app.py``).

A token is ``<prefix><id>_<random>``: the id lets it be looked up and
recognised in a leak, the random part carries 32 bytes from the OS CSPRNG, so
storing SHA-256 of the whole token is enough (nothing low-entropy is hashed).
Files holding hashes or secrets are written atomically and never readable by
others, not even for a moment: a 0600 temporary file in the same directory,
fsynced, then renamed. Writers in different processes take ``<file>.lock``
(flock) around each read-change-write, so one does not undo another's change.
Readers reread a file when its stamp (mtime, size, inode) changes.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import secrets
import tempfile
from typing import Any, Iterator, Optional

from aitrail.files import fsync_dir

try:  # POSIX: serialise writers in different processes
    import fcntl
except ImportError:  # pragma: no cover - Windows: one writer at a time is up to the operator
    fcntl = None  # type: ignore[assignment]

TOKEN_ID_BYTES = 6     # 12 hex digits
TOKEN_SECRET_BYTES = 32


def new_token(prefix: str) -> tuple[str, str]:
    """A fresh (token_id, token) with ``token = prefix + token_id + "_" + random``."""
    token_id = secrets.token_hex(TOKEN_ID_BYTES)
    return token_id, f"{prefix}{token_id}_{secrets.token_urlsafe(TOKEN_SECRET_BYTES)}"


def digest(secret: str) -> str:
    """What is stored of a token: SHA-256, hex."""
    return hashlib.sha256(secret.encode()).hexdigest()


def matches(stored_digest: str, secret: str) -> bool:
    """Whether ``secret`` is the token ``stored_digest`` was made from (constant time)."""
    return hmac.compare_digest(stored_digest, digest(secret))


def split_token(prefix: str, token: str) -> Optional[tuple[str, str]]:
    """(token_id, token) of a well-formed token, else None."""
    if not isinstance(token, str) or not token.startswith(prefix):
        return None
    token_id, sep, rest = token[len(prefix):].partition("_")
    if not sep or not token_id or not rest:
        return None
    return token_id, token


def write_secret(path: str, text: str) -> None:
    """Write ``text`` to ``path`` atomically, mode 0600 from the first byte."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, mode=0o700, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=os.path.basename(path) + ".", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
        fsync_dir(directory)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_json(path: str, data: Any) -> None:
    write_secret(path, json.dumps(data, indent=2))


@contextlib.contextmanager
def locked(path: str) -> Iterator[None]:
    """Hold ``<path>.lock`` for one read-change-write of ``path``."""
    if fcntl is None:  # pragma: no cover
        yield
        return
    os.makedirs(os.path.dirname(os.path.abspath(path)), mode=0o700, exist_ok=True)
    fd = os.open(path + ".lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def file_stamp(path: str) -> Optional[tuple[int, int, int]]:
    """Changes whenever the file is replaced or rewritten; None when it is absent."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


__all__ = ["new_token", "digest", "matches", "split_token", "write_secret", "write_json",
           "locked", "file_stamp"]
