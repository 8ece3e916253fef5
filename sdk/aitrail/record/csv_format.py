"""CSV for auditors: a fixed header, ISO 8601 times, formula-safe cells.

Used by the collector's export endpoint and by ``aitrail query --format csv``.
"""

from __future__ import annotations

import csv
import io
from typing import Any, Iterable, Iterator

from aitrail.verify.envelope import PAYLOAD_NAMES as PAYLOAD_COLUMNS

# The columns of a search result / CSV export, in order.
RESULT_COLUMNS = (
    "time", "end_time", "received_time", "seq", "chain_id", "record_id", "event_type", "task_id",
    "request_id", "trace_id", "span_id", "parent_span_id", "service", "service_version",
    "environment", "host", "provider", "model", "model_version", "prompt_template_id",
    "prompt_version", "confidence", "input_tokens", "output_tokens", "streamed", "reviewer_id",
    "decision", "time_spent_ms", "reason_code", "policy_ref", "escalation_from", "escalation_to",
    "escalation_reason", "resolution_outcome", "final_decision", "actor", "resource", "purpose",
    "error_type", "error_message", "attributes", "parameters",
) + PAYLOAD_COLUMNS + ("leaf_hash", "chain_hash")


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
