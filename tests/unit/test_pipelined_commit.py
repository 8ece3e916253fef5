"""Group k+1 is sealed while group k is stored (ledger/group_commit.py, the two locks).

The engine lane's seal of the next group runs beside the store of the one before it;
these tests hold that overlap in place (the first group's store waits until the
second group's seal is done) and check what must not change with it:

* a record id of the group being stored is a duplicate in the next group, though the
  store does not hold it yet;
* when the first group's store fails, the second group, sealed on a head that never
  became durable, is sealed again on the store's head (its copy of a failed record is
  then stored, not taken for a duplicate), and the chain verifies.

The real embedded engine, in this process; the store's failure is raised in the lane.
"""

from __future__ import annotations

import random
import threading

import pytest
from test_engine_lane import _fresh, _ordinary
from test_properties import NOW

from aitrail.v1 import audit_pb2 as pb
from aitrail_collector.audit.verify import verify_store
from aitrail_collector.errors import StoreError
from aitrail_collector.ledger.engine_lane import EngineLane
from aitrail_collector.ledger.group_commit import Ledger
from aitrail_collector.store.client import Store
from aitrail_collector.store.schema import DB

WAIT = 60  # seconds: generous, the machine is shared; a hang fails the test


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    s = Store(f"chdb://{tmp_path_factory.mktemp('pipelined')}/data")
    s.ensure_schema()
    yield s
    s.close()


class Overlap:
    """EngineLane.seal and .store, wrapped: the first store waits until a second
    seal has finished (or fails then, with ``fail``)."""

    def __init__(self, monkeypatch, fail: bool = False):
        self.fail = fail
        self.seals: list[str] = []
        self.first_storing = threading.Event()
        self.second_sealed = threading.Event()
        self.stores = 0
        seal, store_ = EngineLane.seal, EngineLane.store

        def sealing(lane, group, *a, **k):
            out = seal(lane, group, *a, **k)
            self.seals.append(group[0].request.records[0].record_id)
            if len(self.seals) == 2:
                self.second_sealed.set()
            return out

        def storing(lane, sealed):
            self.stores += 1
            if self.stores == 1:
                self.first_storing.set()
                assert self.second_sealed.wait(WAIT), "the next group was not sealed meanwhile"
                if self.fail:
                    lane.discard()
                    raise StoreError("the store refused the insert (test)")
            return store_(lane, sealed)

        monkeypatch.setattr(EngineLane, "seal", sealing)
        monkeypatch.setattr(EngineLane, "store", storing)


def _request(records) -> tuple[bytes, pb.ExportRequest]:
    raw = pb.ExportRequest(records=records).SerializeToString()
    return raw, pb.ExportRequest.FromString(raw)


def _two_groups(store, overlap: Overlap):
    """Group A (5 records), then group B (A's last record again and 3 more) sent once
    A is being stored; each call's answer or error."""
    _fresh(store)
    rng = random.Random(17)
    a = [_ordinary(rng, i) for i in range(5)]
    b = [a[-1]] + [_ordinary(rng, 10 + i) for i in range(3)]
    ledger = Ledger(store, "main", engine_min_records=0)
    ledger.clock = lambda: NOW
    answers: dict[str, object] = {}

    def send(name, records):
        try:
            answers[name] = ledger.append_request(*_request(records))
        except Exception as exc:  # noqa: BLE001 - the test looks at it
            answers[name] = exc

    first = threading.Thread(target=send, args=("a", a))
    first.start()
    try:
        assert overlap.first_storing.wait(WAIT)
        second = threading.Thread(target=send, args=("b", b))
        second.start()
        second.join(WAIT)
        first.join(WAIT)
        assert not first.is_alive() and not second.is_alive()
        return a, b, answers, ledger.head_seq
    finally:
        ledger.close()


def _stored_ids(store) -> list[str]:
    return [r[0] for r in store.query(
        f"SELECT record_id FROM {DB}.envelopes ORDER BY seq").result_rows]


def test_the_next_group_is_sealed_while_one_is_stored_and_takes_its_ids_as_stored(
        store, monkeypatch):
    overlap = Overlap(monkeypatch)
    a, b, answers, head = _two_groups(store, overlap)
    ra, rb = answers["a"], answers["b"]
    assert (ra.accepted, ra.duplicates, ra.rejected) == (5, 0, [])
    assert (rb.accepted, rb.duplicates, rb.rejected) == (3, 1, [])
    assert len(overlap.seals) == 2  # B's seal on A's sealed head held: not sealed again
    assert _stored_ids(store) == [r.record_id for r in a + b[1:]]
    assert head == 8
    assert verify_store(store)["ok"]


def test_when_a_stored_group_fails_the_next_is_sealed_again_on_the_stores_head(
        store, monkeypatch):
    overlap = Overlap(monkeypatch, fail=True)
    a, b, answers, head = _two_groups(store, overlap)
    assert isinstance(answers["a"], StoreError)
    rb = answers["b"]
    # A's last record failed with A: B's copy of it is new, not a duplicate.
    assert (rb.accepted, rb.duplicates, rb.rejected) == (4, 0, [])
    assert len(overlap.seals) == 3  # B sealed on A's head, then again on the store's
    assert _stored_ids(store) == [r.record_id for r in b]
    assert head == 4
    assert verify_store(store)["ok"]


@pytest.mark.parametrize("fail", [False, True])
def test_a_group_after_the_overlap_continues_the_chain(store, monkeypatch, fail):
    """After either outcome the ledger's heads agree with the store: the next group,
    sealed alone, lands right after what is stored and the chain verifies."""
    overlap = Overlap(monkeypatch, fail=fail)
    _two_groups(store, overlap)
    monkeypatch.undo()
    ledger = Ledger(store, "main", engine_min_records=0)
    ledger.clock = lambda: NOW
    try:
        before = ledger.head_seq
        rng = random.Random(23)
        more = [_ordinary(rng, 40 + i) for i in range(3)]
        r = ledger.append_request(*_request(more))
    finally:
        ledger.close()
    assert (r.accepted, r.head_seq) == (3, before + 3)
    assert verify_store(store)["ok"]
