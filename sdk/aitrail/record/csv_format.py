"""CSV for auditors: a fixed header, ISO 8601 times, formula-safe cells.

Used by the collector's export endpoint and by ``aitrail query --format csv``.
"""

from __future__ import annotations

import csv
import io
from typing import Any, Iterable, Iterator

from aitrail.record.event_types import payload_names, result_columns

PAYLOAD_COLUMNS: tuple[str, ...] = payload_names()  # equal to envelope.PAYLOAD_NAMES

# The columns of a search result / CSV export, in order; derived from the table of
# event types (see event_types.result_columns). The collector's SQL export writes
# one expression per column, in this order.
RESULT_COLUMNS: tuple[str, ...] = result_columns()


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: Any) -> Any:
    """Spreadsheet-safe cell: text that a spreadsheet would run as a formula is quoted."""
    if isinstance(value, dict):
        value = ";".join(f"{k}={v}" for k, v in sorted(value.items()))
    if value is None:
        return ""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def csv_lines(records: Iterable[dict[str, Any]]) -> Iterator[str]:
    """CSV text, header first, one chunk per record (UTF-8 friendly, RFC 4180 quoting)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n")
    writer.writerow(RESULT_COLUMNS)
    yield buf.getvalue()
    for rec in records:
        buf.seek(0)
        buf.truncate()
        writer.writerow([csv_cell(rec.get(col)) for col in RESULT_COLUMNS])
        yield buf.getvalue()
