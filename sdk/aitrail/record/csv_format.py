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

# The CSV's two column sets. "full", for systems: every result column, in the places
# they have always had, then three derived ones at the end (so a reader that counts
# columns keeps working): the model and prompt version of the model call a review
# reviewed (the task's latest model call before it; empty on other rows), and the
# review's time spent in seconds. "compact", for people: what a reviewer's decision
# needs on one row, a review's model and prompt version being its task's. The API's
# export defaults to full (compatibility), the console's to compact.
DERIVED_COLUMNS: tuple[str, ...] = ("task_model", "task_prompt_version", "time_spent_s")
FULL_COLUMNS: tuple[str, ...] = RESULT_COLUMNS + DERIVED_COLUMNS
COMPACT_COLUMNS: tuple[str, ...] = (
    "time", "event_type", "task_id", "request_id", "model", "prompt_version",
    "reviewer_id", "decision", "reason_code", "policy_ref", "rationale", "time_spent_s",
    "confidence", "escalation_from", "escalation_to", "escalation_reason",
    "resolution_outcome", "final_decision", "actor", "resource", "evaluation_name",
    "score_value", "score_label", "error_message", "input", "output", "modified_output",
    "service", "record_id")
COLUMN_SETS: dict[str, tuple[str, ...]] = {"full": FULL_COLUMNS, "compact": COMPACT_COLUMNS}
# A compact column that a review takes from its task's model call.
COMPACT_FROM_TASK: dict[str, str] = {"model": "task_model",
                                     "prompt_version": "task_prompt_version"}


def seconds_text(ms: int) -> str:
    """Milliseconds as exact decimal seconds, no trailing zeros: 42000 -> 42,
    1500 -> 1.5, 1234 -> 1.234 (store/export.py writes the same in SQL)."""
    whole, frac = divmod(int(ms), 1000)
    return f"{whole}.{frac:03d}".rstrip("0") if frac else str(whole)


def cell_value(rec: dict[str, Any], col: str, columns: str = "full") -> Any:
    """What a record holds in column ``col`` of the column set ``columns``."""
    if col == "time_spent_s":
        return seconds_text(rec.get("time_spent_ms") or 0) if rec.get("event_type") == "review" \
            else ""
    if columns == "compact" and col in COMPACT_FROM_TASK and rec.get("event_type") == "review":
        return rec.get(col) or rec.get(COMPACT_FROM_TASK[col])
    return rec.get(col)


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


def csv_lines(records: Iterable[dict[str, Any]], columns: str = "full") -> Iterator[str]:
    """CSV text, header first, one chunk per record (UTF-8 friendly, RFC 4180 quoting),
    in the column set ``columns`` (COLUMN_SETS). A review's task_model and
    task_prompt_version are read from the record (the collector's search attaches
    them)."""
    names = COLUMN_SETS[columns]
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n")
    writer.writerow(names)
    yield buf.getvalue()
    for rec in records:
        buf.seek(0)
        buf.truncate()
        writer.writerow([csv_cell(cell_value(rec, col, columns)) for col in names])
        yield buf.getvalue()


class RowCounter:
    """Counts the rows of CSV text fed in chunks of any size, as ``csv_lines`` writes it:
    each row ends in a line break, and a line break inside a quoted cell (a prompt's own
    CR LF) ends nothing. A quote toggles "inside a cell" (a doubled quote toggles twice),
    so the rows are the LFs outside quotes: per chunk one split on the quote and one
    count over the outside pieces, both in C, not a loop over rows or cells."""

    def __init__(self) -> None:
        self.rows = 0
        self._quoted = False  # whether the text so far ends inside a quoted cell

    def feed(self, chunk: bytes) -> None:
        if b'"' not in chunk:
            if not self._quoted:
                self.rows += chunk.count(b"\n")
            return
        pieces = chunk.split(b'"')
        self.rows += b"".join(pieces[1 if self._quoted else 0::2]).count(b"\n")
        self._quoted ^= len(pieces) % 2 == 0  # an odd number of quotes in this chunk
