"""The collector process, composed: gRPC ingest and the HTTP API over one store.

The composition root: it builds every part from a ``CollectorConfig``, starts
and stops them in order, and handles signals. In embedded mode the collector
owns the store directory and says so in ``DataDir.lock_file`` (pid and URLs),
so CLI commands pointed at that directory talk to it over HTTP instead of
trying to open the engine.
"""

from __future__ import annotations

import faulthandler
import json
import logging
import os
import signal
import threading
import time
from typing import Optional

import uvicorn
from cryptography.hazmat.primitives import serialization

from aitrail.otel.mapping import MappingOptions
from aitrail.record.redact import Redactor
from aitrail.verify.audit import Trust
from aitrail.verify.checkpoint import key_id, load_private_key, write_keypair
from aitrail.verify.trust_root import (
    FROM_COLLECTOR,
    FROM_DATA_DIR,
    FROM_FLAG_ANCHOR,
    is_inside,
    trust_root,
)
from aitrail_collector import native
from aitrail_collector.anchor import open_anchor
from aitrail_collector.config import CollectorConfig, ConfigError, DataDir
from aitrail_collector.credentials import write_secret
from aitrail_collector.ingest.apikeys import KeyRing
from aitrail_collector.ingest.otlp import OtlpReceiver
from aitrail_collector.ingest.service import Admission, ExportHandler, start_grpc
from aitrail_collector.ledger.access_log import AccessLog
from aitrail_collector.ledger.admin_log import AdminQueue, queue_path
from aitrail_collector.ledger.checkpointer import Checkpointer
from aitrail_collector.ledger.group_commit import Ledger
from aitrail_collector.store.client import Store
from aitrail_collector.web.app import asgi_app, create_app
from aitrail_collector.web.auth.accounts import Accounts, Sessions
from aitrail_collector.web.auth.guard import WebAuth, is_loopback
from aitrail_collector.web.services import Services

log = logging.getLogger("aitrail.collector")


def _split(listen: str) -> tuple[str, int]:
    host, _, port = listen.rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"{listen!r}: expected HOST:PORT")
    return host.strip("[]"), int(port)


class Collector:
    def __init__(self, config: CollectorConfig):
        config.validate()
        self.config = config
        # Everything this process creates (the engine's files, keys, tokens, anchor
        # files, the lock) is for its own user only: 0600 files, 0700 directories.
        os.umask(0o077)
        data_dir = DataDir.of_dsn(config.dsn)
        if data_dir is not None:
            loosened = data_dir.secure()
            if loosened:
                log.warning("%s: took group and other access off %d file(s) and directories "
                            "made before the collector set its umask", data_dir.root, loosened)
        self.store = Store(config.dsn, config.retention_days)
        self.store.ensure_schema()
        # Everything that can refuse the configuration comes before anything is written.
        self.keys = KeyRing(config.api_keys) if config.api_keys else None
        self.redactor = self._redactor()
        self.ledger = Ledger(self.store, config.chain_id, config.limits,
                             envelope_version=config.envelope_version,
                             pipelined=config.pipelined_commit)
        self._check_trust_root()
        key_path, anchor_url = self._signing_paths()
        self.private_key = load_private_key(key_path)
        # Object Lock keeps each anchored checkpoint at least as long as the records.
        self.anchor = open_anchor(anchor_url, retention_days=config.retention_days)
        self.trust_root = trust_root(
            data_dir=self.data_dir, key_path=key_path,
            key_id=key_id(self.private_key.public_key()), key_source=FROM_COLLECTOR,
            anchor=anchor_url, anchor_describe=self.anchor.describe(),
            anchor_source=FROM_FLAG_ANCHOR if config.anchor else FROM_DATA_DIR)
        if not config.demo:  # the demo's trust root is in its data directory by design
            for part in ("public_key", "anchor"):
                if (self.trust_root[part] or {}).get("inside_data_dir"):
                    log.warning("trust root: the %s %s is inside the data directory %s: an OK "
                                "from verify cannot detect a rewrite by someone who can write "
                                "there (pass --signing-key and --anchor outside it; see "
                                "--production)", "signing key" if part == "public_key"
                                else "anchor", key_path if part == "public_key" else anchor_url,
                                self.data_dir)
        self.checkpointer = Checkpointer(self.store, self.ledger, self.private_key, self.anchor,
                                         latency=config.checkpoint_latency,
                                         interval=config.checkpoint_interval,
                                         max_quiet=config.checkpoint_max_quiet)
        users = config.users or (self.store.data_dir.users if self.store.data_dir else None)
        if users is None:
            raise ConfigError("a ClickHouse server store needs --users (the console accounts file)")
        self.accounts = Accounts(users)
        self.admin_queue = AdminQueue(self.ledger, queue_path(users),  # CLI admin actions
                                      *([queue_path(config.api_keys)] if config.api_keys else []))
        self.auth = WebAuth(self.accounts, Sessions(idle_timeout_s=config.session_idle_s,
                                                    accounts=self.accounts),
                            secure_cookies=config.http_tls is not None,
                            trusted_proxies=config.trusted_proxies)
        self.grpc_port = 0
        self.http_port = 0
        self.otlp: Optional[OtlpReceiver] = None
        self._grpc = None
        self._http: Optional[uvicorn.Server] = None
        self._http_thread: Optional[threading.Thread] = None

    def _redactor(self) -> Redactor:
        """What the OTLP receivers redact span content with: the SDK's policy engine under
        the operator's key. With no key configured, a random one for this process: no
        raw PII is sealed either way, but equal values then give equal tokens only
        until a restart, and never the tokens the SDK gives (the warning says so)."""
        key, source = self.config.redaction_key()
        if not key:
            key = os.urandom(32)
            log.warning("OTLP span content is redacted under a random key for this process "
                        "(no --redaction-key-file or $AITRAIL_REDACTION_KEY): redaction "
                        "tokens of equal values match only until a restart, and never the "
                        "SDK's; give the collector the SDK's key to make them match")
        else:
            log.info("OTLP span content is redacted under the key from %s", source)
        return Redactor(key, dict(self.config.redaction_policy))

    def _check_trust_root(self) -> None:
        """``--production``: the signing key and the anchor must not sit in the data
        directory they protect, or whoever can write it can rewrite history unseen."""
        cfg = self.config
        if not cfg.production:
            return
        if not cfg.signing_key:
            raise ConfigError("--production needs --signing-key: a key kept outside the data "
                              "directory (`aitrail keygen`)")
        if not cfg.anchor:
            raise ConfigError("--production needs --anchor: an independent store "
                              "(s3://bucket/prefix with Object Lock, or a directory outside "
                              "the data directory)")
        for flag, path in (("--signing-key", cfg.signing_key), ("--anchor", cfg.anchor)):
            if is_inside(path, self.data_dir):
                raise ConfigError(f"--production: {flag} {path} is inside the data directory "
                                  f"{self.data_dir}; keep it where whoever can write the data "
                                  "directory cannot")

    def _signing_paths(self) -> tuple[str, str]:
        """The signing key and anchor; in embedded mode both default into the data dir
        (a key is made on first start). A production deployment passes both, so the
        key and the anchor live where a database administrator cannot reach them."""
        cfg, data_dir = self.config, self.store.data_dir
        key, anchor = cfg.signing_key, cfg.anchor
        if data_dir is None:
            if not (key and anchor):
                raise ConfigError("a ClickHouse server store needs --signing-key and --anchor")
            return key, anchor
        if not key:
            key = data_dir.signing_key
            if not os.path.exists(key):
                write_keypair(key, data_dir.public_key)
                os.chmod(data_dir.public_key, 0o600)  # like everything in the data directory
                log.warning("made a checkpoint signing key at %s; keep a copy of %s for "
                            "verifiers", key, data_dir.public_key)
        return key, anchor or data_dir.anchor

    def trust(self) -> Trust:
        """What this collector's own verify checks against: its key and its anchor."""
        return Trust(public_key=self.private_key.public_key(), anchor=self.anchor,
                     max_gap_s=self.config.checkpoint_max_quiet + 3600, root=self.trust_root)

    @property
    def data_dir(self) -> Optional[str]:
        return self.store.data_dir.root if self.store.data_dir else None

    @property
    def grpc_endpoint(self) -> str:
        return f"{_split(self.config.grpc_listen)[0]}:{self.grpc_port}"

    @property
    def url(self) -> Optional[str]:
        if not self.http_port:
            return None
        scheme = "https" if self.config.http_tls else "http"
        return f"{scheme}://{_split(self.config.http_listen)[0]}:{self.http_port}"

    def start(self) -> "Collector":
        cfg = self.config
        self.checkpointer.start()
        self.admin_queue.start()
        # One admission budget for every way in: they all wait for the same ledger.
        admission = Admission(cfg.max_pending_records, cfg.max_pending_bytes,
                              cfg.retry_pushback_ms)
        handler = ExportHandler(self.ledger, keys=self.keys,
                                max_records=cfg.max_records_per_batch, admission=admission)
        self.otlp = OtlpReceiver(self.ledger, self.redactor, admission, keys=self.keys,
                                 options=MappingOptions(task_id_keys=cfg.otlp_task_id_keys),
                                 max_records=cfg.max_records_per_batch,
                                 max_message_bytes=cfg.max_message_bytes,
                                 max_attribute_chars=cfg.limits.max_text_chars)
        self._grpc, self.grpc_port = start_grpc(handler, cfg.grpc_listen, tls=cfg.tls,
                                                max_message_bytes=cfg.max_message_bytes,
                                                workers=cfg.grpc_workers,
                                                extra=[self.otlp.grpc_methods()])
        if self.config.http_listen:
            self._start_http()
        self._write_lock()
        native.warn_if_unavailable()
        log.info("collector up: chain %s at seq %d, gRPC %s, HTTP %s", self.config.chain_id,
                 self.ledger.head_seq, self.grpc_endpoint, self.url)
        return self

    def _start_http(self) -> None:
        host, port = _split(self.config.http_listen)
        if not is_loopback(host) and not self.accounts.has_users():
            # Before the first account exists the API serves loopback callers without
            # sign-in (webauth.py); it must never be reachable from elsewhere like that.
            raise ConfigError(f"--http-listen {self.config.http_listen}: create a console user "
                             "first (aitrail user add NAME --role admin), or listen on 127.0.0.1")
        tls = self.config.http_tls
        # uvicorn's own proxy handling is off: by default it believes X-Forwarded-For
        # from 127.0.0.1, which would let any local proxy decide who is "local".
        # asgi_app applies it for --trusted-proxies only, keeping the real peer.
        cfg = uvicorn.Config(asgi_app(create_app(self.services()), self.config.trusted_proxies),
                             host=host, port=port, log_level="warning", access_log=False,
                             proxy_headers=False, server_header=False,
                             ssl_certfile=tls.cert if tls else None,
                             ssl_keyfile=tls.key if tls else None)
        self._http = uvicorn.Server(cfg)
        self._http_thread = threading.Thread(target=self._http.run, name="http", daemon=True)
        self._http_thread.start()
        while not self._http.started:
            if not self._http_thread.is_alive():
                raise OSError(f"cannot serve HTTP on {self.config.http_listen}")
            self._http_thread.join(0.02)
        self.http_port = self._http.servers[0].sockets[0].getsockname()[1]

    def services(self) -> Services:
        """What the web layer may use of this collector."""
        pem = self.private_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        access = AccessLog(self.ledger, self.admin_queue.path)
        return Services(store=self.store, auth=self.auth, access=access,
                        ledger=self.ledger, checkpointer=self.checkpointer, trust=self.trust,
                        public_key_pem=pem, otlp=self.otlp,
                        info={"chain_id": self.config.chain_id, "grpc": self.grpc_endpoint,
                              "hashing": native.status()})

    def _write_local_token(self) -> None:
        """A token for the CLI on this machine, readable only by whoever may read the
        store's directory anyway (mode 0600); a new one at every start."""
        assert self.store.data_dir is not None
        write_secret(self.store.data_dir.local_token, self.auth.local_token + "\n")

    def _write_lock(self) -> None:
        if self.store.data_dir is not None:
            self._write_local_token()
            with open(self.store.data_dir.lock_file, "w") as fh:
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
        self.admin_queue.stop()
        self.checkpointer.stop()  # the closing checkpoint covers everything stored
        log.info("stopping: closing checkpoint after %.2f s", time.monotonic() - started)
        if self.store.data_dir is not None:
            for path in (self.store.data_dir.lock_file, self.store.data_dir.local_token):
                try:
                    os.remove(path)
                except FileNotFoundError:
                    pass
        self.ledger.close()
        self.store.close()
        log.info("collector stopped after %.2f s", time.monotonic() - started)

    def serve_forever(self, stop: Optional[threading.Event] = None) -> None:
        """Serve until ``stop`` is set (by default: until SIGINT or SIGTERM)."""
        stop = stop or stop_on_signals()
        # Never an untimed wait: the kernel may deliver SIGTERM to any thread (the
        # engine and gRPC run dozens), and CPython then runs the Python handler only
        # when the main thread next executes bytecode, which an untimed lock wait
        # never does. Waking every signal_poll_s lets the handler run.
        while not stop.wait(self.config.signal_poll_s):
            pass
        log.info("collector stopping")
        # Shutdown waits on other libraries' threads and on the engine; if one of
        # them hangs, dump every thread's stack and exit 1 rather than hang for
        # good. Acknowledged records are durable already; the next start seals a
        # checkpoint of whatever the closing one would have covered.
        faulthandler.dump_traceback_later(self.config.shutdown_limit_s, exit=True)
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
