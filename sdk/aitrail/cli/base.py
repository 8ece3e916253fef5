"""What every ``aitrail`` command shares: exit codes, the usage error, where the
ledger is (``--url`` / ``--data-dir`` / ``--clickhouse``) and the search filters.

The SDK never imports the collector. A store directory (or DSN) is opened by
the backend the collector registers in the entry-point group
``aitrail.backends`` (name ``store``); without the collector extra, ``--url``
still works over HTTP.
"""

from __future__ import annotations

import argparse
import getpass
import os
from importlib.metadata import entry_points
from typing import Any, Iterator, Mapping, Optional, Protocol

from aitrail.cli.remote import ClientError, HttpBackend
from aitrail.errors import AitrailError

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
BACKEND_GROUP = "aitrail.backends"
COLLECTOR_EXTRA = "pip install 'aitrail[collector]'"


class UsageError(AitrailError):
    """The command line cannot be carried out as given; exit 2."""


class Backend(Protocol):
    """What the store-reading commands need: a running collector (HttpBackend)
    or a store opened directly (the collector's LocalBackend)."""

    def search(self, params: Mapping[str, Any]) -> dict[str, Any]: ...
    def timeline(self, task_id: str) -> list[dict[str, Any]]: ...
    def export_csv(self, params: Mapping[str, Any]) -> Iterator[bytes]: ...
    def verify(self, from_checkpoint: Optional[int] = None, public_key: Optional[str] = None,
               anchor: Optional[str] = None,
               since_checkpoint: Optional[str] = None) -> dict[str, Any]: ...
    def prove(self, record_id: str) -> str: ...
    def summary(self) -> dict[str, Any]: ...
    def erase(self, *, task: Optional[str] = None, record_id: Optional[str] = None,
              reason: Optional[str] = None, actor: Optional[str] = None) -> dict[str, Any]: ...


def add_target(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("where the ledger is (default: $AITRAIL_URL, else "
                             "$AITRAIL_DATA_DIR, else ./aitrail-data)")
    x = g.add_mutually_exclusive_group()
    x.add_argument("--url", help="a running collector's HTTP address, e.g. http://127.0.0.1:8327")
    x.add_argument("--data-dir", help="an embedded store directory")
    x.add_argument("--clickhouse", metavar="DSN", help="a ClickHouse DSN (http://host:8123, chdb:///dir)")
    t = g.add_mutually_exclusive_group()
    t.add_argument("--token-file", metavar="FILE",
                   help="read the API token for --url from the first line of FILE (mode "
                        "0600; `aitrail user token-create`); default $AITRAIL_TOKEN")
    t.add_argument("--token", metavar="TOKEN",
                   help="the API token itself: visible to other users in `ps` and kept in "
                        "shell history, so prefer --token-file FILE or $AITRAIL_TOKEN")
    g.add_argument("--ca-cert", metavar="PEM",
                   help="for an https collector: trust this CA certificate (default "
                        "$AITRAIL_CA_CERT, else the system's CAs)")


def add_filters(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("filters")
    g.add_argument("--task", help="task id")
    g.add_argument("--reviewer", help="reviewer id (reviews and escalations)")
    g.add_argument("--request-id")
    g.add_argument("--trace-id", help="OpenTelemetry trace id (32 hex digits)")
    g.add_argument("--record-id")
    g.add_argument("--type", action="append", metavar="TYPE",
                   help="event type (repeatable): model_call, review, escalation, ...")
    g.add_argument("--since", help="ISO 8601 date/time, or a span ago: 30m, 24h, 7d")
    g.add_argument("--until", help="ISO 8601 date/time, or a span ago")


def filter_params(args: argparse.Namespace) -> dict[str, Any]:
    return {"task": args.task, "reviewer": args.reviewer, "request_id": args.request_id,
            "trace_id": args.trace_id, "record_id": args.record_id, "type": args.type or None,
            "since": args.since, "until": args.until}


def backend(args: argparse.Namespace) -> Backend:
    """The ledger the command reads: a collector over HTTP, or a store directly."""
    direct = args.data_dir or args.clickhouse
    url = args.url or (None if direct else os.environ.get("AITRAIL_URL"))
    token = args.token or (read_token_file(args.token_file) if args.token_file else None) \
        or os.environ.get("AITRAIL_TOKEN")
    ca_cert = getattr(args, "ca_cert", None) or os.environ.get("AITRAIL_CA_CERT") or None
    if url:
        return HttpBackend(url, token=token, ca_cert=ca_cert)
    found = entry_points(group=BACKEND_GROUP, name="store")
    try:
        open_store = next(iter(found)).load()
    except (StopIteration, ImportError):
        raise UsageError(f"reading a store directly needs the collector extra: "
                         f"{COLLECTOR_EXTRA} (or pass --url)") from None
    backend_: Backend = open_store(data_dir=args.data_dir, clickhouse=args.clickhouse,
                                   token=token, ca_cert=ca_cert)
    return backend_


def read_token_file(path: str) -> str:
    """The token on the first line of ``path``, which only its owner may read."""
    try:
        with open(path, encoding="utf-8") as fh:
            mode = os.fstat(fh.fileno()).st_mode & 0o777
            if mode & 0o077:
                raise UsageError(f"--token-file {path}: open to others than you (mode "
                                 f"{mode:04o}); make it private: chmod 600 {path}")
            token = fh.readline().strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"--token-file {path}: {exc}") from None
    if not token:
        raise UsageError(f"--token-file {path}: the first line is empty")
    return token


def os_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no login name in some containers
        return "unknown"


__all__ = ["EXIT_OK", "EXIT_FAILED", "EXIT_USAGE", "UsageError", "ClientError", "Backend",
           "add_target", "add_filters", "filter_params", "backend", "read_token_file", "os_user"]
