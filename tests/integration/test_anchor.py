"""The anchor store: a directory, and S3 against moto's server on a real local socket."""

from __future__ import annotations

import hashlib
import itertools
import json
import os
from datetime import datetime, timedelta, timezone

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from aitrail.verify.checkpoint import Checkpoint, SignedCheckpoint, key_id, sign
from aitrail.verify.hashes import ZERO_HASH
from aitrail_collector.anchor.stores import (
    AnchorError,
    DirectoryAnchor,
    S3Anchor,
    open_anchor,
)
from aitrail_collector.config import CollectorConfig

KEY = Ed25519PrivateKey.generate()
KID = key_id(KEY.public_key())


def checkpoints(origin: str = "main", count: int = 3, salt: bytes = b"") -> list[SignedCheckpoint]:
    """``count`` linked checkpoints; ``salt`` changes their roots (a conflicting history)."""
    out: list[SignedCheckpoint] = []
    prev = ZERO_HASH
    for n in range(1, count + 1):
        cp = Checkpoint(origin=origin, number=n, size=10 * n,
                        root=hashlib.sha256(salt + b"root%d" % n).digest(),
                        chain_hash=hashlib.sha256(salt + b"chain%d" % n).digest(),
                        time_ns=1_795_847_400_000_000_000 + n, prev=prev, key_id=KID)
        out.append(sign(cp, KEY))
        prev = out[-1].digest()
    return out


# --------------------------------------------------------------------------- directory


def test_directory_put_and_list(tmp_path):
    store = DirectoryAnchor(tmp_path / "anchor")
    cps = checkpoints()
    for signed in (cps[2], cps[0], cps[1]):  # out of order on purpose
        path = store.put(signed)
        n = signed.checkpoint.number
        assert path == str(tmp_path / "anchor" / "main" / f"{n:012d}.checkpoint")
        with open(path, encoding="utf-8") as f:
            assert f.read() == signed.text()
    assert store.list("main") == cps
    assert store.chains() == ["main"]
    assert store.list("other") == []
    assert "anchor" in store.describe()


def test_directory_write_once(tmp_path):
    store = DirectoryAnchor(tmp_path)
    first = checkpoints()[0]
    path = store.put(first)
    before = os.stat(path)
    assert store.put(first) == path  # the same text again: a no-op
    after = os.stat(path)
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    conflicting = checkpoints(salt=b"x")[0]
    with pytest.raises(AnchorError, match="different checkpoint main#1"):
        store.put(conflicting)
    with open(path, encoding="utf-8") as f:
        assert f.read() == first.text()
    assert sorted(os.listdir(tmp_path / "main")) == ["000000000001.checkpoint"]  # no temp files


def test_directory_reports_bad_objects(tmp_path):
    store = DirectoryAnchor(tmp_path)
    cps = checkpoints(count=3)
    for signed in cps:
        store.put(signed)
    chain_dir = tmp_path / "main"
    (chain_dir / "000000000002.checkpoint").write_text(cps[1].text().replace("size 20", "size 21"))
    (chain_dir / "000000000004.checkpoint").write_text(cps[0].text())  # #1 copied as #4
    (chain_dir / "notes.txt").write_text("hello")
    (chain_dir / "000000000005.checkpoint").write_bytes(b"\xff\xfe")
    (chain_dir / ".tmp-abc").write_text("interrupted write")  # ignored: never linked in

    entries = store.entries("main")
    assert [e.number for e in entries] == [1, 2, 3, 4, 5, None]
    assert [e.error is None for e in entries] == [True, True, True, False, False, False]
    # A text edit that still parses is the signature check's job, not the store's.
    assert entries[1].signed is not None and entries[1].signed != cps[1]
    assert "holds main#1, expected main#4" in entries[3].error
    assert "not UTF-8" in entries[4].error
    assert "notes.txt does not parse" in entries[5].error

    (chain_dir / "000000000003.checkpoint").write_text("garbage\n")
    entries = store.entries("main")
    assert entries[2].signed is None and entries[2].text == "garbage\n"
    bad_name = chain_dir / "000000000003.checkpoint"
    assert f"anchor object {bad_name} does not parse" in entries[2].error
    with pytest.raises(AnchorError, match="000000000003.checkpoint does not parse"):
        store.list("main")


def test_directory_rejects_unsafe_chain_ids(tmp_path):
    store = DirectoryAnchor(tmp_path)
    for bad in ("..", "a/b", ""):
        with pytest.raises(ValueError):
            store.entries(bad)


def test_open_anchor(tmp_path):
    assert isinstance(open_anchor(str(tmp_path)), DirectoryAnchor)
    d = open_anchor(f"file://{tmp_path}/a%20b")
    assert isinstance(d, DirectoryAnchor) and d.root == tmp_path / "a b"
    s3 = open_anchor("s3://bucket/some/prefix/", client=object())
    assert isinstance(s3, S3Anchor)
    assert (s3.bucket, s3.prefix) == ("bucket", "some/prefix/")
    assert open_anchor("s3://bucket", client=object()).prefix == ""
    for bad, message in [("", "empty"), ("gs://b/p", "unsupported scheme 'gs'"),
                         ("http://x/y", "unsupported scheme"), ("s3:///p", "no bucket"),
                         ("file://host/p", "file:///")]:
        with pytest.raises(AnchorError, match=message):
            open_anchor(bad)


# --------------------------------------------------------------------------- S3 (moto server)

_bucket_ids = itertools.count()


@pytest.fixture(scope="module")
def s3_endpoint():
    """moto's S3 in server mode on 127.0.0.1 (a real HTTP socket), with dummy credentials."""
    from moto.server import ThreadedMotoServer

    with pytest.MonkeyPatch.context() as mp:
        for name in ("AWS_PROFILE", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"):
            mp.delenv(name, raising=False)
        mp.setenv("AWS_ACCESS_KEY_ID", "testing")
        mp.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        mp.setenv("AWS_DEFAULT_REGION", "us-east-1")
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        mp.setenv("AWS_ENDPOINT_URL", endpoint)  # boto3's normal endpoint configuration
        try:
            yield endpoint
        finally:
            server.stop()


@pytest.fixture
def s3(s3_endpoint):
    import boto3

    return boto3.client("s3", endpoint_url=s3_endpoint)


def new_bucket(s3, locked: bool) -> str:
    name = f"anchor-{'locked' if locked else 'plain'}-{next(_bucket_ids)}"
    if locked:
        s3.create_bucket(Bucket=name, ObjectLockEnabledForBucket=True)
    else:
        s3.create_bucket(Bucket=name)
    return name


def _assert_retained(head: dict, days: int) -> None:
    assert head["ObjectLockMode"] == "COMPLIANCE"
    expected = datetime.now(timezone.utc) + timedelta(days=days)
    assert abs(head["ObjectLockRetainUntilDate"] - expected) < timedelta(minutes=5)


def test_s3_object_lock_compliance(s3):
    bucket = new_bucket(s3, locked=True)
    store = S3Anchor(bucket, prefix="/audit/eu/", retention_days=30)  # endpoint from env
    cps = checkpoints()
    for signed in cps:
        url = store.put(signed)
        key = f"audit/eu/main/{signed.checkpoint.number:012d}.checkpoint"
        assert url == f"s3://{bucket}/{key}"
        head = s3.head_object(Bucket=bucket, Key=key)
        _assert_retained(head, 30)
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        assert body.decode("utf-8") == signed.text()
    assert "COMPLIANCE" in store.describe()
    assert store.list("main") == cps
    assert store.chains() == ["main"]

    # moto enforces the lock on deleting a locked version (it does not enforce, and so this
    # test does not check, the ban on shortening a COMPLIANCE retention date).
    key = "audit/eu/main/000000000001.checkpoint"
    version = s3.head_object(Bucket=bucket, Key=key)["VersionId"]
    with pytest.raises(s3.exceptions.ClientError) as info:
        s3.delete_object(Bucket=bucket, Key=key, VersionId=version)
    assert info.value.response["Error"]["Code"] == "AccessDenied"
    assert s3.get_object(Bucket=bucket, Key=key, VersionId=version)["Body"].read() \
        == cps[0].text().encode()


def test_s3_default_retention_is_the_collectors(s3):
    bucket = new_bucket(s3, locked=True)
    store = open_anchor(f"s3://{bucket}/p")
    store.put(checkpoints(count=1)[0])
    head = s3.head_object(Bucket=bucket, Key="p/main/000000000001.checkpoint")
    _assert_retained(head, CollectorConfig.retention_days)
    assert CollectorConfig.retention_days == 6 * 366


def test_s3_without_object_lock(s3):
    bucket = new_bucket(s3, locked=False)
    store = S3Anchor(bucket)
    cps = checkpoints(origin="chain-b", count=2)
    for signed in cps:
        store.put(signed)
    head = s3.head_object(Bucket=bucket, Key="chain-b/000000000001.checkpoint")
    assert "ObjectLockMode" not in head and "ObjectLockRetainUntilDate" not in head
    assert store.list("chain-b") == cps
    assert "object lock: off" in store.describe()
    with pytest.raises(AnchorError, match="does not have Object Lock"):
        S3Anchor(bucket, object_lock=True).put(cps[0])


def test_s3_write_once(s3):
    bucket = new_bucket(s3, locked=True)
    store = S3Anchor(bucket, retention_days=1)
    first = checkpoints(count=1)[0]
    url = store.put(first)
    assert store.put(first) == url  # no-op: no second version written
    key = "main/000000000001.checkpoint"
    assert len(s3.list_object_versions(Bucket=bucket, Prefix=key)["Versions"]) == 1
    with pytest.raises(AnchorError, match="different checkpoint main#1"):
        store.put(checkpoints(count=1, salt=b"x")[0])
    assert len(s3.list_object_versions(Bucket=bucket, Prefix=key)["Versions"]) == 1
    assert store.list("main") == [first]


def test_s3_put_is_atomic_create_if_absent(s3, monkeypatch):
    """A writer whose existence check raced another writer is stopped by IfNoneMatch."""
    bucket = new_bucket(s3, locked=False)
    store = S3Anchor(bucket)
    store.put(checkpoints(count=1)[0])
    real_get = store._get
    calls = []

    def stale_first_get(name: str):
        calls.append(name)
        return None if len(calls) == 1 else real_get(name)  # the first look is stale

    monkeypatch.setattr(store, "_get", stale_first_get)
    with pytest.raises(AnchorError, match="different checkpoint"):
        store.put(checkpoints(count=1, salt=b"x")[0])
    assert len(calls) == 2  # the put went to the server, which refused it
    assert store.list("main") == checkpoints(count=1)


def test_s3_reports_rewritten_deleted_and_bad_objects(s3):
    bucket = new_bucket(s3, locked=True)
    store = S3Anchor(bucket, retention_days=1)
    cps = checkpoints(count=4)
    for signed in cps:
        store.put(signed)
    # Object Lock keeps old versions, but a new version or a delete marker can hide them.
    s3.put_object(Bucket=bucket, Key="main/000000000002.checkpoint",
                  Body=checkpoints(count=2, salt=b"x")[1].text().encode())
    s3.delete_object(Bucket=bucket, Key="main/000000000003.checkpoint")
    s3.put_object(Bucket=bucket, Key="main/000000000005.checkpoint", Body=b"not a checkpoint")

    entries = store.entries("main")
    assert [e.number for e in entries] == [1, 2, 3, 4, 5]
    assert entries[0].error is None and entries[3].error is None
    assert "rewritten" in entries[1].error
    assert entries[1].signed == cps[1]  # the first (locked) version is the one reported
    assert "was deleted" in entries[2].error and entries[2].signed == cps[2]
    assert f"anchor object s3://{bucket}/main/000000000005.checkpoint does not parse" \
        in entries[4].error
    with pytest.raises(AnchorError, match="rewritten"):
        store.list("main")


def test_s3_chains_and_prefix_isolation(s3):
    bucket = new_bucket(s3, locked=False)
    a = S3Anchor(bucket, prefix="a")
    b = S3Anchor(bucket, prefix="b")
    a.put(checkpoints(origin="one", count=1)[0])
    a.put(checkpoints(origin="two", count=1)[0])
    b.put(checkpoints(origin="three", count=1)[0])
    assert a.chains() == ["one", "two"]
    assert b.chains() == ["three"]
    assert a.list("three") == []


def test_s3_unreachable_bucket_is_an_anchor_error(s3):
    store = S3Anchor("no-such-bucket-here")
    with pytest.raises(AnchorError, match="no-such-bucket-here"):
        store.put(checkpoints(count=1)[0])


def test_collector_anchors_checkpoints_in_s3_and_verify_compares_them(s3, tmp_path):
    """A real collector process anchoring to the S3 server: every checkpoint it signs is
    an Object-Locked object, and verify --anchor s3://... holds the database to them."""
    from support import CollectorProc, cli, engine, make_record, stub

    from aitrail.v1 import audit_pb2 as pb

    bucket = new_bucket(s3, locked=True)
    col = CollectorProc(tmp_path / "store", "--anchor", f"s3://{bucket}/prod",
                        "--retention-days", "30").start()  # the subprocess inherits AWS_*
    try:
        recs = [make_record(task_id=f"T-s3-{i}") for i in range(5)]
        assert stub(col.grpc).Export(pb.ExportRequest(records=recs), timeout=60).accepted == 5
    finally:
        col.stop()
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]]
    db = engine(col.data_dir, "SELECT number, text FROM aitrail.checkpoints ORDER BY number")[0]
    assert keys == [f"prod/main/{n:012d}.checkpoint" for n, _ in db] and len(db) == 2
    for key, (_, text) in zip(keys, db):
        obj = s3.get_object(Bucket=bucket, Key=key)
        assert obj["Body"].read().decode() == text
        _assert_retained(obj, 30)
    out = cli("verify", "--data-dir", str(col.data_dir), "--anchor", f"s3://{bucket}/prod",
              "--format", "json")
    report = json.loads(out.stdout)
    assert out.returncode == 0 and report["chains"][0]["checkpoints"]["anchored"] == 2, report
    # The database's copy of checkpoint 2 rewritten: the S3 copy gives it away.
    engine(col.data_dir, "ALTER TABLE aitrail.checkpoints UPDATE text = replace(text, 'size 5',"
                         " 'size 4') WHERE number = 2 SETTINGS mutations_sync = 1")
    out = cli("verify", "--data-dir", str(col.data_dir), "--anchor", f"s3://{bucket}/prod",
              "--format", "json")
    kinds = {f["kind"] for f in json.loads(out.stdout)["findings"]}
    assert out.returncode == 1 and "checkpoint_differs_from_anchor" in kinds
