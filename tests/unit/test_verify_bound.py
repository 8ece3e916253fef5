"""Verification inside a running collector stops at the ledger's durable head.

A group of records whose start times fall on two days is stored as one part per day
partition, and ClickHouse makes each part visible on its own: for a moment a reader
sees the group's records of one day and not the other's, a gap in seq that is no
tampering. A verification running in the collector (API, console) must not report it:
it checks the chain up to the head the ledger has acknowledged as durable when it
starts, and every one of its queries reads that same stretch. A verification of a
store at rest (no bound) still reports every gap.

The moment is made here by deleting the first day's rows of the last group: what a
reader sees while only the second day's part of it has landed.
"""

from __future__ import annotations

from datetime import date, datetime, timezone

import pytest

from aitrail.record.ids import uuid7
from aitrail.v1 import audit_pb2 as pb
from aitrail_collector.audit.verify import verify_period, verify_store
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


@pytest.fixture(scope="module")
def landing(tmp_path_factory):
    """Six records acknowledged (head 6), then a group of four over two days, of which
    only the second day's rows (seq 8 and 10) are visible yet."""
    store = Store(f"chdb://{tmp_path_factory.mktemp('bound')}/data")
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
    report = verify_store(store, durable_head={"main": durable}.get, fast=fast)
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
    report = verify_period(store, None, date(2026, 11, 24), None, durable_head={"main": durable}.get)
    assert report["ok"] is True, report["findings"]
    assert report["records"] == 6


def test_a_running_collector_bounds_its_verification_at_its_ledger_head(landing):
    store, ledger, _ = landing
    services = Services(store=store, auth=None, access=None, ledger=ledger)  # type: ignore[arg-type]
    assert services.durable_head("main") == ledger.head_seq
    assert services.durable_head("other") is None  # a chain this collector does not write
    assert Services(store=store, auth=None, access=None).durable_head("main") is None  # type: ignore[arg-type]
