"""Period verification says what the period holds (audit/verify.verify_period): the
records sealed in it, those after it that were checked, the records no signed
checkpoint covers yet, and the checkpoints signed in it; not the whole chain's count.

Records are sealed with the ledger's clock set to known days, into one scratch
embedded store in this process (closed at the end of the module).
"""

from __future__ import annotations

from datetime import date, datetime, timezone

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from aitrail.record.ids import uuid7
from aitrail.v1 import audit_pb2 as pb
from aitrail.verify.audit import AuditError, Trust
from aitrail_collector.anchor.stores import DirectoryAnchor
from aitrail_collector.audit.verify import verify_period
from aitrail_collector.ledger.checkpointer import Checkpointer
from aitrail_collector.ledger.group_commit import Ledger
from aitrail_collector.store.client import Store


def _ns(day: str, hour: int = 12) -> int:
    d = date.fromisoformat(day)
    return int(datetime(d.year, d.month, d.day, hour, tzinfo=timezone.utc).timestamp()) * 10**9


def _seal(ledger: Ledger, day: str, n: int) -> None:
    ledger.clock = lambda: _ns(day)
    records = []
    for i in range(n):
        rec = pb.AuditRecord(record_id=uuid7(), event_type="task_created", task_id=f"T{i}",
                             start_time_unix_nano=_ns(day), service="svc")
        records.append(rec)
    assert ledger.append(records).accepted == n


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """3 records sealed on 11-24, 2 on 11-25, 1 on 11-27 (chain main), a checkpoint
    signed now over all 6, then one more record (not yet covered)."""
    base = tmp_path_factory.mktemp("periods")
    store = Store(f"chdb://{base}/data")
    store.ensure_schema()
    ledger = Ledger(store, "main")
    for day, n in (("2026-11-24", 3), ("2026-11-25", 2), ("2026-11-27", 1)):
        _seal(ledger, day, n)
    key = Ed25519PrivateKey.generate()
    cp = Checkpointer(store, ledger, key, DirectoryAnchor(base / "anchor"), latency=5,
                      interval=300, max_quiet=86_400)
    assert cp.issue(force=True) is not None
    _seal(ledger, "2026-11-28", 1)
    yield store, Trust(public_key=key.public_key())
    store.close()


def _period(site, since, until) -> dict:
    store, trust = site
    report = verify_period(store, trust, since and date.fromisoformat(since),
                           until and date.fromisoformat(until))
    assert report["ok"], report["findings"]
    return report["period"]


def test_counts_inside_after_and_before(site):
    p = _period(site, "2026-11-25", "2026-11-26")
    assert (p["in_period"], p["after"], p["before"]) == (2, 2, 3)
    main = p["chains"][0]
    assert (main["first_seq"], main["last_seq"]) == (4, 5)


def test_the_whole_chain_is_in_a_period_from_its_first_day(site):
    p = _period(site, "2026-11-24", None)
    assert (p["in_period"], p["after"], p["before"]) == (7, 0, 0)


def test_an_empty_period_says_so_and_how_many_were_checked_after_it(site):
    for since, until in (("2020-01-01", "2021-01-01"), ("2026-11-26", "2026-11-27")):
        p = _period(site, since, until)
        assert p["in_period"] == 0 and p["checkpoints_in_period"] == 0, (since, p)
    assert _period(site, "2020-01-01", "2021-01-01")["after"] == 7
    future = _period(site, "2027-01-01", "2027-02-01")
    assert (future["in_period"], future["after"]) == (0, 0)


def test_records_not_yet_in_a_checkpoint_are_named(site):
    p = _period(site, None, None)
    main = p["chains"][0]
    assert main["uncovered"] == {"count": 1, "first_seq": 7, "last_seq": 7}
    assert main["newest_checkpoint"]["size"] == 6 and p["uncovered"] == 1


def test_the_checkpoints_signed_in_a_period_are_listed(site):
    today = datetime.now(timezone.utc).date()
    store, trust = site
    report = verify_period(store, trust, today, None)
    signed = report["period"]["chains"][0]["checkpoints_in_period"]
    assert signed["count"] == 1 and signed["first"]["number"] == 1
    assert signed["first"]["size"] == 6


def test_a_period_that_does_not_start_before_it_ends_is_refused(site):
    store, trust = site
    for since, until in ((date(2026, 11, 25), date(2026, 11, 25)),
                         (date(2026, 11, 26), date(2026, 11, 25))):
        with pytest.raises(AuditError, match="must be before its end"):
            verify_period(store, trust, since, until)
