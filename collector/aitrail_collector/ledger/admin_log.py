"""Every admin action is sealed into the chain as an ``admin_action`` record: who
added, removed or changed a user, changed a role or a password, created or
revoked an API token or an ingest API key (SOC 2: changes to access are traced).

The record carries the admin in ``data_access.actor``, the action (one of
``ACTIONS``) in ``purpose``, its target in ``resource`` (``user:ada``,
``token:a1b2c3d4e5f6``, ``apikey:k1``), and in attributes the details of the
change (role, owner, expiry, ...) -- never a password, a hash or a secret.

Two paths lead into the chain:

* the console seals directly (``AccessLog.admin``), in the request that made the
  change;
* ``aitrail user`` and ``aitrail apikey`` change files, not the store, and cannot
  open the store while a collector holds it. They append the action to the
  *admin queue*, ``admin-actions.jsonl`` next to the users file (``aitrail
  apikey``: next to the keys file), 0600, one JSON object a line, appended under
  ``<file>.lock``. The collector drains the queues next to its users file and its
  ``--api-keys`` file at start and then every ``POLL_S`` seconds, so a CLI change is sealed
  within seconds when a collector runs, and at its next start when none does.

A file queue rather than a call to the running collector's API: it is the one
path that works whether or not a collector runs, and a CLI change made while the
collector is down or restarting is not lost. Each queued action has its record
id from the moment it is queued; the ledger refuses a record id it has sealed
already, so a drain interrupted between sealing and emptying the queue seals
nothing twice.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from typing import Any, Mapping, Optional

from aitrail.record.ids import uuid7
from aitrail.v1 import audit_pb2 as pb
from aitrail_collector import credentials

log = logging.getLogger("aitrail.collector")
SERVICE = "aitrail-collector"
EVENT_TYPE = "admin_action"
QUEUE_NAME = "admin-actions.jsonl"
POLL_S = 1.0
MAX_DETAIL_CHARS = 1000

ACTIONS = ("user_added", "user_removed", "user_disabled", "user_enabled", "role_changed",
           "password_changed", "token_created", "token_revoked", "apikey_created",
           "apikey_revoked")

# Never sealed, whatever a caller passes in details.
_SECRET_KEYS = ("password", "password_hash", "secret", "sha256", "token", "key")


def queue_path(users_file: str) -> str:
    """The admin queue: ``admin-actions.jsonl`` in the users file's directory."""
    return os.path.join(os.path.dirname(os.path.abspath(users_file)), QUEUE_NAME)


def action(actor: str, actor_kind: str, what: str, target: str,
           details: Optional[Mapping[str, Any]] = None, via: str = "console") -> dict:
    """One admin action as a plain dict (what is queued), with its record id and time."""
    if what not in ACTIONS:
        raise ValueError(f"unknown admin action {what!r} (one of {', '.join(ACTIONS)})")
    clean = {str(k): str(v)[:MAX_DETAIL_CHARS] for k, v in (details or {}).items()
             if str(k).lower() not in _SECRET_KEYS}
    return {"record_id": uuid7(), "time_ns": time.time_ns(), "actor": actor,
            "actor_kind": actor_kind, "action": what, "target": target, "via": via,
            "details": clean}


def to_record(entry: Mapping[str, Any], host: str) -> pb.AuditRecord:
    """The sealed form of a queued or console action."""
    attributes = {f"detail.{k}": v for k, v in entry.get("details", {}).items()}
    attributes.update({"action": entry["action"], "target": entry["target"],
                       "principal_kind": entry["actor_kind"], "via": entry["via"]})
    return pb.AuditRecord(
        record_id=entry["record_id"], event_type=EVENT_TYPE,
        start_time_unix_nano=entry["time_ns"], end_time_unix_nano=entry["time_ns"],
        service=SERVICE, environment="collector", host=host,
        data_access=pb.DataAccess(actor=entry["actor"], resource=entry["target"],
                                  purpose=entry["action"]),
        attributes=attributes)


def enqueue(path: str, entry: Mapping[str, Any]) -> None:
    """Append one action to the queue at ``path``, durably, under its lock."""
    with credentials.locked(path):
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, (json.dumps(entry, sort_keys=True) + "\n").encode())
            os.fsync(fd)
        finally:
            os.close(fd)


class AdminQueue:
    """Seals what ``aitrail user`` / ``aitrail apikey`` queued: at start, then
    every ``poll_s`` seconds while the collector runs."""

    def __init__(self, ledger: Any, path: str, *more: str, poll_s: float = POLL_S):
        self.ledger, self.path, self.poll_s = ledger, path, poll_s
        self.paths = list(dict.fromkeys([path, *more]))  # each once
        self.host = socket.gethostname()
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    def start(self) -> "AdminQueue":
        self.drain()
        self._thread = threading.Thread(target=self._run, name="admin-queue", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
        self.drain()  # what came in during the last interval

    def _run(self) -> None:
        while not self._stop.wait(self.poll_s):
            try:
                self.drain()
            except Exception:  # noqa: BLE001 - keep polling; the queue keeps the actions
                log.exception("could not seal the queued admin actions in %s", self.path)

    def drain(self) -> int:
        """Seals every queued action, in order; returns how many. What cannot be
        sealed now (the store is unavailable) stays queued for the next drain; a
        line that is not an action is logged and dropped."""
        return sum(self._drain(path) for path in self.paths)

    def _drain(self, path: str) -> int:
        if not os.path.exists(path):
            return 0
        with credentials.locked(path):
            with open(path, encoding="utf-8") as fh:
                lines = [line for line in fh.read().splitlines() if line.strip()]
            if not lines:
                return 0
            sealed, left = 0, []
            for i, line in enumerate(lines):
                try:
                    rec = to_record(json.loads(line), self.host)
                except (ValueError, KeyError, TypeError, AttributeError) as exc:
                    log.error("dropping a malformed line of %s: %s", path, exc)
                    continue
                try:
                    self.ledger.append_own(rec)
                except Exception:  # noqa: BLE001 - retried at the next drain
                    log.exception("could not seal a queued admin action; retrying later")
                    left = lines[i:]
                    break
                sealed += 1
            credentials.write_secret(path, "".join(line + "\n" for line in left))
        if sealed:
            log.info("sealed %d queued admin action(s) from %s", sealed, path)
        return sealed
