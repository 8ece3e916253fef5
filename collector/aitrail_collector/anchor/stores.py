"""The independent anchor store: a second, write-once home for every signed checkpoint.

Checkpoints are stored in ClickHouse too, but whoever can rewrite the store could rewrite
them there as well. The anchor store is kept apart (another directory, disk or machine by
default; in production an S3 bucket with Object Lock in COMPLIANCE mode, which not even the
account root can shorten or delete), so a verifier compares the two and a rewritten history
shows up as a checkpoint that no longer matches the records.

Layout, the same for both back ends (docs/checkpoints.md, "Anchor store")::

    <root>/<chain id>/<number, 12 digits>.checkpoint      # the exact SignedCheckpoint.text()

Every store is write-once per (chain, number): putting the same text again is a no-op,
putting a different text raises AnchorError.

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


def make_entry(name: str, chain_id: str, text: Optional[str], error: Optional[str] = None,
               ) -> AnchorEntry:
    """Parse one object's text and check that it holds the checkpoint its name says."""
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

    def entries(self, chain_id: str) -> list[AnchorEntry]:
        """Every object stored for ``chain_id``, sorted by number; bad ones carry ``error``."""
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
            out.append(self._entry(path, chain_id))
        return sorted(out, key=_sort_key)

    def _entry(self, path: Path, chain_id: str) -> AnchorEntry:
        name = str(path)
        try:
            data = path.read_bytes()
        except OSError as e:
            return make_entry(name, chain_id, None, f"anchor object {name} is unreadable: {e}")
        return make_entry(name, chain_id, _decode(data))

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
        out = [self._entry(key, vs, chain_id) for key, vs in sorted(versions.items())]
        return sorted(out, key=_sort_key)

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

    def _entry(self, key: str, versions: tuple[list[str], bool], chain_id: str) -> AnchorEntry:
        name = f"s3://{self.bucket}/{key}"
        version_ids, deleted = versions
        texts = []
        for version_id in version_ids:
            try:
                body = self.client.get_object(Bucket=self.bucket, Key=key,
                                              VersionId=version_id)["Body"].read()
            except Exception as e:
                return make_entry(name, chain_id, None, f"anchor object {name} is unreadable: {e}")
            texts.append(_decode(body))
        if not texts:
            return make_entry(name, chain_id, None, f"anchor object {name} was deleted")
        entry = make_entry(name, chain_id, texts[0])
        if deleted:
            return _with_error(entry, f"anchor object {name} was deleted (a delete marker"
                                      " hides it; its first version is reported)")
        if any(t != texts[0] for t in texts):
            return _with_error(entry, f"anchor object {name} was rewritten: {len(texts)}"
                                      " versions differ (its first version is reported)")
        return entry


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
