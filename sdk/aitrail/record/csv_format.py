"""CSV for auditors: a fixed header, ISO 8601 times, formula-safe cells.

Used by the collector's export endpoint and by ``aitrail query --format csv``.
"""

from __future__ import annotations

import csv
import io
import re
from typing import Any, Iterable, Iterator

from aitrail.record.event_types import payload_names, result_columns

PAYLOAD_COLUMNS: tuple[str, ...] = payload_names()  # equal to envelope.PAYLOAD_NAMES

# The columns of a search result / CSV export, in order; derived from the table of
# event types (see event_types.result_columns). The collector's SQL export writes
# one expression per column, in this order.
RESULT_COLUMNS: tuple[str, ...] = result_columns()


# A cell a spreadsheet may run as a formula (CWE-1236): one starting with a formula
# character (= + - @, | and % for DDE and some importers, U+FF1D FULLWIDTH EQUALS
# SIGN, which some normalise to =), a TAB, CR or LF, or an NBSP; or any run of
# spaces and NBSPs followed by one of those (spreadsheets trim leading blanks).
# store/export.py writes the same test in SQL (FORMULA_SQL); a test holds the
# CSV both write byte-identical.
FORMULA_CHARS = "=+-@|%\uff1d\t\r\n"
_FORMULA = re.compile("\u00a0|[ \u00a0]*[" + re.escape(FORMULA_CHARS) + "]")


def is_formula(text: str) -> bool:
    """True when a spreadsheet may run ``text`` as a formula (see FORMULA_CHARS)."""
    return _FORMULA.match(text) is not None


def csv_cell(value: Any) -> Any:
    """Spreadsheet-safe cell: text that a spreadsheet would run as a formula is quoted."""
    if isinstance(value, dict):
        value = ";".join(f"{k}={v}" for k, v in sorted(value.items()))
    if value is None:
        return ""
    if isinstance(value, str) and is_formula(value):
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
