"""Signed checkpoints: the collector commits to its chain's Merkle root on a cadence.

A checkpoint (``aitrail.verify.checkpoint``) is issued every ``interval`` seconds when
records arrived, at least every ``max_quiet`` seconds when none did (so a quiet
period is itself signed), at start-up when the chain moved since the last one,
and on clean shutdown. Each is stored in ClickHouse and written to the anchor
store, which a database administrator does not control; a checkpoint the anchor
did not take yet is retried on the next tick.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Optional

from aitrail.errors import AitrailError
from aitrail.verify.checkpoint import Checkpoint, CheckpointError, SignedCheckpoint, key_id, sign
from aitrail.verify.hashes import ZERO_HASH
from aitrail_collector.anchor.stores import AnchorConflict, AnchorError, AnchorStore
from aitrail_collector.errors import StoreError
from aitrail_collector.ledger.group_commit import Ledger
from aitrail_collector.store.client import Store

log = logging.getLogger("aitrail.collector")



class NotCovered(AitrailError, LookupError):
    """No checkpoint holds the record, and none could be issued that does."""


class Checkpointer:
    def __init__(self, store: Store, ledger: Ledger, private_key, anchor: AnchorStore,
                 interval: float, max_quiet: float):
        self.store, self.ledger, self.anchor = store, ledger, anchor
        self.chain_id = ledger.chain_id
        self._key = private_key
        self.key_id = key_id(private_key.public_key())
        self.interval, self.max_quiet = interval, max_quiet
        self._lock = threading.Lock()   # one checkpoint at a time
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        stored = store.checkpoints(self.chain_id)
        self.last: Optional[SignedCheckpoint] = self._parse_newest(stored)
        # A crash during an anchor outage leaves the newest ones unanchored: offer
        # them again (put is write-once and idempotent).
        self._unanchored: list[SignedCheckpoint] = []
        for _, _, text, _ in stored[-16:-1]:
            try:
                self._unanchored.append(SignedCheckpoint.parse(text))
            except CheckpointError:
                pass  # altered in the database; verify names it, the anchor keeps the original
        if self.last is not None:
            self._unanchored.append(self.last)

    def _parse_newest(self, stored: list) -> Optional[SignedCheckpoint]:
        """The newest stored checkpoint, which the next one must name as ``prev``.

        One that no longer parses was altered in the database; signing on top of it
        would hide that, so the collector refuses to start, as on a truncated chain.
        """
        if not stored:
            return None
        number, _, text, _ = stored[-1]
        try:
            return SignedCheckpoint.parse(text)
        except CheckpointError as exc:
            raise StoreError(
                f"chain {self.chain_id!r}: the newest stored checkpoint (#{number}) does not "
                f"parse ({exc}); it was altered in the database. Run `aitrail verify` and "
                "investigate before ingesting again.") from None

    # ------------------------------------------------------------ issuing
    def issue(self, force: bool = False) -> Optional[SignedCheckpoint]:
        """Sign and store a checkpoint of the chain as durably stored now.

        Without ``force``, only when records arrived since the last one or the
        last one is older than ``max_quiet``.
        """
        with self._lock:
            size, root, head_hash, frontier = self.ledger.snapshot()
            now = time.time_ns()
            last = self.last
            if last is not None and not force:
                quiet = (now - last.checkpoint.time_ns) / 1e9
                if size == last.checkpoint.size and quiet < self.max_quiet:
                    self._sync_anchor()
                    return None
            cp = Checkpoint(origin=self.chain_id,
                            number=last.checkpoint.number + 1 if last else 1,
                            size=size, root=root, chain_hash=head_hash, time_ns=now,
                            prev=last.digest() if last else ZERO_HASH, key_id=self.key_id)
            signed = sign(cp, self._key)
            self.store.insert_checkpoint(self.chain_id, cp.number, size, now, signed.text(),
                                         frontier)
            self.last = signed
            self._unanchored.append(signed)
            self._sync_anchor()
            log.info("checkpoint %d of chain %s: %d records", cp.number, self.chain_id, size)
            return signed

    def covering(self, seq: int) -> SignedCheckpoint:
        """The first stored checkpoint whose tree holds record ``seq``; issues one
        when the record is newer than every checkpoint."""
        for _, size, text, _ in self.store.checkpoints(self.chain_id):
            if size >= seq:
                return SignedCheckpoint.parse(text)
        signed = self.issue(force=True)
        if signed is None or signed.checkpoint.size < seq:
            raise NotCovered(f"record seq {seq} is not sealed into chain {self.chain_id}")
        return signed

    def _sync_anchor(self) -> None:
        # Put is write-once and idempotent, so a retry after a partial failure is safe.
        while self._unanchored:
            signed = self._unanchored[0]
            try:
                self.anchor.put(signed)
            except AnchorConflict as exc:
                # One of the two copies was altered after anchoring. Retrying can
                # never succeed and would hold back every later checkpoint; verify
                # names the difference.
                log.error("checkpoint %d of chain %s differs from the anchor's copy, which "
                          "stays (%s); run `aitrail verify`", signed.checkpoint.number,
                          self.chain_id, exc)
            except (AnchorError, OSError) as exc:
                log.error("anchor %s did not take checkpoint %d: %s (retrying next tick)",
                          self.anchor.describe(), signed.checkpoint.number, exc)
                return
            self._unanchored.pop(0)

    # ------------------------------------------------------------ the cadence
    def start(self) -> "Checkpointer":
        size = self.ledger.snapshot()[0]
        if self.last is None or self.last.checkpoint.size != size:
            self._issue_logged(force=True)
        else:
            self._issue_logged(force=False)
        self._thread = threading.Thread(target=self._run, name="checkpoints", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        tick = min(self.interval, self.max_quiet)
        while not self._stop.wait(tick):
            self._issue_logged(force=False)

    def _issue_logged(self, force: bool) -> None:
        try:
            self.issue(force=force)
        except Exception:  # noqa: BLE001 - the next tick retries; ingest goes on
            log.exception("could not issue a checkpoint for chain %s", self.chain_id)

    def stop(self) -> None:
        """Stop the cadence and issue the closing checkpoint."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
        self._issue_logged(force=True)
