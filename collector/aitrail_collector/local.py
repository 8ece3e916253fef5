"""Direct access to a store no collector holds: the same answers as the HTTP API."""

from __future__ import annotations

from typing import Any, Iterator, Mapping

from aitrail.client import ClientError
from aitrail_collector import query
from aitrail_collector.export import export_csv as render_csv
from aitrail_collector.store import Store, StoreError
from aitrail_collector.verify import verify_store


class LocalBackend:
    def __init__(self, dsn: str):
        try:
            self.store = Store(dsn)
            has_schema = self.store.has_schema()
        except StoreError as exc:
            raise ClientError(str(exc)) from None
        if not has_schema:
            raise ClientError(f"no aitrail ledger at {dsn} (run `aitrail collector` or "
                              "`aitrail demo` to create one)")

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
        f = self._filters(params, limit="all", offset="0")
        yield from render_csv(self.store, f)

    def verify(self) -> dict:
        return verify_store(self.store)

    def summary(self) -> dict:
        return query.summary(self.store)
