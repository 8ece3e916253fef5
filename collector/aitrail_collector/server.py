"""The collector process: gRPC ingest and the HTTP API over one store.

In embedded mode the collector owns the store directory and says so in
``<dir>/collector.json`` (pid and URLs), so CLI commands pointed at that
directory talk to it over HTTP instead of trying to open the engine.
"""

from __future__ import annotations

import faulthandler
import json
import logging
import os
import signal
import threading
import time
from dataclasses import dataclass
from typing import Optional

import uvicorn

from aitrail_collector.http_api import create_app
from aitrail_collector.auth import KeyRing
from aitrail_collector.ingest import (DEFAULT_MAX_MESSAGE_BYTES, DEFAULT_MAX_PENDING_RECORDS,
                                      DEFAULT_MAX_RECORDS_PER_BATCH, ExportHandler, TlsFiles,
                                      start_grpc)
from aitrail.checkpoint import load_private_key, write_keypair
from aitrail_collector.anchor import open_anchor
from aitrail_collector.checkpoint_audit import Trust
from aitrail_collector.checkpointer import DEFAULT_INTERVAL_S, DEFAULT_MAX_QUIET_S, Checkpointer
from aitrail_collector.accounts import Accounts, Sessions, users_file
from aitrail_collector.ledger import Ledger
from aitrail_collector.webauth import WebAuth, is_loopback
from aitrail_collector.store import DEFAULT_RETENTION_DAYS, Store
from aitrail_collector.validate import Limits

log = logging.getLogger("aitrail.collector")
LOCK_FILE = "collector.json"
LOCAL_TOKEN_FILE = "local-token"
SHUTDOWN_LIMIT_S = 60.0
SIGNAL_POLL_S = 0.2


@dataclass
class CollectorConfig:
    dsn: str
    chain_id: str = "main"
    grpc_listen: str = "127.0.0.1:4327"
    http_listen: Optional[str] = "127.0.0.1:8327"
    retention_days: int = DEFAULT_RETENTION_DAYS
    limits: Limits = Limits()
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    max_records_per_batch: int = DEFAULT_MAX_RECORDS_PER_BATCH
    max_pending_records: int = DEFAULT_MAX_PENDING_RECORDS
    api_keys: Optional[str] = None       # keys file; set: every request needs a valid key
    tls: Optional[TlsFiles] = None
    signing_key: Optional[str] = None    # Ed25519 private key (PEM); default <data dir>/signing-key.pem
    anchor: Optional[str] = None         # directory or s3://bucket/prefix; default <data dir>/anchor
    checkpoint_interval: float = DEFAULT_INTERVAL_S
    checkpoint_max_quiet: float = DEFAULT_MAX_QUIET_S
    users: Optional[str] = None          # console accounts file; default <data dir>/console-users.json
    session_idle_s: float = 1800.0


def _split(listen: str) -> tuple[str, int]:
    host, _, port = listen.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"{listen!r}: expected HOST:PORT")
    return host.strip("[]"), int(port)


class Collector:
    def __init__(self, config: CollectorConfig):
        self.config = config
        self.store = Store(config.dsn, config.retention_days)
        self.store.ensure_schema()
        # Everything that can refuse the configuration comes before anything is written.
        self.keys = KeyRing(config.api_keys) if config.api_keys else None
        self.ledger = Ledger(self.store, config.chain_id, config.limits)
        key_path, anchor_url = self._signing_paths()
        self.private_key = load_private_key(key_path)
        # Object Lock keeps each anchored checkpoint at least as long as the records.
        self.anchor = open_anchor(anchor_url, retention_days=config.retention_days)
        self.checkpointer = Checkpointer(self.store, self.ledger, self.private_key, self.anchor,
                                         config.checkpoint_interval, config.checkpoint_max_quiet)
        self.accounts = Accounts(config.users or users_file(self.data_dir))
        self.auth = WebAuth(self.accounts, Sessions(idle_timeout_s=config.session_idle_s,
                                                    accounts=self.accounts))
        self.grpc_port = 0
        self.http_port = 0
        self._grpc = None
        self._http: Optional[uvicorn.Server] = None
        self._http_thread: Optional[threading.Thread] = None

    def _signing_paths(self) -> tuple[str, str]:
        """The signing key and anchor; in embedded mode both default into the data dir
        (a key is made on first start). A production deployment passes both, so the
        key and the anchor live where a database administrator cannot reach them."""
        cfg = self.config
        key, anchor = cfg.signing_key, cfg.anchor
        if not self.data_dir and not (key and anchor):
            raise ValueError("a ClickHouse server store needs --signing-key and --anchor")
        if not key:
            key = os.path.join(self.data_dir, "signing-key.pem")
            if not os.path.exists(key):
                write_keypair(key, os.path.join(self.data_dir, "signing-key.pub"))
                log.warning("made a checkpoint signing key at %s; keep a copy of %s for "
                            "verifiers", key, os.path.join(self.data_dir, "signing-key.pub"))
        return key, anchor or os.path.join(self.data_dir, "anchor")

    def trust(self) -> Trust:
        """What this collector's own verify checks against: its key and its anchor."""
        return Trust(public_key=self.private_key.public_key(), anchor=self.anchor,
                     max_gap_s=self.config.checkpoint_max_quiet + 3600)

    @property
    def data_dir(self) -> Optional[str]:
        return self.store.dsn[len("chdb://"):] if self.store.embedded else None

    @property
    def grpc_endpoint(self) -> str:
        return f"{_split(self.config.grpc_listen)[0]}:{self.grpc_port}"

    @property
    def url(self) -> Optional[str]:
        if not self.http_port:
            return None
        return f"http://{_split(self.config.http_listen)[0]}:{self.http_port}"

    def start(self) -> "Collector":
        cfg = self.config
        self.checkpointer.start()
        handler = ExportHandler(self.ledger, keys=self.keys,
                                max_records=cfg.max_records_per_batch,
                                max_pending=cfg.max_pending_records)
        self._grpc, self.grpc_port = start_grpc(handler, cfg.grpc_listen, tls=cfg.tls,
                                                max_message_bytes=cfg.max_message_bytes)
        if self.config.http_listen:
            self._start_http()
        self._write_lock()
        log.info("collector up: chain %s at seq %d, gRPC %s, HTTP %s", self.config.chain_id,
                 self.ledger.head_seq, self.grpc_endpoint, self.url)
        return self

    def _start_http(self) -> None:
        host, port = _split(self.config.http_listen)
        if not is_loopback(host) and not self.accounts.has_users():
            # Before the first account exists the API serves loopback callers without
            # sign-in (webauth.py); it must never be reachable from elsewhere like that.
            raise ValueError(f"--http-listen {self.config.http_listen}: create a console user "
                             "first (aitrail user add NAME --role admin), or listen on 127.0.0.1")
        info = {"chain_id": self.config.chain_id, "grpc": self.grpc_endpoint}
        cfg = uvicorn.Config(create_app(self.store, info, collector=self), host=host, port=port,
                             log_level="warning", access_log=False)
        self._http = uvicorn.Server(cfg)
        self._http_thread = threading.Thread(target=self._http.run, name="http", daemon=True)
        self._http_thread.start()
        while not self._http.started:
            if not self._http_thread.is_alive():
                raise OSError(f"cannot serve HTTP on {self.config.http_listen}")
            self._http_thread.join(0.02)
        self.http_port = self._http.servers[0].sockets[0].getsockname()[1]

    def _write_local_token(self) -> None:
        """A token for the CLI on this machine, readable only by whoever may read the
        store's directory anyway (mode 0600); a new one at every start."""
        path = os.path.join(self.data_dir, LOCAL_TOKEN_FILE)
        fd = os.open(path + ".tmp", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(self.auth.local_token + "\n")
        os.replace(path + ".tmp", path)

    def _write_lock(self) -> None:
        if self.data_dir:
            self._write_local_token()
            with open(os.path.join(self.data_dir, LOCK_FILE), "w") as fh:
                json.dump({"pid": os.getpid(), "url": self.url, "grpc": self.grpc_endpoint,
                           "chain_id": self.config.chain_id}, fh)

    def stop(self, grace: float = 5.0) -> None:
        """Stop taking work, then seal the closing checkpoint and close the store.

        Each step is logged with its duration: a shutdown that hangs says where.
        """
        started = time.monotonic()
        if self._grpc is not None:
            # Finish in-flight batches before closing the store; past the grace
            # period gRPC cancels them, and their clients retry elsewhere.
            if not self._grpc.stop(grace).wait(grace + 5):
                log.error("gRPC server did not stop within %.0f s", grace + 5)
            log.info("stopping: gRPC closed after %.2f s", time.monotonic() - started)
        if self._http is not None:
            self._http.should_exit = True
            if self._http_thread:
                self._http_thread.join(grace)
            log.info("stopping: HTTP closed after %.2f s", time.monotonic() - started)
        self.checkpointer.stop()  # the closing checkpoint covers everything stored
        log.info("stopping: closing checkpoint after %.2f s", time.monotonic() - started)
        if self.data_dir:
            for name in (LOCK_FILE, LOCAL_TOKEN_FILE):
                try:
                    os.remove(os.path.join(self.data_dir, name))
                except FileNotFoundError:
                    pass
        self.store.close()
        log.info("collector stopped after %.2f s", time.monotonic() - started)

    def serve_forever(self, stop: Optional[threading.Event] = None) -> None:
        """Serve until ``stop`` is set (by default: until SIGINT or SIGTERM)."""
        stop = stop or stop_on_signals()
        # Never an untimed wait: the kernel may deliver SIGTERM to any thread (the
        # engine and gRPC run dozens), and CPython then runs the Python handler only
        # when the main thread next executes bytecode, which an untimed lock wait
        # never does. Waking every SIGNAL_POLL_S lets the handler run.
        while not stop.wait(SIGNAL_POLL_S):
            pass
        log.info("collector stopping")
        # Shutdown waits on other libraries' threads and on the engine; if one of
        # them hangs, dump every thread's stack and exit 1 rather than hang for
        # good. Acknowledged records are durable already; the next start seals a
        # checkpoint of whatever the closing one would have covered.
        faulthandler.dump_traceback_later(SHUTDOWN_LIMIT_S, exit=True)
        self.stop()
        faulthandler.cancel_dump_traceback_later()


def stop_on_signals() -> threading.Event:
    """An event set by SIGINT or SIGTERM, and a stack dump of every thread on SIGUSR1.

    Installed before the collector starts: a SIGTERM that arrives while it is
    starting then stops it cleanly once it is up, instead of killing it before
    its closing checkpoint.
    """
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    return stop


def running_collector(data_dir: str) -> Optional[dict]:
    """The collector holding ``data_dir``, if one is alive: its pid and URLs."""
    path = os.path.join(data_dir, LOCK_FILE)
    try:
        with open(path) as fh:
            info = json.load(fh)
        os.kill(int(info["pid"]), 0)
    except (OSError, ValueError, KeyError):
        return None
    return info
