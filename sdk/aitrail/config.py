"""SDK configuration: keyword arguments to ``configure``, else environment variables.

=============================  ======================================  =================
keyword                        environment variable                    default
=============================  ======================================  =================
endpoint                       AITRAIL_ENDPOINT                        127.0.0.1:4327
service                        AITRAIL_SERVICE (or OTEL_SERVICE_NAME)  unknown_service
service_version                AITRAIL_SERVICE_VERSION                 ""
environment                    AITRAIL_ENVIRONMENT                     ""
redaction_key                  AITRAIL_REDACTION_KEY                   random per process
redaction (on/off)             AITRAIL_REDACTION                       on
enabled                        AITRAIL_ENABLED                         on
batch_size                     AITRAIL_BATCH_SIZE                      512
flush_interval (s)             AITRAIL_FLUSH_INTERVAL                  0.2
max_queue                      AITRAIL_MAX_QUEUE                       100000
export_timeout (s)             AITRAIL_EXPORT_TIMEOUT                  10
retry_for (s)                  AITRAIL_RETRY_FOR                       60
delivery                       AITRAIL_DELIVERY                        durable
spool_dir                      AITRAIL_SPOOL_DIR                       (see below)
spool_max_bytes                AITRAIL_SPOOL_MAX_BYTES                 268435456 (256 MiB)
strict_timeout (s)             AITRAIL_STRICT_TIMEOUT                  5
api_key                        AITRAIL_API_KEY                         none
tls                            AITRAIL_TLS                             off (on with a CA/cert)
ca_cert (path)                 AITRAIL_CA_CERT                         system roots
client_cert, client_key        AITRAIL_CLIENT_CERT, AITRAIL_CLIENT_KEY none (mutual TLS)
=============================  ======================================  =================

The spool directory defaults to ``~/.local/state/aitrail/spool/<service>`` (or
``$XDG_STATE_HOME/aitrail/spool/<service>``).

``delivery`` is ``durable`` (spool to disk when the collector cannot take a
batch), ``best_effort`` (never touch the disk; drop and count) or ``strict``
(every emitting call waits for its record's acknowledgement and raises
``aitrail.AuditUnavailable`` when it does not come within ``strict_timeout``).
"""

from __future__ import annotations

import os
import socket
import warnings
from dataclasses import dataclass, field
from typing import Callable, Mapping, Optional, TypedDict

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    low = raw.strip().lower()
    if low in _TRUE:
        return True
    if low in _FALSE:
        return False
    raise ValueError(f"{name}={raw!r}: expected one of on/off, true/false, 1/0")


def _env_number(name: str, default: float, kind: type[float]) -> float:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = kind(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r}: expected a {kind.__name__}") from None
    if value <= 0:
        raise ValueError(f"{name}={raw!r}: must be positive")
    return value


class TlsSettings(TypedDict):
    """:meth:`Config.read_tls`: the TLS keyword arguments of ``GrpcExporter``."""
    tls: bool
    ca_cert: Optional[bytes]
    client_cert: Optional[bytes]
    client_key: Optional[bytes]


@dataclass
class Config:
    endpoint: str = "127.0.0.1:4327"
    service: str = "unknown_service"
    service_version: str = ""
    environment: str = ""
    host: str = field(default_factory=socket.gethostname)
    enabled: bool = True
    redaction: bool = True
    redaction_key: bytes = b""
    redaction_policy: Mapping[str, str] = field(default_factory=dict)
    reference_store: Optional[Callable[[str, str], str]] = None
    batch_size: int = 512
    flush_interval: float = 0.2
    max_queue: int = 100_000
    export_timeout: float = 10.0
    retry_for: float = 60.0
    delivery: str = "durable"
    spool_dir: str = ""
    spool_max_bytes: int = 256 * 1024 * 1024
    strict_timeout: float = 5.0
    api_key: str = ""
    tls: bool = False
    ca_cert: str = ""
    client_cert: str = ""
    client_key: str = ""

    @classmethod
    def from_env(cls) -> "Config":
        key = os.environ.get("AITRAIL_REDACTION_KEY", "")
        return cls(
            endpoint=os.environ.get("AITRAIL_ENDPOINT") or cls.endpoint,
            service=(os.environ.get("AITRAIL_SERVICE") or os.environ.get("OTEL_SERVICE_NAME")
                     or cls.service),
            service_version=os.environ.get("AITRAIL_SERVICE_VERSION", ""),
            environment=os.environ.get("AITRAIL_ENVIRONMENT", ""),
            enabled=_env_bool("AITRAIL_ENABLED", True),
            redaction=_env_bool("AITRAIL_REDACTION", True),
            redaction_key=key.encode("utf-8"),
            batch_size=int(_env_number("AITRAIL_BATCH_SIZE", cls.batch_size, int)),
            flush_interval=_env_number("AITRAIL_FLUSH_INTERVAL", cls.flush_interval, float),
            max_queue=int(_env_number("AITRAIL_MAX_QUEUE", cls.max_queue, int)),
            export_timeout=_env_number("AITRAIL_EXPORT_TIMEOUT", cls.export_timeout, float),
            retry_for=_env_number("AITRAIL_RETRY_FOR", cls.retry_for, float),
            delivery=os.environ.get("AITRAIL_DELIVERY") or cls.delivery,
            spool_dir=os.environ.get("AITRAIL_SPOOL_DIR", ""),
            spool_max_bytes=int(_env_number("AITRAIL_SPOOL_MAX_BYTES", cls.spool_max_bytes, int)),
            strict_timeout=_env_number("AITRAIL_STRICT_TIMEOUT", cls.strict_timeout, float),
            api_key=os.environ.get("AITRAIL_API_KEY", ""),
            tls=_env_bool("AITRAIL_TLS", False),
            ca_cert=os.environ.get("AITRAIL_CA_CERT", ""),
            client_cert=os.environ.get("AITRAIL_CLIENT_CERT", ""),
            client_key=os.environ.get("AITRAIL_CLIENT_KEY", ""),
        )

    def validate(self) -> None:
        if not self.endpoint or ":" not in self.endpoint:
            raise ValueError(f"endpoint {self.endpoint!r}: expected HOST:PORT")
        if not self.service:
            raise ValueError("service must not be empty")
        for name in ("batch_size", "max_queue"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be at least 1")
        for name in ("flush_interval", "export_timeout", "retry_for", "strict_timeout"):
            if float(getattr(self, name)) <= 0:
                raise ValueError(f"{name} must be positive")
        modes = ("durable", "best_effort", "strict")
        if self.delivery not in modes:
            raise ValueError(f"delivery {self.delivery!r}: expected one of {', '.join(modes)}")
        if not self.spool_dir:
            state = os.environ.get("XDG_STATE_HOME") or os.path.expanduser("~/.local/state")
            safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in self.service)
            self.spool_dir = os.path.join(state, "aitrail", "spool", safe)
        if bool(self.client_cert) != bool(self.client_key):
            raise ValueError("client_cert and client_key go together (mutual TLS)")
        for name in ("ca_cert", "client_cert", "client_key"):
            path = getattr(self, name)
            if path and not os.path.isfile(path):
                raise ValueError(f"{name} {path!r}: no such file")
        if not self.redaction_key:
            # Without a stable key, tokens differ between processes and runs.
            warnings.warn("aitrail: no redaction key configured (AITRAIL_REDACTION_KEY); "
                          "using a random per-process key, so redaction tokens are not "
                          "comparable across processes", RuntimeWarning, stacklevel=3)
            self.redaction_key = os.urandom(32)

    def read_tls(self) -> TlsSettings:
        """The exporter's TLS settings, file contents read once at configure time."""
        def read(path: str) -> Optional[bytes]:
            if not path:
                return None
            with open(path, "rb") as fh:
                return fh.read()
        return {"tls": self.tls, "ca_cert": read(self.ca_cert),
                "client_cert": read(self.client_cert), "client_key": read(self.client_key)}
