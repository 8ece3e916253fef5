"""CSV for auditors: a fixed header, ISO 8601 times, formula-safe cells.

Used by the collector's export endpoint and by ``aitrail query --format csv``.
"""

from __future__ import annotations

import csv
import io
import math
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


def float_text(x: float) -> str:
    """A finite float as ClickHouse's toString writes it (the engine renders the SQL
    export, store/export.py, and the two exports agree byte for byte): the shortest
    digits that read back as ``x`` (Python's repr has the same digits), positional when
    the decimal exponent is within -6..20, else ``d.ddde<exponent>``; no ``.0`` on whole
    numbers, ``-0`` for negative zero. An evaluation's score is any finite number, so
    every spelling occurs (tests/unit/test_csv_format.py holds this to the engine)."""
    if x == 0:
        return "-0" if math.copysign(1.0, x) < 0 else "0"
    sign = "-" if x < 0 else ""
    mantissa, _, e = repr(abs(x)).partition("e")
    whole, _, frac = mantissa.partition(".")
    if e:
        exponent = int(e) + len(whole) - 1
    elif whole != "0":
        exponent = len(whole) - 1
    else:
        exponent = -(len(frac) - len(frac.lstrip("0"))) - 1
    digits = (whole + frac).lstrip("0").rstrip("0") or "0"
    if -6 <= exponent < 21:
        point = exponent + 1
        if point <= 0:
            return f"{sign}0.{'0' * -point}{digits}"
        if point >= len(digits):
            return sign + digits + "0" * (point - len(digits))
        return f"{sign}{digits[:point]}.{digits[point:]}"
    head = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
    return f"{sign}{head}e{exponent}"


def csv_cell(value: Any) -> Any:
    """Spreadsheet-safe cell: text that a spreadsheet would run as a formula is quoted."""
    if isinstance(value, float):
        return float_text(value) if math.isfinite(value) else str(value)
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
