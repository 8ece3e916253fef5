"""The engine lane of the ledger: a whole group of requests sealed by the embedded
engine, with Python touching the group, not its records (DESIGN.md, "Hot paths").

Per group, sealed under the ledger's seal lock, stored under its store lock (the
next group is sealed while this one is stored; see ``Ledger._commit_engine``):

1. the requests' bytes, concatenated, go to a file on tmpfs (one ``ExportRequest``);
2. the engine decodes, splits and checks them (``store/ingest_sql.EngineIngest.stage``);
3. the few suspects are judged by the reference (``ingest.validate`` and the API
   key's scope) record by record: it gives the exact reason, or clears them; the
   records that carry logprobs get their payload text from the reference too;
4. the engine chooses what to store (not refused, first of its id, not already in
   the ledger nor in the group sealed before it, which may still be being stored),
   numbers and hashes it, and hands back the leaf hashes;
5. the chain hashes are computed here from the leaf hashes (sequential: compiled
   code when it is built, see ``chain_blob``), and the engine stores payloads, then
   envelopes. The acknowledgement follows that insert.

What the reference path does for one record, this does for the group; the tests
hold the two equal (tests/unit/test_engine_lane.py).
"""

from __future__ import annotations

import os
import shutil
import struct
import tempfile
import time
from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence

from clickhouse_connect.driver.exceptions import DatabaseError

from aitrail.record.event_types import PARTS_BY_NAME, reader
from aitrail_collector import native
from aitrail_collector.config import Limits
from aitrail_collector.errors import StoreError
from aitrail_collector.ingest.validate import validate
from aitrail_collector.store.client import Store
from aitrail_collector.store.ingest_sql import Call, EngineIngest


class EngineCannotRead(StoreError):
    """The engine's Protobuf reader refused a group that upb had accepted (a field sent
    with another wire type is an unknown field to upb, an error to the engine). Nothing
    was written: the ledger seals the group by the reference lane instead."""


_LOGPROBS = reader(PARTS_BY_NAME["model_call"].by_key("logprobs"))


def chain_blob(prev: bytes, leaves: bytes) -> bytes:
    """The chain hashes of ``leaves`` (n x 32 bytes) after ``prev``, n x 32 bytes: in C
    when the install built it (aitrail_collector.native), else the same in Python."""
    return native.chain_hashes(prev, leaves)


_PREFIX = "aitrail-ingest-"


def _work_dir() -> str:
    """A private directory for the group files: on tmpfs when there is one, so a
    group's bytes never touch a disk before the insert. Named after this process, so
    the directories of collectors that were killed can be found and removed."""
    shm = "/dev/shm"
    base = shm if os.path.isdir(shm) and os.access(shm, os.W_OK) else tempfile.gettempdir()
    for name in os.listdir(base):
        if name.startswith(_PREFIX):
            pid = name[len(_PREFIX):].split("-")[0]
            if pid.isdigit() and not _alive(int(pid)):
                shutil.rmtree(os.path.join(base, name), ignore_errors=True)
    return tempfile.mkdtemp(prefix=f"{_PREFIX}{os.getpid()}-", dir=base)  # mode 0700


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive, and not ours to clean
        return True
    return True


def _rowbinary_texts(rows: Sequence[tuple[int, str]]) -> bytes:
    """RowBinary of (r UInt64, t String) rows: for the few records with logprobs."""
    out = bytearray()
    for r, text in rows:
        data = text.encode("utf-8")
        out += struct.pack("<Q", r) + _varint(len(data)) + data
    return bytes(out)


@dataclass(frozen=True)
class Sealed:
    """A group sealed and not yet stored: the chain head it was sealed after, the head
    it ends at, and its leaf hashes by seq (n x 32 bytes; none when every record was a
    duplicate or refused)."""
    base: tuple[int, bytes]
    end: tuple[int, bytes]
    leaves: bytes


class EngineLane:
    """One committing thread's lane: its work directory, and the work tables of its own
    engine session (a group is sealed and stored by the thread that took it)."""

    def __init__(self, store: Store, chain_id: str, limits: Limits,
                 clock: Callable[[], int] = time.time_ns):
        self.limits = limits
        self.clock = clock
        self.work_dir = _work_dir()
        self.sql = EngineIngest(store, chain_id, limits, self.work_dir)

    def close(self) -> None:
        self.sql.clear()
        shutil.rmtree(self.work_dir, ignore_errors=True)

    def seal(self, group: Sequence[Any], head_seq: int, head_hash: bytes,
             in_flight: Optional[str] = None) -> Sealed:
        """Seal the requests of ``group`` (each with ``raw``, ``request``, ``sender`` and
        ``result``) after (``head_seq``, ``head_hash``), and fill in each result; nothing
        is stored yet. ``in_flight``: the record ids file (``ids_path``) of the group
        sealed before this one and perhaps still being stored: its ids are duplicates
        here though the store does not hold them yet."""
        sql = self.sql
        sql.clear()  # a group sealed again starts from its requests
        # Recreated when gone: a tmpfs directory can be swept under a running collector.
        os.makedirs(sql.records_dir, mode=0o700, exist_ok=True)
        for k, p in enumerate(group, start=1):
            p.result.rejected = []
            with open(sql.records_file(k), "wb") as fh:
                fh.write(_varint(len(p.raw)))
                fh.write(p.raw)
        calls = [Call(len(p.request.records), p.sender.kind, p.sender.id,
                      p.sender.service or "", p.sender.task_prefixes, len(p.raw))
                 for p in group]
        now = self.clock()
        try:
            sql.stage(calls, now, now)
        except DatabaseError as exc:
            raise EngineCannotRead(str(exc)) from exc
        cleared, texts = self._judge(group, sql.flagged(), now)
        if texts:
            with open(sql.logprobs_path, "wb") as fh:
                fh.write(_rowbinary_texts(texts))
        leaves = sql.seal(head_seq, cleared, bool(texts), os.urandom(32), in_flight)
        sealed = sql.outcome()
        for k, p in enumerate(group, start=1):
            p.result.accepted = sealed.get(k, 0)
            p.result.duplicates = (len(p.request.records) - p.result.accepted
                                   - len(p.result.rejected))
        if not leaves:
            return Sealed((head_seq, head_hash), (head_seq, head_hash), b"")
        chains = chain_blob(head_hash, leaves)
        with open(sql.chains_path, "wb") as fh:
            fh.write(chains)
        with open(sql.prevs_path, "wb") as fh:
            fh.write(head_hash + chains[:-32])
        sql.write_ids()
        return Sealed((head_seq, head_hash), (head_seq + len(leaves) // 32, chains[-32:]),
                      leaves)

    def _judge(self, group: Sequence[Any], flagged: Sequence[tuple[int, bool, bool]],
               now: int) -> tuple[list[int], list[tuple[int, str]]]:
        """The reference's word on the engine's suspects (each refused with its reason
        into its call's result, or cleared), and the logprobs text of the records that
        carry it."""
        cleared, texts = [], []
        for n, suspect, has_logprobs in flagged:
            p, index = group[(n >> 32) - 1], n & 0xFFFFFFFF
            rec = p.request.records[index]
            if suspect:
                reason = validate(rec, now, self.limits) or p.sender.refuses(rec)
                if reason is not None:
                    p.result.rejected.append((index, rec.record_id[:64], reason))
                    continue
                cleared.append(n)
            if has_logprobs:
                texts.append((n, _LOGPROBS(rec.model_call)))
        return cleared, texts

    def discard(self) -> None:
        """Drop the work tables and files of a group that will not be stored."""
        self.sql.clear()

    def store(self, sealed: Sealed) -> None:
        """Store what the last ``seal`` sealed: payloads, then envelopes. Durable when
        this returns; the group's work tables and files are dropped either way."""
        try:
            if sealed.leaves:
                self.sql.store_sealed(sealed.base[0])
        finally:
            self.sql.clear()

    @property
    def ids_path(self) -> str:
        """The record ids of the last group this lane sealed (``seal``'s ``in_flight``
        for the group sealed after it)."""
        return self.sql.ids_path


def _varint(n: int) -> bytes:
    """Unsigned LEB128: protobuf's length prefix, and RowBinary's."""
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)
