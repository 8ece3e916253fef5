"""Verification inside a running collector takes the collector's writes as they stand:
it stops at the ledger's durable head, and a checkpoint the collector signed that is
not in the anchor store yet is on its way there.

A group of records whose start times fall on two days is stored as one part per day
partition, and ClickHouse makes each part visible on its own: for a moment a reader
sees the group's records of one day and not the other's, a gap in seq that is no
tampering. A verification running in the collector (API, console) must not report it:
it checks the chain up to the head the ledger has acknowledged as durable when it
starts, and every one of its queries reads that same stretch. A verification of a
store at rest (no bound) still reports every gap.

The moment is made here by deleting the first day's rows of the last group: what a
reader sees while only the second day's part of it has landed.

A checkpoint is written to the database when signed and to the anchor with the next
batch (a tick later): a verification in between read it as "in the database but not in
the anchor store" (seen in tests/integration/test_red_team.py's concurrent verifies).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timezone

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from aitrail.record.ids import uuid7
from aitrail.v1 import audit_pb2 as pb
from aitrail.verify.audit import Trust
from aitrail_collector.anchor.stores import DirectoryAnchor
from aitrail_collector.audit.verify import verify_period, verify_store
from aitrail_collector.ledger.checkpointer import Checkpointer
from aitrail_collector.ledger.group_commit import Ledger
from aitrail_collector.store.client import Store
from aitrail_collector.store.schema import DB
from aitrail_collector.web.services import Services


def _ns(day: str) -> int:
    d = date.fromisoformat(day)
    return int(datetime(d.year, d.month, d.day, 12, tzinfo=timezone.utc).timestamp()) * 10**9


def _records(days: list[str]) -> list[pb.AuditRecord]:
    return [pb.AuditRecord(record_id=uuid7(), event_type="task_created", task_id=f"T{i}",
                           start_time_unix_nano=_ns(day), service="svc")
            for i, day in enumerate(days)]


@dataclass
class Writer:
    """A collector as audit.verify.Writer sees it (web.services.Services in the product)."""
    head: int
    issued: int = 0

    def durable_head(self, chain_id: str) -> int | None:
        return self.head if chain_id == "main" else None

    def issued_checkpoint(self, chain_id: str) -> int:
        return self.issued if chain_id == "main" else 0


@pytest.fixture
def landing(tmp_path):
    """Six records acknowledged (head 6), then a group of four over two days, of which
    only the second day's rows (seq 8 and 10) are visible yet."""
    store = Store(f"chdb://{tmp_path}/bound")
    store.ensure_schema()
    ledger = Ledger(store, "main")
    assert ledger.append(_records(["2026-11-24"] * 6)).accepted == 6
    durable = ledger.head_seq
    assert ledger.append(_records(["2026-11-25", "2026-11-26"] * 2)).accepted == 4
    store.client.command(f"ALTER TABLE {DB}.envelopes DELETE WHERE seq IN (7, 9)"
                         " SETTINGS mutations_sync = 2")
    yield store, ledger, durable
    store.close()


@pytest.mark.parametrize("fast", [True, False], ids=["engine", "reference"])
def test_a_verify_bounded_at_the_durable_head_ignores_a_group_still_landing(landing, fast):
    store, _, durable = landing
    report = verify_store(store, writer=Writer(durable), fast=fast)
    assert report["ok"] is True, report["findings"]
    assert report["records"] == 6
    assert report["chains"][0]["head_seq"] == 6


@pytest.mark.parametrize("fast", [True, False], ids=["engine", "reference"])
def test_a_store_at_rest_still_reports_the_gap(landing, fast):
    store, _, _ = landing
    report = verify_store(store, fast=fast)
    assert report["ok"] is False
    assert {f["seq"] for f in report["findings"]} >= {8}, report["findings"]


def test_period_verification_takes_the_same_bound(landing):
    store, _, durable = landing
    report = verify_period(store, None, date(2026, 11, 24), None, Writer(durable))
    assert report["ok"] is True, report["findings"]
    assert report["records"] == 6


def test_a_running_collector_bounds_its_verification_at_its_ledger_head(landing):
    store, ledger, _ = landing
    services = Services(store=store, auth=None, access=None, ledger=ledger)  # type: ignore[arg-type]
    assert services.durable_head("main") == ledger.head_seq
    assert services.durable_head("other") is None  # a chain this collector does not write
    assert Services(store=store, auth=None, access=None).durable_head("main") is None  # type: ignore[arg-type]


def test_a_checkpoint_on_its_way_to_the_anchor_is_a_warning_in_the_collector(tmp_path):
    store = Store(f"chdb://{tmp_path}/data")
    try:
        store.ensure_schema()
        ledger = Ledger(store, "main")
        assert ledger.append(_records(["2026-11-24"] * 3)).accepted == 3
        key, anchor = Ed25519PrivateKey.generate(), DirectoryAnchor(tmp_path / "anchor")
        cp = Checkpointer(store, ledger, key, anchor, latency=5, interval=300,
                          max_quiet=86_400)
        assert cp.issue(force=True) is not None          # #1: database and anchor
        assert ledger.append(_records(["2026-11-24"] * 2)).accepted == 2
        assert cp.issue(force=True, anchor=False) is not None  # #2: the database only, yet
        trust = Trust(public_key=key.public_key(), anchor=anchor)
        at_rest = verify_store(store, trust=trust)
        assert not at_rest["ok"]  # a store at rest: the anchor must hold every checkpoint
        assert [(f["kind"], f["detail"]) for f in at_rest["findings"]] == [
            ("checkpoint_differs_from_anchor", "checkpoint 2: in the database but not in "
             "the anchor store")]
        services = Services(store=store, auth=None, access=None, ledger=ledger,  # type: ignore[arg-type]
                            checkpointer=cp)
        assert services.issued_checkpoint("main") == 2 and services.issued_checkpoint("x") == 0
        live = verify_store(store, trust=trust, writer=services)
        assert live["ok"] is True, live["findings"]
        assert any("checkpoint 2 of chain main is not in the anchor store yet" in w
                   for w in live["warnings"]), live["warnings"]
        # A checkpoint number the collector never signed stays a finding.
        assert not verify_store(store, trust=trust, writer=Writer(5, issued=1))["ok"]
    finally:
        store.close()
