"""The independent anchor store: a second, write-once home for every signed checkpoint.

Checkpoints are stored in ClickHouse too, but whoever can rewrite the store could rewrite
them there as well. The anchor store is kept apart (another directory, disk or machine by
default; in production an S3 bucket with Object Lock in COMPLIANCE mode, which not even the
account root can shorten or delete), so a verifier compares the two and a rewritten history
shows up as a checkpoint that no longer matches the records.

Layout, the same for both back ends (docs/checkpoints.md, "Anchor store")::

    <root>/<chain id>/<number, 12 digits>.checkpoint      # the exact SignedCheckpoint.text()
    <root>/<chain id>/<last>-<first>.checkpoints          # a batch: texts first..last, joined

A batch holds several consecutive checkpoints written together (the collector writes
what became pending since its last anchor write as one object, so on-demand
checkpoints do not each make an object). Every object is write-once: putting the
same text again is a no-op, putting a different text raises AnchorError. A
checkpoint may sit in more than one object (a batch re-offered after a crash); the
copies must then be identical.

Reading never skips a bad object silently. ``entries(chain)`` returns one ``AnchorEntry`` per
object, with ``error`` set for an object that does not parse, sits under the wrong name, or
(S3) was rewritten or deleted after it was written; ``list(chain)`` returns the checkpoints
and raises AnchorError on the first such entry.
"""

from __future__ import annotations

import os
import re
import tempfile
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Optional
from urllib.parse import unquote, urlsplit

from aitrail.errors import AitrailError
from aitrail.files import fsync_dir
from aitrail.verify.checkpoint import CheckpointError, SignedCheckpoint, check_origin
from aitrail_collector.config import CollectorConfig

_NAME_RE = re.compile(r"([0-9]{12})\.checkpoint")
_BATCH_RE = re.compile(r"([0-9]{12})-([0-9]{12})\.checkpoints")
_LINES = 11  # every SignedCheckpoint.text() has exactly this many lines


class AnchorError(AitrailError):
    """The anchor store refused a write, could not be reached, or holds a bad object."""


class AnchorConflict(AnchorError):
    """The anchor already holds a different checkpoint under that number: what was
    signed first stays, so retrying the write can never succeed."""


@dataclass(frozen=True)
class AnchorEntry:
    """One object of the anchor store, as read. It is sound iff ``error`` is None."""

    name: str                          # file path or s3:// URL
    number: Optional[int]              # from the object name; None when the name is foreign
    text: Optional[str]                # the object's content, when it could be read as UTF-8
    signed: Optional[SignedCheckpoint]  # the parsed checkpoint, when it parses
    error: Optional[str]               # what is wrong with it, or None


def object_name(chain_id: str, number: int) -> str:
    """``<chain id>/<number:012d>.checkpoint``: names sort in checkpoint order."""
    return f"{check_origin(chain_id)}/{number:012d}.checkpoint"


def batch_name(chain_id: str, first: int, last: int) -> str:
    """``<chain id>/<last:012d>-<first:012d>.checkpoints``: named by its last number, so
    a listing that starts after ``<n:012d>~`` holds exactly the objects with newer ones."""
    return f"{check_origin(chain_id)}/{last:012d}-{first:012d}.checkpoints"


def numbers_in(name: str) -> list[int]:
    """The checkpoint numbers an object name says it holds ([] for a foreign name)."""
    base = name.rsplit("/", 1)[-1]
    m = _NAME_RE.fullmatch(base)
    if m:
        return [int(m.group(1))]
    b = _BATCH_RE.fullmatch(base)
    if b and int(b.group(2)) <= int(b.group(1)):
        return list(range(int(b.group(2)), int(b.group(1)) + 1))
    return []


def _numbers(names: "list[str]", after: int) -> dict[int, bool]:
    out: dict[int, bool] = {}
    for name in names:
        numbers = numbers_in(name)
        for n in numbers:
            if n > after:
                out[n] = out.get(n, False) or len(numbers) == 1 and name.endswith(".checkpoint")
    return out


def make_entries(name: str, chain_id: str, text: Optional[str],
                 error: Optional[str] = None) -> list[AnchorEntry]:
    """The entries of one object: one for a single checkpoint, one per checkpoint of a
    batch; a batch that does not hold exactly the checkpoints its name says is one
    entry with an error."""
    b = _BATCH_RE.fullmatch(name.rsplit("/", 1)[-1])
    if b is None:
        return [make_entry(name, chain_id, text, error)]
    last, first = int(b.group(1)), int(b.group(2))
    if error or text is None:
        return [AnchorEntry(name, last, text, None,
                            error or f"anchor object {name} is not UTF-8 text")]
    lines = text.split("\n")
    if lines[-1] != "":
        return [AnchorEntry(name, last, text, None, f"anchor object {name} does not end with "
                            "a newline")]
    lines = lines[:-1]
    want = last - first + 1
    if first > last or len(lines) != want * _LINES:
        return [AnchorEntry(name, last, text, None, f"anchor object {name} should hold "
                            f"checkpoints {first}..{last} but has {len(lines)} lines")]
    out = []
    for i in range(want):
        part = "\n".join(lines[i * _LINES:(i + 1) * _LINES]) + "\n"
        out.append(make_entry(f"{name}#{first + i}", chain_id, part, number=first + i))
    return out


def make_entry(name: str, chain_id: str, text: Optional[str], error: Optional[str] = None,
               number: Optional[int] = None) -> AnchorEntry:
    """Parse one object's text and check that it holds the checkpoint its name says."""
    if number is None:
        m = _NAME_RE.fullmatch(name.rsplit("/", 1)[-1])
        number = int(m.group(1)) if m else None
    if error or text is None:
        return AnchorEntry(name, number, text, None,
                           error or f"anchor object {name} is not UTF-8 text")
    try:
        signed = SignedCheckpoint.parse(text)
    except CheckpointError as e:
        return AnchorEntry(name, number, text, None, f"anchor object {name} does not parse: {e}")
    cp = signed.checkpoint
    if number is None:
        return AnchorEntry(name, None, text, signed, f"anchor object {name} has a foreign name")
    if (cp.origin, cp.number) != (chain_id, number):
        # A checkpoint copied under another name must not stand in for the missing one.
        return AnchorEntry(name, number, text, signed,
                           f"anchor object {name} holds {cp.origin}#{cp.number},"
                           f" expected {chain_id}#{number}")
    return AnchorEntry(name, number, text, signed, None)


def _sort_key(entry: AnchorEntry) -> tuple[int, str]:
    return (entry.number if entry.number is not None else 10**12, entry.name)


def _merged(entries: list[AnchorEntry]) -> list[AnchorEntry]:
    """One entry per number, sorted: identical copies in several objects are one; a
    second copy that differs is an error on the first."""
    out: list[AnchorEntry] = []
    seen: dict[int, int] = {}
    for entry in sorted(entries, key=_sort_key):
        if entry.number is None or entry.number not in seen:
            if entry.number is not None:
                seen[entry.number] = len(out)
            out.append(entry)
            continue
        first = out[seen[entry.number]]
        if entry.text != first.text or entry.error:
            out[seen[entry.number]] = _with_error(
                first, f"the anchor holds two different copies of checkpoint {entry.number} "
                       f"({first.name} and {entry.name})")
    return out


class AnchorStore:
    """Base of the anchor stores. Subclasses implement _get, _create, entries, chains."""

    def put(self, signed: SignedCheckpoint) -> str:
        """Write ``signed`` once; return where it lives. Idempotent for the same text."""
        cp = signed.checkpoint
        name = object_name(cp.origin, cp.number)
        text = signed.text()
        existing = self._get(name)
        if existing is None and self._create(name, text):
            return self._where(name)
        existing = self._get(name) if existing is None else existing
        if existing != text:
            raise AnchorConflict(f"{self._where(name)} already holds a different checkpoint"
                                 f" {cp.origin}#{cp.number}; anchors are write-once")
        return self._where(name)

    def put_batch(self, batch: "list[SignedCheckpoint]") -> str:
        """Write consecutive checkpoints of one chain as one object, once; a single
        checkpoint goes under its own name (``put``)."""
        if len(batch) == 1:
            return self.put(batch[0])
        first, last = batch[0].checkpoint, batch[-1].checkpoint
        if any(b.checkpoint.origin != first.origin or b.checkpoint.number != first.number + i
               for i, b in enumerate(batch)):
            raise AnchorError("a batch must hold consecutive checkpoints of one chain")
        name = batch_name(first.origin, first.number, last.number)
        text = "".join(b.text() for b in batch)
        existing = self._get(name)
        if existing is None and self._create(name, text):
            return self._where(name)
        existing = self._get(name) if existing is None else existing
        if existing != text:
            raise AnchorConflict(f"{self._where(name)} already holds different checkpoints;"
                                 " anchors are write-once")
        return self._where(name)

    def numbers_after(self, chain_id: str, after: int) -> dict[int, bool]:
        """The checkpoint numbers above ``after`` that the anchor's object names hold,
        each with whether it has an object of its own (not only a place in a batch).
        Names only: cheap enough for every start."""
        return _numbers(self._names_after(chain_id, after), after)

    def _names_after(self, chain_id: str, after: int) -> "list[str]":
        raise NotImplementedError

    def entries(self, chain_id: str) -> list[AnchorEntry]:
        """Every checkpoint stored for ``chain_id``, sorted by number; bad ones carry
        ``error``."""
        raise NotImplementedError

    def chains(self) -> list[str]:
        raise NotImplementedError

    def describe(self) -> str:
        raise NotImplementedError

    def _get(self, name: str) -> Optional[str]:
        """The text stored under ``name``, or None when there is none."""
        raise NotImplementedError

    def _create(self, name: str, text: str) -> bool:
        """Create ``name`` if absent; False (writing nothing) if it already exists."""
        raise NotImplementedError

    def _where(self, name: str) -> str:
        raise NotImplementedError

    # Defined last: inside this class body the name ``list`` is the method from here on.
    def list(self, chain_id: str) -> "list[SignedCheckpoint]":
        """The checkpoints of ``chain_id`` in number order; AnchorError on any bad object."""
        out = []
        for entry in self.entries(chain_id):
            if entry.error is not None or entry.signed is None:
                raise AnchorError(entry.error or f"anchor object {entry.name} is unreadable")
            out.append(entry.signed)
        return out


# --------------------------------------------------------------------------- directory


class DirectoryAnchor(AnchorStore):
    """Files under a directory: temp file, fsync, hard link into place, directory fsync."""

    def __init__(self, path: str | os.PathLike[str]):
        self.root = Path(path)

    def describe(self) -> str:
        return f"directory {self.root}"

    def _where(self, name: str) -> str:
        return str(self.root / name)

    def _get(self, name: str) -> Optional[str]:
        try:
            return (self.root / name).read_bytes().decode("utf-8")
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError) as e:
            raise AnchorError(f"cannot read {self.root / name}: {e}") from None

    def _create(self, name: str, text: str) -> bool:
        final = self.root / name
        try:
            self._make_dirs(final.parent)
            fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=final.parent)
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(text.encode("utf-8"))
                    f.flush()
                    os.fsync(f.fileno())
                # link(), unlike rename(), fails when the target exists: a concurrent writer
                # can never replace a checkpoint that is already there.
                os.link(tmp, final)
            finally:
                os.unlink(tmp)
            fsync_dir(final.parent)
        except FileExistsError:
            return False
        except OSError as e:
            raise AnchorError(f"cannot write {final}: {e}") from None
        return True

    def _make_dirs(self, chain_dir: Path) -> None:
        if chain_dir.is_dir():
            return
        self.root.mkdir(parents=True, exist_ok=True)
        chain_dir.mkdir(exist_ok=True)
        fsync_dir(self.root)  # the new directory entry must survive a crash too

    def entries(self, chain_id: str) -> list[AnchorEntry]:
        chain_dir = self.root / check_origin(chain_id)
        if not chain_dir.is_dir():
            return []
        out = []
        for path in chain_dir.iterdir():
            if path.name.startswith(".tmp-"):
                continue  # a write interrupted before its link(): never part of the store
            out += self._entries(path, chain_id)
        return _merged(out)

    def _entries(self, path: Path, chain_id: str) -> list[AnchorEntry]:
        name = str(path)
        try:
            data = path.read_bytes()
        except OSError as e:
            return make_entries(name, chain_id, None, f"anchor object {name} is unreadable: {e}")
        return make_entries(name, chain_id, _decode(data))

    def _names_after(self, chain_id: str, after: int) -> list[str]:
        chain_dir = self.root / check_origin(chain_id)
        return os.listdir(chain_dir) if chain_dir.is_dir() else []

    def chains(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and _is_origin(p.name))



def _is_origin(name: str) -> bool:
    try:
        check_origin(name)
    except CheckpointError:
        return False
    return True


# --------------------------------------------------------------------------- S3


class S3Anchor(AnchorStore):
    """Objects in an S3 bucket, under COMPLIANCE-mode Object Lock when the bucket has it.

    ``object_lock``: None detects it from the bucket (first put); True requires it (a put to a
    bucket without Object Lock raises AnchorError); False never sends lock headers.
    The endpoint comes from boto3's normal configuration (AWS_ENDPOINT_URL, profiles) unless
    ``endpoint_url`` or a ready ``client`` is given.
    """

    def __init__(self, bucket: str, prefix: str = "", client: Any = None,
                 retention_days: int = CollectorConfig.retention_days,
                 endpoint_url: Optional[str] = None, object_lock: Optional[bool] = None):
        if retention_days < 1:
            raise AnchorError("anchor retention must be at least one day")
        if client is None:
            import boto3  # the collector extra; a directory anchor must not need it

            client = boto3.client("s3", endpoint_url=endpoint_url)
        self.client = client
        self.bucket = bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self.retention_days = retention_days
        self._object_lock = object_lock
        self._lock_checked = object_lock is False

    def describe(self) -> str:
        lock = {None: "object lock: not yet checked", True: "object lock: COMPLIANCE",
                False: "object lock: off"}[self._object_lock]
        return (f"s3://{self.bucket}/{self.prefix} ({lock},"
                f" retention {self.retention_days} days)")

    def _where(self, name: str) -> str:
        return f"s3://{self.bucket}/{self.prefix}{name}"

    def put(self, signed: SignedCheckpoint) -> str:
        # Ask the bucket before anything else, so object_lock=True fails even on a no-op put.
        self.object_lock_enabled()
        return super().put(signed)

    def put_batch(self, batch: "list[SignedCheckpoint]") -> str:
        self.object_lock_enabled()
        return super().put_batch(batch)

    def _names_after(self, chain_id: str, after: int) -> list[str]:
        prefix = f"{self.prefix}{check_origin(chain_id)}/"
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=prefix, StartAfter=f"{prefix}{after:012d}~")
        try:
            return [o["Key"] for page in pages for o in page.get("Contents", [])]
        except Exception as e:
            raise AnchorError(f"cannot list s3://{self.bucket}/{prefix}: {e}") from None

    def object_lock_enabled(self) -> bool:
        """Whether puts carry COMPLIANCE retention; asks the bucket once."""
        if not self._lock_checked:
            enabled = self._bucket_has_object_lock()
            if self._object_lock and not enabled:
                raise AnchorError(f"bucket {self.bucket} does not have Object Lock enabled")
            self._object_lock = enabled
            self._lock_checked = True
        return bool(self._object_lock)

    def _bucket_has_object_lock(self) -> bool:
        try:
            conf = self.client.get_object_lock_configuration(Bucket=self.bucket)
        except Exception as e:
            if _error_code(e) == "ObjectLockConfigurationNotFoundError":
                return False
            # Guessing "no lock" on AccessDenied would silently weaken the anchor.
            raise AnchorError(f"cannot read the Object Lock configuration of bucket"
                              f" {self.bucket}: {e}") from None
        return conf.get("ObjectLockConfiguration", {}).get("ObjectLockEnabled") == "Enabled"

    def _get(self, name: str) -> Optional[str]:
        key = self.prefix + name
        try:
            body = self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        except Exception as e:
            if _error_code(e) in ("NoSuchKey", "404", "NotFound"):
                return None
            raise AnchorError(f"cannot read {self._where(name)}: {e}") from None
        return _decode(body)

    def _create(self, name: str, text: str) -> bool:
        args: dict[str, Any] = {
            "Bucket": self.bucket, "Key": self.prefix + name, "Body": text.encode("utf-8"),
            "ContentType": "text/plain; charset=utf-8",
            # S3 refuses a put with retention unless it carries a checksum.
            "ChecksumAlgorithm": "SHA256",
            "IfNoneMatch": "*",  # atomic create-if-absent: a racing writer gets 412
        }
        if self.object_lock_enabled():
            args["ObjectLockMode"] = "COMPLIANCE"
            args["ObjectLockRetainUntilDate"] = (datetime.now(timezone.utc)
                                                 + timedelta(days=self.retention_days))
        try:
            self.client.put_object(**args)
        except Exception as e:
            if _error_code(e) in ("PreconditionFailed", "412", "ConditionalRequestConflict"):
                return False
            raise AnchorError(f"cannot write {self._where(name)}: {e}") from None
        return True

    def chains(self) -> list[str]:
        out = []
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=self.prefix, Delimiter="/")
        try:
            for page in pages:
                for cp in page.get("CommonPrefixes", []):
                    name = cp["Prefix"][len(self.prefix):].rstrip("/")
                    if _is_origin(name):
                        out.append(name)
        except Exception as e:
            raise AnchorError(f"cannot list s3://{self.bucket}/{self.prefix}: {e}") from None
        return sorted(out)

    def entries(self, chain_id: str) -> list[AnchorEntry]:
        """Reads every version of every object, so a rewrite or delete shows as an error.

        Object Lock keeps each version but does not stop a new version or a delete marker
        from hiding it; a reader of the latest version only would be fooled by either.
        The reader needs s3:ListBucketVersions and s3:GetObjectVersion.
        """
        prefix = f"{self.prefix}{check_origin(chain_id)}/"
        try:
            versions = self._versions(prefix)
        except Exception as e:
            raise AnchorError(f"cannot list s3://{self.bucket}/{prefix}: {e}") from None
        out = [e for key, vs in sorted(versions.items()) for e in self._entry(key, vs, chain_id)]
        return _merged(out)

    def _versions(self, prefix: str) -> dict[str, tuple[list[str], bool]]:
        """key -> (version ids oldest first, whether a delete marker is the latest)."""
        by_key: dict[str, tuple[list[str], bool]] = {}
        pages = self.client.get_paginator("list_object_versions").paginate(
            Bucket=self.bucket, Prefix=prefix)
        for page in pages:
            # S3 lists each key's versions newest first; LastModified has only 1 s resolution,
            # so the listing order, not the time, says which version came first.
            for v in page.get("Versions", []):
                by_key.setdefault(v["Key"], ([], False))[0].insert(0, v["VersionId"])
            for d in page.get("DeleteMarkers", []):
                ids, deleted = by_key.setdefault(d["Key"], ([], False))
                by_key[d["Key"]] = (ids, deleted or bool(d.get("IsLatest")))
        return by_key

    def _entry(self, key: str, versions: tuple[list[str], bool],
               chain_id: str) -> list[AnchorEntry]:
        name = f"s3://{self.bucket}/{key}"
        version_ids, deleted = versions
        texts = []
        for version_id in version_ids:
            try:
                body = self.client.get_object(Bucket=self.bucket, Key=key,
                                              VersionId=version_id)["Body"].read()
            except Exception as e:
                return make_entries(name, chain_id, None,
                                    f"anchor object {name} is unreadable: {e}")
            texts.append(_decode(body))
        if not texts:
            return make_entries(name, chain_id, None, f"anchor object {name} was deleted")
        entries = make_entries(name, chain_id, texts[0])
        if deleted:
            return [_with_error(e, f"anchor object {name} was deleted (a delete marker"
                                   " hides it; its first version is reported)") for e in entries]
        if any(t != texts[0] for t in texts):
            return [_with_error(e, f"anchor object {name} was rewritten: {len(texts)}"
                                   " versions differ (its first version is reported)")
                    for e in entries]
        return entries


def _with_error(entry: AnchorEntry, error: str) -> AnchorEntry:
    if entry.error is not None:
        error = f"{error}; {entry.error}"
    return AnchorEntry(entry.name, entry.number, entry.text, entry.signed, error)


def _decode(body: bytes) -> Optional[str]:
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _error_code(exc: Exception) -> Optional[str]:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Code"))
    return None


# --------------------------------------------------------------------------- open


def open_anchor(url: str, **s3_options: Any) -> AnchorStore:
    """A path or ``file:///path`` -> DirectoryAnchor; ``s3://bucket/prefix`` -> S3Anchor.

    ``s3_options`` (retention_days, endpoint_url, client, object_lock) go to S3Anchor.
    """
    if not url:
        raise AnchorError("anchor location is empty: give a directory, file:///path"
                          " or s3://bucket/prefix")
    if "://" not in url:
        return DirectoryAnchor(url)
    parts = urlsplit(url)
    if parts.scheme == "file":
        if parts.netloc not in ("", "localhost") or not parts.path:
            raise AnchorError(f"anchor URL {url!r}: use file:///absolute/path")
        return DirectoryAnchor(unquote(parts.path))
    if parts.scheme == "s3":
        if not parts.netloc:
            raise AnchorError(f"anchor URL {url!r} names no bucket: use s3://bucket/prefix")
        return S3Anchor(parts.netloc, prefix=parts.path, **s3_options)
    raise AnchorError(f"anchor URL {url!r}: unsupported scheme {parts.scheme!r};"
                      " use a directory, file:///path or s3://bucket/prefix")
