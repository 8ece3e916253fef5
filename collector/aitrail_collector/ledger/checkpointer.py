"""Signed checkpoints: the collector commits to its chain's Merkle root on a cadence.

A checkpoint (``aitrail.verify.checkpoint``) is issued at most ``latency`` seconds
after the first acknowledged record no checkpoint covers yet (the cadence ticks
every ``latency`` seconds and signs when the chain moved), at least every
``max_quiet`` seconds when nothing arrived (so a quiet period is itself signed),
at start-up when the chain moved since the last one, on clean shutdown, and on
demand for a proof of a record none covers yet (at most one such per
``interval``; other requests wait for it or for the cadence). Each is stored in
ClickHouse and written to the anchor store, which a database administrator does
not control: on every tick, whatever became pending since the last anchor write
goes to the anchor as one object (``AnchorStore.put_batch``); a write the anchor
refused is retried on the next tick.

So a record acknowledged at time t is under an anchored checkpoint by
t + ``latency`` (plus the time to sign and write): after a ``kill -9``, at most
that much acknowledged history can be deleted without the anchor showing it.
At start the collector refuses a database whose newest checkpoint is older than
the anchor's: that is such a deletion.
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
    def __init__(self, store: Store, ledger: Ledger, private_key, anchor: AnchorStore, *,
                 latency: float, interval: float, max_quiet: float):
        self.store, self.ledger, self.anchor = store, ledger, anchor
        self.chain_id = ledger.chain_id
        self._key = private_key
        self.key_id = key_id(private_key.public_key())
        self.latency, self.interval, self.max_quiet = latency, interval, max_quiet
        self._lock = threading.Lock()   # one checkpoint at a time
        self._anchor_lock = threading.Lock()  # one anchor write at a time
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        # On-demand checkpoints: notified on every new checkpoint; at most one per interval.
        self._changed = threading.Condition()
        self._demand_busy = False
        self._last_demand: Optional[float] = None
        self.demand_issued = 0
        stored = store.checkpoints(self.chain_id)
        self.last: Optional[SignedCheckpoint] = self._parse_newest(stored)
        # A crash during an anchor outage leaves the newest ones unanchored: offer
        # them again, those the anchor does not hold yet.
        recent = stored[-16:]
        after = recent[0][0] - 1 if recent else 0
        try:
            held = anchor.numbers_after(self.chain_id, after)
        except (AnchorError, OSError) as exc:
            log.error("anchor %s cannot be listed (%s): offering the newest checkpoints again",
                      anchor.describe(), exc)
            held = {}
        self._refuse_if_anchor_is_ahead(set(held), self.last)
        self._unanchored: list[SignedCheckpoint] = []
        # Those held in an object of their own are offered again one by one: a put of
        # the same text is a no-op, and one altered in the database shows as a conflict.
        self._recheck: list[SignedCheckpoint] = []
        for number, _, text, _ in recent:
            try:
                signed = SignedCheckpoint.parse(text)
            except CheckpointError:
                continue  # altered in the database; verify names it, the anchor keeps the original
            if number not in held:
                self._unanchored.append(signed)
            elif held[number]:
                self._recheck.append(signed)

    def _refuse_if_anchor_is_ahead(self, held: set[int], last: Optional[SignedCheckpoint]) -> None:
        """The anchor holds a checkpoint newer than the database's newest: the database
        lost checkpoints, and with them (almost surely) the records they covered, e.g.
        deleted after a crash. Signing on top would hide that."""
        newest = last.checkpoint.number if last is not None else 0
        ahead = max(held, default=0)
        if ahead > newest:
            raise StoreError(
                f"chain {self.chain_id!r}: the anchor {self.anchor.describe()} holds checkpoint "
                f"#{ahead} but the database's newest is #{newest}: checkpoints (and the records "
                "they cover) were deleted from the database. Run `aitrail verify` and "
                "investigate before ingesting again.")

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
    def issue(self, force: bool = False, anchor: bool = True) -> Optional[SignedCheckpoint]:
        """Sign and store a checkpoint of the chain as durably stored now.

        Without ``force``, only when records arrived since the last one or the
        last one is older than ``max_quiet``. Without ``anchor``, the checkpoint
        waits for the next tick's anchor write (batched with whatever else is pending).
        """
        signed = self._issue(force)
        if anchor:
            self._sync_anchor()
        return signed

    def _issue(self, force: bool) -> Optional[SignedCheckpoint]:
        with self._lock:
            size, root, head_hash, frontier = self.ledger.snapshot()
            now = time.time_ns()
            last = self.last
            if last is not None and not force:
                quiet = (now - last.checkpoint.time_ns) / 1e9
                if size == last.checkpoint.size and quiet < self.max_quiet:
                    return None
            cp = Checkpoint(origin=self.chain_id,
                            number=last.checkpoint.number + 1 if last else 1,
                            size=size, root=root, chain_hash=head_hash, time_ns=now,
                            prev=last.digest() if last else ZERO_HASH, key_id=self.key_id)
            signed = sign(cp, self._key)
            self.store.insert_checkpoint(self.chain_id, cp.number, size, now, signed.text(),
                                         frontier)
            self.last = signed
            with self._anchor_lock:
                self._unanchored.append(signed)
            log.info("checkpoint %d of chain %s: %d records", cp.number, self.chain_id, size)
        with self._changed:
            self._changed.notify_all()
        return signed

    def covering(self, seq: int) -> SignedCheckpoint:
        """The first stored checkpoint whose tree holds record ``seq``. When the record
        is newer than every checkpoint, one is issued on demand, at most one per
        ``interval``: concurrent callers wait for the one being made, later ones for
        the cadence (at most ``latency`` away)."""
        for _, size, text, _ in self.store.checkpoints(self.chain_id):
            if size >= seq:
                return SignedCheckpoint.parse(text)
        deadline = time.monotonic() + self.latency + 30
        with self._changed:
            while True:
                last = self.last
                if last is not None and last.checkpoint.size >= seq:
                    return last
                now = time.monotonic()
                if not self._demand_busy and (self._last_demand is None
                                              or now - self._last_demand >= self.interval):
                    self._demand_busy, self._last_demand = True, now
                    break
                if now >= deadline or self._stop.is_set():
                    raise NotCovered(f"record seq {seq} is not sealed into chain "
                                     f"{self.chain_id} yet; try again in {self.latency:g} s")
                self._changed.wait(min(deadline - now, 1.0))
        try:
            signed = self.issue(force=True, anchor=False)  # anchored with the next tick's batch
            if signed is not None:
                self.demand_issued += 1
        finally:
            with self._changed:
                self._demand_busy = False
                self._changed.notify_all()
        if signed is None or signed.checkpoint.size < seq:
            raise NotCovered(f"record seq {seq} is not sealed into chain {self.chain_id}")
        return signed

    def _sync_anchor(self) -> None:
        """Write every pending checkpoint to the anchor, as one object when several are
        pending (write-once and idempotent, so a retry after a partial failure is safe)."""
        with self._anchor_lock:
            if self._recheck:
                recheck, self._recheck = self._recheck, []
                try:
                    self._put_each(recheck)
                except (AnchorError, OSError) as exc:
                    log.error("anchor %s: could not compare the newest checkpoints: %s",
                              self.anchor.describe(), exc)
            while self._unanchored:
                batch = self._consecutive(self._unanchored)
                try:
                    self.anchor.put_batch(batch)
                except AnchorConflict as exc:
                    if len(batch) > 1:
                        # A batch re-offered with another range: write them one by one.
                        self._put_each(batch)
                    else:
                        # One of the two copies was altered after anchoring. Retrying
                        # can never succeed and would hold back every later checkpoint;
                        # verify names the difference.
                        log.error("checkpoint %d of chain %s differs from the anchor's copy, "
                                  "which stays (%s); run `aitrail verify`",
                                  batch[0].checkpoint.number, self.chain_id, exc)
                except (AnchorError, OSError) as exc:
                    log.error("anchor %s did not take checkpoints %d..%d: %s (retrying next "
                              "tick)", self.anchor.describe(), batch[0].checkpoint.number,
                              batch[-1].checkpoint.number, exc)
                    return
                del self._unanchored[:len(batch)]

    @staticmethod
    def _consecutive(pending: list[SignedCheckpoint]) -> list[SignedCheckpoint]:
        out = [pending[0]]
        for signed in pending[1:]:
            if signed.checkpoint.number != out[-1].checkpoint.number + 1:
                break
            out.append(signed)
        return out

    def _put_each(self, batch: list[SignedCheckpoint]) -> None:
        for signed in batch:
            try:
                self.anchor.put(signed)
            except AnchorConflict as exc:
                log.error("checkpoint %d of chain %s differs from the anchor's copy, which "
                          "stays (%s); run `aitrail verify`", signed.checkpoint.number,
                          self.chain_id, exc)

    # ------------------------------------------------------------ the cadence
    def start(self) -> "Checkpointer":
        size = self.ledger.snapshot()[0]
        if self.last is None or self.last.checkpoint.size != size:
            self._issue_logged(force=True)
        else:
            self._issue_logged(force=False)
        self._tick_origin_ns = time.time_ns()
        self._thread = threading.Thread(target=self._run, name="checkpoints", daemon=True)
        self._thread.start()
        return self

    def next_due_ns(self) -> Optional[int]:
        """When the cadence signs the next checkpoint (its next tick when records wait
        for one, else when the quiet limit is reached); None before start."""
        origin = getattr(self, "_tick_origin_ns", None)
        if origin is None:
            return None
        tick_ns = int(min(self.latency, self.max_quiet) * 1e9)
        now = time.time_ns()
        last = self.last
        moved = last is None or self.ledger.snapshot()[0] != last.checkpoint.size
        at = now if moved else max(now, last.checkpoint.time_ns + int(self.max_quiet * 1e9))
        return origin + -(-(at - origin) // tick_ns) * tick_ns  # the first tick from then

    def _run(self) -> None:
        tick = min(self.latency, self.max_quiet)
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
        with self._changed:
            self._changed.notify_all()
        if self._thread is not None:
            self._thread.join(10)
        self._issue_logged(force=True)
