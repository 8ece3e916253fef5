"""Reads that leave a trace: an export streamed to the caller is sealed as a
``data_access`` record once it ends (however it ends), with the rows it held.
Shared by the JSON API and the console."""

from __future__ import annotations

from typing import Iterator

from aitrail.record.csv_format import RowCounter
from aitrail_collector.store import queries as query
from aitrail_collector.store.export import export_csv
from aitrail_collector.web.auth.accounts import Principal
from aitrail_collector.web.services import Services


def export(services: Services, who: Principal, f: query.Filters,
           via: str = "console", columns: str = "full") -> Iterator[bytes]:
    counter = RowCounter()
    try:
        for chunk in export_csv(services.store, f, columns):
            counter.feed(chunk)
            yield chunk
    finally:
        services.access.record(who, "export", {**f.describe(), "columns": columns},
                               max(counter.rows - 1, 0), via=via)  # less the header
