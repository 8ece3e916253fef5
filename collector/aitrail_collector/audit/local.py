"""Direct access to a store no collector holds: the same answers as the HTTP API.

``open_backend`` is what the SDK's CLI loads (entry-point group
``aitrail.backends``, name ``store``) for ``--data-dir`` / ``--clickhouse``: a
directory a running collector holds is reached through that collector.
"""

from __future__ import annotations

import os
from typing import Any, Iterator, Mapping, Optional, Union

from clickhouse_connect.driver.exceptions import DatabaseError

from aitrail.cli.remote import ClientError, HttpBackend
from aitrail.verify.audit import AuditError, Trust
from aitrail.verify.checkpoint import CheckpointError, key_id, load_public_key
from aitrail.verify.pinned import PinnedError, parse_pinned
from aitrail.verify.trust_root import FROM_DATA_DIR, FROM_FLAG_ANCHOR, FROM_FLAG_KEY, trust_root
from aitrail_collector.anchor import AnchorError, open_anchor
from aitrail_collector.audit import proofs
from aitrail_collector.audit.verify import verify_store
from aitrail_collector.config import DataDir, default_data_dir, dsn_for
from aitrail_collector.errors import StoreError
from aitrail_collector.store import queries as query
from aitrail_collector.store.client import Store
from aitrail_collector.store.export import export_csv as render_csv


class LocalBackend:
    def __init__(self, dsn: str):
        # The engine writes files into the store while this process holds it (its
        # "status" file, parts of an erasure): private, as the collector makes them.
        os.umask(0o077)
        try:
            self.store = Store(dsn)
            has_schema = self.store.has_schema()
        except StoreError as exc:
            raise ClientError(str(exc)) from None
        if not has_schema:
            raise ClientError(f"no aitrail ledger at {dsn} (run `aitrail collector` or "
                              "`aitrail demo` to create one)")
        try:
            # A store made before the current envelope version lacks its columns, which
            # every read selects: added empty, metadata only (no row changes).
            self.store.add_version_columns()
        except (StoreError, DatabaseError) as exc:
            raise ClientError(f"cannot bring the store at {dsn} to this version's columns "
                              f"(metadata only; needs ALTER on aitrail.envelopes): {exc}"
                              ) from None

    @staticmethod
    def _filters(params: Mapping[str, Any], **override: Any) -> query.Filters:
        args = {k: v for k, v in params.items() if v is not None}
        if "type" in args:
            args["types"] = args.pop("type")
        args.update(override)
        try:
            return query.Filters.parse(**args)
        except query.FilterError as exc:
            raise ClientError(str(exc)) from None

    def search(self, params: Mapping[str, Any]) -> dict:
        f = self._filters(params)
        return {"total": query.count(self.store, f), "filters": f.describe(),
                "records": query.search(self.store, f)}

    def timeline(self, task_id: str) -> list[dict]:
        events = query.timeline(self.store, task_id)
        if not events:
            raise ClientError(f"no records for task {task_id!r}")
        return events

    def export_csv(self, params: Mapping[str, Any]) -> Iterator[bytes]:
        f = self._filters(params, limit=None, offset="0")
        yield from render_csv(self.store, f)

    def verify(self, from_checkpoint: Optional[int] = None, public_key: Optional[str] = None,
               anchor: Optional[str] = None, since_checkpoint: Optional[str] = None) -> dict:
        pinned = None
        if since_checkpoint is not None:
            try:
                pinned = parse_pinned(since_checkpoint)
            except PinnedError as exc:
                raise ClientError(str(exc)) from None
        trust = self._trust(public_key, anchor)
        try:
            report = verify_store(self.store, trust=trust, from_checkpoint=from_checkpoint,
                                  pinned=pinned)
        except AuditError as exc:
            raise ClientError(str(exc)) from None
        report["warnings"] += self._permission_warnings()
        return report

    def _permission_warnings(self) -> list[str]:
        """Group- or world-readable files in the data directory: a warning, not a finding.
        It exposes the records to other local users but is no sign that anything was
        changed, and a finding would make verify fail as if the ledger had been tampered with."""
        data_dir = self.store.data_dir
        loose = data_dir.loose_modes() if data_dir else []
        if not loose:
            return []
        assert data_dir is not None
        shown = ", ".join(f"{os.path.relpath(p, data_dir.root)} {m:04o}" for p, m in loose[:5])
        return [f"{len(loose)} file(s) or directories in the data directory {data_dir.root} are "
                f"open to group or others ({shown}{', ...' if len(loose) > 5 else ''}): the "
                "collector makes them 0600/0700 at its next start, or run "
                f"chmod -R go-rwx {data_dir.root}"]

    def _trust(self, public_key: Optional[str], anchor: Optional[str]) -> Trust:
        """The key and anchor given, else the embedded store's defaults beside it; the
        report names which, and warns when either sits inside the data directory."""
        data_dir = self.store.data_dir
        key_source = FROM_FLAG_KEY if public_key else None
        anchor_source = FROM_FLAG_ANCHOR if anchor else None
        if not public_key and data_dir and os.path.exists(data_dir.public_key):
            public_key, key_source = data_dir.public_key, FROM_DATA_DIR
        if not anchor and data_dir and os.path.isdir(data_dir.anchor):
            anchor, anchor_source = data_dir.anchor, FROM_DATA_DIR
        trust = Trust()
        try:
            if public_key:
                trust.public_key = load_public_key(public_key)
            if anchor:
                trust.anchor = open_anchor(anchor)
        except (CheckpointError, AnchorError, OSError) as exc:
            raise ClientError(str(exc)) from None
        trust.root = trust_root(
            data_dir=data_dir.root if data_dir else None, key_path=public_key,
            key_id=key_id(trust.public_key) if trust.public_key else None,
            key_source=key_source, anchor=anchor,
            anchor_describe=trust.anchor.describe() if trust.anchor else None,
            anchor_source=anchor_source)
        return trust

    def prove(self, record_id: str) -> str:
        try:
            return proofs.record_bundle(self.store, None, record_id)
        except (proofs.ProofRequestError, proofs.UnprovableRecord) as exc:
            raise ClientError(str(exc)) from None

    def summary(self) -> dict:
        return query.summary(self.store)

    def erase(self, *, task: Optional[str] = None, record_id: Optional[str] = None,
              reason: Optional[str] = None, actor: Optional[str] = None) -> dict:
        """Erase as a collector would, sealing the redaction record here: no collector
        holds this directory, so this process is the only one sealing its chains."""
        from aitrail.cli.remote import NothingToErase
        from aitrail_collector.ledger import erasure
        from aitrail_collector.ledger.group_commit import Ledger
        if not self.store.embedded:
            # A collector may be sealing into a server store right now: a second
            # sealer would fork its chain.
            raise ClientError("erasing in a ClickHouse server store goes through the collector "
                              "that seals its chain: use --url")
        ledgers: dict[str, Ledger] = {}

        def ledger_for(chain_id: str) -> Ledger:
            if chain_id not in ledgers:
                try:
                    ledgers[chain_id] = Ledger(self.store, chain_id)
                except StoreError as exc:
                    raise erasure.ErasureError(str(exc)) from None
            return ledgers[chain_id]
        try:
            return erasure.erase(self.store, ledger_for, task=task, record_id=record_id,
                                 reason=reason, actor=actor or "unknown")
        except erasure.ErasureError as exc:
            raise ClientError(str(exc)) from None
        except erasure.NothingToErase as exc:
            raise NothingToErase(str(exc)) from None


def open_backend(data_dir: Optional[str] = None, clickhouse: Optional[str] = None,
                 token: Optional[str] = None,
                 ca_cert: Optional[str] = None) -> Union[LocalBackend, HttpBackend]:
    """The ledger at ``--clickhouse`` or ``--data-dir`` (default: $AITRAIL_DATA_DIR, else
    ./aitrail-data); a directory a running collector holds is read through it."""
    if clickhouse:
        return LocalBackend(dsn_for(clickhouse=clickhouse))
    directory = DataDir(os.path.realpath(data_dir or default_data_dir()))
    if not os.path.isdir(directory.root):
        raise ClientError(f"no store at {directory.root} (run `aitrail demo` first, or pass "
                          "--url, --data-dir or --clickhouse)")
    held = directory.running_collector()
    if held and held.get("url"):
        # Whoever can read the store's directory may read the store: the collector
        # leaves a token there (mode 0600) for the CLI, which then acts as "local".
        return HttpBackend(held["url"], token=token or directory.read_local_token(),
                           ca_cert=ca_cert)
    return LocalBackend(directory.dsn)
