"""What the web layer is given: a typed bundle of the collector's parts.

The JSON API and the console receive this object and nothing else, so they
cannot reach into the collector. A store opened without a collector (tests,
benchmarks) leaves the signing parts unset: what needs the chain's signer
(proofs on demand, erasure, sealed reads) answers 503 then.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from aitrail.verify.audit import Trust
from aitrail_collector.ingest.otlp import OtlpReceiver
from aitrail_collector.ledger.access_log import AccessLog
from aitrail_collector.ledger.checkpointer import Checkpointer
from aitrail_collector.ledger.group_commit import Ledger
from aitrail_collector.store.client import Store
from aitrail_collector.web.auth.guard import WebAuth


@dataclass
class Services:
    store: Store
    auth: WebAuth
    access: AccessLog
    ledger: Optional[Ledger] = None
    checkpointer: Optional[Checkpointer] = None
    trust: Callable[[], Optional[Trust]] = lambda: None
    public_key_pem: Optional[bytes] = None
    info: dict[str, Any] = field(default_factory=dict)  # shown by /healthz
    otlp: Optional[OtlpReceiver] = None  # set: POST /v1/traces, and its counters in /healthz

    def durable_head(self, chain_id: str) -> Optional[int]:
        """The last seq this collector has stored in full on ``chain_id`` (None: not a
        chain it writes): where a verification it runs stops (audit.verify.verify_store)."""
        ledger = self.ledger
        return ledger.head_seq if ledger is not None and ledger.chain_id == chain_id else None

    def issued_checkpoint(self, chain_id: str) -> int:
        """The newest checkpoint this collector signed on ``chain_id`` (0: none yet, or
        not its chain): the database holds it before the anchor does."""
        cp = self.checkpointer
        last = cp.last if cp is not None and cp.chain_id == chain_id else None
        return last.checkpoint.number if last is not None else 0

    @property
    def signs(self) -> bool:
        """Whether this process seals the chain (a running collector)."""
        return self.ledger is not None and self.checkpointer is not None
