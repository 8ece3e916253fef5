"""The collector's configuration: every default is written here, once.

``CollectorConfig`` holds what ``aitrail collector`` (and the demo) take on the
command line; the flags in ``commands.py`` read their defaults from it, and the
parts the composition root (``app.py``) builds get their values from it.
``DataDir`` is the one description of an embedded store directory's layout.
"""

from __future__ import annotations

import ipaddress
import json
import os
import stat
from dataclasses import dataclass, field
from typing import Optional

import grpc

from aitrail.errors import AitrailError
from aitrail.otel.mapping import MappingOptions
from aitrail.record.redact import ACTIONS, REFERENCE

CHDB_SCHEME = "chdb://"
REDACTION_KEY_ENV = "AITRAIL_REDACTION_KEY"  # the SDK's (aitrail/config.py)


class ConfigError(AitrailError, ValueError):
    """The configuration cannot be used; the message names the setting."""


@dataclass(frozen=True)
class Limits:
    """Per-record limits on what a client may send (hostile input)."""
    max_record_bytes: int = 4 * 1024 * 1024
    max_id_chars: int = 256            # record, task, request, reviewer, actor ids
    max_name_chars: int = 1024         # model names, versions, codes, services
    max_text_chars: int = 1024 * 1024  # each payload: input, output, rationale, ...
    max_attributes: int = 64
    max_attribute_chars: int = 4096
    max_logprobs: int = 100_000
    future_skew_s: int = 300           # start_time may be this far ahead of our clock
    max_age_s: int = 30 * 86400        # and at most this far behind it


@dataclass(frozen=True)
class TlsFiles:
    cert: str
    key: str
    client_ca: str = ""  # set: clients must present a certificate it signed (mutual TLS)

    def credentials(self) -> grpc.ServerCredentials:
        def read(path: str) -> bytes:
            with open(path, "rb") as fh:
                return fh.read()
        ca = read(self.client_ca) if self.client_ca else None
        return grpc.ssl_server_credentials([(read(self.key), read(self.cert))],
                                           root_certificates=ca, require_client_auth=ca is not None)


@dataclass
class CollectorConfig:
    dsn: str
    chain_id: str = "main"
    grpc_listen: str = "127.0.0.1:4327"
    http_listen: Optional[str] = "127.0.0.1:8327"
    retention_days: int = 6 * 366        # six years, in whole days
    limits: Limits = field(default_factory=Limits)
    max_message_bytes: int = 64 * 1024 * 1024
    max_records_per_batch: int = 10_000
    max_pending_records: int = 100_000   # past this, RESOURCE_EXHAUSTED with a retry hint
    max_pending_bytes: int = 256 * 1024 * 1024  # request bytes held waiting; likewise
    retry_pushback_ms: int = 500
    grpc_workers: int = 8
    api_keys: Optional[str] = None       # keys file; set: every request needs a valid key
    tls: Optional[TlsFiles] = None
    http_tls: Optional[TlsFiles] = None  # set: the console and API serve https only
    # Reverse proxies in front of the HTTP side (addresses or networks). A request from
    # one is never a loopback caller, whatever it forwards (README: The console).
    trusted_proxies: tuple[str, ...] = ()
    signing_key: Optional[str] = None    # Ed25519 private key (PEM); default DataDir.signing_key
    anchor: Optional[str] = None         # directory or s3://bucket/prefix; default DataDir.anchor
    # While records arrive, a checkpoint is signed and anchored at most this long after
    # the first acknowledged record no checkpoint covers yet: the crash window, in which
    # acknowledged records can be deleted without a trace outside the data directory.
    checkpoint_latency: float = 5.0
    # At most one checkpoint on demand (a proof of a record none covers yet) per this
    # many seconds; other such requests wait for the next one on the cadence.
    checkpoint_interval: float = 300.0
    checkpoint_max_quiet: float = 86_400.0
    production: bool = False             # refuse a trust root inside the data directory
    demo: bool = False                   # the demo: a trust root in the data dir is expected
    users: Optional[str] = None          # console accounts file; default DataDir.users
    session_idle_s: float = 1800.0
    envelope_version: int = 3            # the canonical encoding new records are sealed under
    pipelined_commit: bool = True        # seal the next group while one is stored
    # The OTLP receivers (ingest/otlp.py) redact span content like the SDK does, with
    # this key (a file holding it; else $AITRAIL_REDACTION_KEY, the SDK's variable;
    # else a random key per process, with a warning) and this policy ({field: action},
    # the SDK's redaction_policy), and take the task id from the first of these
    # attributes (or baggage) that a span has.
    redaction_key_file: Optional[str] = None
    redaction_policy: tuple[tuple[str, str], ...] = ()
    otlp_task_id_keys: tuple[str, ...] = MappingOptions().task_id_keys
    shutdown_limit_s: float = 60.0       # a shutdown stuck this long dumps stacks, exits 1
    signal_poll_s: float = 0.2

    def validate(self) -> None:
        if self.envelope_version not in (1, 2, 3):
            raise ConfigError("--envelope-version must be 1, 2 or 3")
        if self.retention_days < 1:
            raise ConfigError("--retention-days must be at least one day")
        if min(self.checkpoint_interval, self.checkpoint_max_quiet, self.checkpoint_latency) <= 0:
            raise ConfigError("--checkpoint-latency, --checkpoint-interval and "
                              "--checkpoint-max-quiet must be positive")
        paths = []
        for tls in (self.tls, self.http_tls):
            if tls is not None:
                paths += [tls.cert, tls.key, tls.client_ca]
        for proxy in self.trusted_proxies:
            try:
                ipaddress.ip_network(proxy, strict=False)
            except ValueError:
                raise ConfigError(f"--trusted-proxies {proxy!r}: expected an IP address or "
                                  "network (127.0.0.1, 10.0.0.0/8)") from None
        for path in paths + [self.api_keys, self.signing_key, self.redaction_key_file]:
            if path and not os.path.isfile(path):
                raise ConfigError(f"{path}: no such file")
        if not self.otlp_task_id_keys or not all(self.otlp_task_id_keys):
            raise ConfigError("--otlp-task-id-keys: name at least one attribute, none empty")
        for name, action in self.redaction_policy:
            if action not in ACTIONS or action == REFERENCE:
                raise ConfigError(f"--redaction-policy {name}={action}: the action must be "
                                  f"one of {', '.join(a for a in ACTIONS if a != REFERENCE)} "
                                  "(the collector has no reference store)")

    def redaction_key(self) -> tuple[bytes, str]:
        """(key, where it came from) for span content: the key file (its text without the
        line end, so it gives the same tokens as the same text in the SDK's
        AITRAIL_REDACTION_KEY), else that variable, else (b"", "none")."""
        if self.redaction_key_file:
            with open(self.redaction_key_file, "rb") as fh:
                key = fh.read().rstrip(b"\r\n")
            if not key:
                raise ConfigError(f"--redaction-key-file {self.redaction_key_file}: empty")
            return key, self.redaction_key_file
        env = os.environ.get(REDACTION_KEY_ENV, "")
        return (env.encode("utf-8"), f"${REDACTION_KEY_ENV}") if env else (b"", "none")


def default_data_dir() -> str:
    return os.environ.get("AITRAIL_DATA_DIR") or os.path.join(os.getcwd(), "aitrail-data")


def dsn_for(data_dir: Optional[str] = None, clickhouse: Optional[str] = None) -> str:
    """The store's DSN: ``--clickhouse`` as given, else the embedded store directory."""
    if clickhouse:
        if not clickhouse.startswith(("chdb:", "http://", "https://")):
            raise ConfigError(f"--clickhouse {clickhouse!r}: expected chdb:///path, "
                              "http://host:8123 or https://host:8443")
        return clickhouse
    return CHDB_SCHEME + os.path.realpath(data_dir or default_data_dir())


@dataclass(frozen=True)
class DataDir:
    """An embedded store directory: the engine's files, and beside them the
    collector's (the demo's defaults for the signing key and the anchor, the
    console accounts, the running collector's lock and its CLI token)."""
    root: str

    @classmethod
    def of_dsn(cls, dsn: str) -> Optional["DataDir"]:
        """The directory of a ``chdb://`` DSN; None for a ClickHouse server."""
        if not dsn.startswith(CHDB_SCHEME):
            return None
        return cls(dsn[len(CHDB_SCHEME):])

    @property
    def dsn(self) -> str:
        return CHDB_SCHEME + self.root

    def _path(self, name: str) -> str:
        return os.path.join(self.root, name)

    @property
    def signing_key(self) -> str:
        return self._path("signing-key.pem")

    @property
    def public_key(self) -> str:
        return self._path("signing-key.pub")

    @property
    def anchor(self) -> str:
        return self._path("anchor")

    @property
    def users(self) -> str:
        return self._path("console-users.json")

    @property
    def lock_file(self) -> str:
        """``collector.json``: the running collector's pid and URLs."""
        return self._path("collector.json")

    @property
    def local_token(self) -> str:
        """The running collector's token for CLI commands on this machine (0600)."""
        return self._path("local-token")

    def secure(self) -> int:
        """Make the directory 0700 and take group and other access off everything in
        it (a store made before the collector set its umask); the number changed."""
        os.makedirs(self.root, mode=0o700, exist_ok=True)
        changed = 0
        for path in [self.root, *self._walk()]:
            try:
                mode = os.lstat(path).st_mode
                if stat.S_ISLNK(mode) or not mode & 0o077:
                    continue
                os.chmod(path, stat.S_IMODE(mode) & ~0o077)
                changed += 1
            except FileNotFoundError:
                continue  # the engine removed it meanwhile
        return changed

    def loose_modes(self) -> list[tuple[str, int]]:
        """Files and directories here that group or others may read, write or enter."""
        out = []
        for path in [self.root, *self._walk()]:
            try:
                mode = os.lstat(path).st_mode
            except FileNotFoundError:
                continue
            if not stat.S_ISLNK(mode) and mode & 0o077:
                out.append((path, stat.S_IMODE(mode)))
        return out

    def _walk(self) -> list[str]:
        out = []
        for top, dirs, files in os.walk(self.root):
            out += [os.path.join(top, n) for n in dirs + files]
        return out

    def running_collector(self) -> Optional[dict]:
        """The collector holding this directory, if one is alive: its pid and URLs."""
        try:
            with open(self.lock_file) as fh:
                info = json.load(fh)
            os.kill(int(info["pid"]), 0)
        except (OSError, ValueError, KeyError, TypeError):
            return None
        return info if isinstance(info, dict) else None

    def read_local_token(self) -> Optional[str]:
        try:
            with open(self.local_token, encoding="utf-8") as fh:
                return fh.read().strip() or None
        except OSError:
            return None


__all__ = ["CollectorConfig", "ConfigError", "DataDir", "Limits", "TlsFiles", "default_data_dir",
           "dsn_for"]
