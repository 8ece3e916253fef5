"""Fixtures shared by tests/unit, tests/integration and tests/browser; the helpers
they use are in support.py (tests/ is on the path: pyproject's pytest settings)."""

from __future__ import annotations

import datetime

import pytest
from support import CONSOLE_USERS, CollectorProc, ConsoleSite, console_scenario


@pytest.fixture(scope="session", autouse=True)
def _session_spool(tmp_path_factory):
    """Module and session fixtures are set up before the per-test ``_own_spool``, so
    the processes they start (the demo's SDK, say) get this spool, in this run's temp
    directory, instead of the default ~/.local/state/aitrail/spool/<service>: that one
    is shared with every other test run on the machine (other worktrees, other
    xdist workers), and an SDK adopts the orphaned spool it finds there."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AITRAIL_SPOOL_DIR", str(tmp_path_factory.mktemp("session-spool")))
        yield


@pytest.fixture(autouse=True)
def _own_spool(tmp_path, monkeypatch):
    """Every test (and every process it starts) gets a spool directory of its own."""
    monkeypatch.setenv("AITRAIL_SPOOL_DIR", str(tmp_path / "spool"))


@pytest.fixture
def collector(tmp_path):
    proc = CollectorProc(tmp_path / "store").start()
    yield proc
    proc.stop()


@pytest.fixture
def sdk(collector):
    """The real SDK, sending to ``collector`` over gRPC."""
    import aitrail
    aitrail.configure(endpoint=collector.grpc, service="test-svc", environment="test",
                      redaction_key="test-key", flush_interval=0.05)
    yield aitrail
    aitrail.shutdown()


@pytest.fixture(scope="session")
def console_site(tmp_path_factory):
    from aitrail_collector.web.auth.accounts import Accounts
    base = tmp_path_factory.mktemp("console")
    users_file = base / "users.json"
    accounts = Accounts(str(users_file))
    for name, (role, password) in CONSOLE_USERS.items():
        accounts.add_user(name, password, role)
    proc = CollectorProc(base / "store", "--users", str(users_file)).start()
    site = ConsoleSite(proc, users_file)
    console_scenario(proc.grpc, site.trace_id)
    site.sealed_day = datetime.datetime.now(datetime.timezone.utc).date()
    yield site
    proc.stop()
