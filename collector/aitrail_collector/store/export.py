"""CSV export rendered by ClickHouse.

Byte for byte what ``aitrail.record.csv_format.csv_lines`` writes for the same records
(a test holds the two together), but the engine builds every line: ISO 8601
times, formula-safe cells, RFC 4180 quoting, and each payload joined and checked
against the commitment sealed in its envelope. Python only forwards the bytes,
which is what makes an export of millions of rows fast (BENCHMARKS.md).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timezone
from typing import Any, Iterator

from aitrail.record.csv_format import COLUMN_SETS, COMPACT_FROM_TASK, FORMULA_CHARS, csv_lines
from aitrail.verify.envelope import PAYLOAD_NAMES, V1_ENVELOPE_TEXT
from aitrail_collector.store.client import Store
from aitrail_collector.store.queries import ERASED, TAMPERED, Filters
from aitrail_collector.store.schema import DB


def _iso(col: str) -> str:
    return (f"concat(formatDateTime({col}, '%Y-%m-%dT%H:%i:%S', 'UTC'), '.',"
            f" leftPad(toString(intDiv(toUnixTimestamp64Nano({col}) % 1000000000, 1000)),"
            " 6, '0'), 'Z')")


def _literal(c: str) -> str:
    """One character as a regular expression inside an SQL string literal."""
    if c in "\t\r\n":
        return {"\t": "\\t", "\r": "\\r", "\n": "\\n"}[c]  # the literal's escape
    if c.isascii() and not c.isalnum():
        return "\\\\" + c  # an escaped regex metacharacter (the literal halves \\)
    return c


# csv_format.is_formula in the engine's regular expressions: an NBSP, or any run of
# spaces and NBSPs followed by a formula character. Alternatives, not character
# classes: the engine may read a pattern as bytes, and NBSP and U+FF1D are more
# than one byte in UTF-8.
FORMULA_SQL = ("'^(?:\u00a0|(?: |\u00a0)*(?:"
               + "|".join(_literal(c) for c in FORMULA_CHARS) + "))'")


# The bytes a formula can start with (csv_format.FORMULA_CHARS, a space, NBSP's lead
# byte 0xC2, U+FF1D's lead byte 0xEF): only a cell starting with one of them needs the
# regular expression, and ascii() of its first byte costs far less than a match.
FORMULA_LEAD = sorted({c.encode("utf-8")[0] for c in FORMULA_CHARS + " \u00a0"})


def _safe(expr: str) -> str:
    # csv_format.csv_cell: text a spreadsheet would run as a formula gets a leading quote.
    lead = ", ".join(map(str, FORMULA_LEAD))
    return (f"if(ascii({expr}) IN ({lead}) AND match({expr}, {FORMULA_SQL}),"
            f" concat('''', {expr}), {expr})")


def _map(col: str) -> str:
    return (f"arrayStringConcat(arrayMap(kv -> concat(kv.1, '=', kv.2),"
            f" arraySort(CAST({col}, 'Array(Tuple(String, String))'))), ';')")


def _unsealed(name: str) -> str:
    # queries._unsealed_value: a v1 row holds this free text in its envelope (a v1
    # redaction its reason in purpose); otherwise a missing payload is empty.
    if name in V1_ENVELOPE_TEXT:
        return f"if(e.envelope_version = 1, {_safe(f'toString(e.{name})')}, '')"
    if name == "erase_reason":
        return (f"if(e.envelope_version = 1 AND e.event_type = 'redaction',"
                f" {_safe('toString(e.purpose)')}, '')")
    return "''"


def _payload(name: str) -> str:
    # queries._attach_payloads: the row of that name whose salt || content hashes to the
    # sealed commitment gives the content; rows of that name of which none does read as
    # tampered, never as data; no row reads as erased. The payload table's own word
    # for its commitment is never used (it no longer stores one). The payload side
    # renders each content as its cell (formula guard, quotes) once, before the join.
    k = f"(indexOf(p.keys, concat('{name}:', e.commitments['{name}'])) AS k_{name})"
    return (f"if(mapContains(e.commitments, '{name}'), if({k} = 0,"
            f" if(has(p.names, '{name}'), '{TAMPERED}', '{ERASED}'),"
            f" p.cells[k_{name}]), {_quote(_unsealed(name))})")


# Cells that can never hold a comma, a quote or a line break (ISO times, numbers, hex)
# need no quoting check.
_PLAIN = ("time", "end_time", "received_time", "seq", "input_tokens", "output_tokens",
          "streamed", "time_spent_ms", "time_spent_s", "confidence", "score_value",
          "leaf_hash", "chain_hash")

# csv_format.seconds_text: exact decimal seconds, no trailing zeros; a review's only.
_SECONDS = ("if(e.event_type = 'review', concat(toString(intDiv(e.time_spent_ms, 1000)),"
            " if(e.time_spent_ms % 1000 = 0, '', concat('.', replaceRegexpOne("
            "leftPad(toString(e.time_spent_ms % 1000), 3, '0'), '0+$', '')))), '')")
# The task's model call a review reviewed (queries.task_model_sql), joined as m.
_TASK = {"task_model": "m.m_model", "task_prompt_version": "m.m_prompt"}


def _from_task(col: str, guard: bool = True) -> str:
    value = _safe(_TASK[col]) if guard else _TASK[col]
    return f"if(e.event_type = 'review' AND e.task_id != '', {value}, '')"


def cells(columns: str = "full", guard: bool = True) -> list[str]:
    """One SQL expression per cell of the column set (csv_format.COLUMN_SETS), each
    the text csv_format.cell_value and csv_cell write; a payload cell as the CSV holds
    it, quoted already (the payload side renders its contents before the join). With
    ``guard`` False, the envelope's text before the formula guard (payload cells keep
    theirs)."""
    safe = _safe if guard else (lambda expr: expr)
    out = []
    for col in COLUMN_SETS[columns]:
        if col == "time_spent_s":
            out.append(_SECONDS)
        elif col in _TASK:
            out.append(_from_task(col, guard))
        elif columns == "compact" and col in COMPACT_FROM_TASK:
            out.append(f"if(e.event_type = 'review' AND e.{col} = '',"
                       f" {_from_task(COMPACT_FROM_TASK[col], guard)},"
                       f" {safe(f'toString(e.{col})')})")
        elif col in ("time", "end_time", "received_time"):
            out.append(_iso("e.start_time" if col == "time" else f"e.{col}"))
        elif col in ("seq", "input_tokens", "output_tokens", "streamed", "time_spent_ms"):
            out.append(f"toString(e.{col})")
        elif col in ("confidence", "score_value"):  # csv_format.float_text
            out.append(f"ifNull(toString(e.{col}), '')")
        elif col in ("attributes", "parameters"):
            out.append(safe(_map(f"e.{col}")))
        elif col in ("leaf_hash", "chain_hash"):
            out.append(f"lower(hex(e.{col}))")
        elif col in PAYLOAD_NAMES:
            out.append(_payload(col))
        else:
            out.append(safe(f"toString(e.{col})"))
    return out


def _quote(c: str) -> str:
    # Python csv's QUOTE_MINIMAL: a cell holding a comma, a quote, CR or LF is quoted.
    return (f"if(multiSearchAny({c}, [',', '\"', '\\r', '\\n']),"
            f" concat('\"', replaceAll({c}, '\"', '\"\"'), '\"'), {c})")


def _quoted(i: int) -> str:
    return _quote(f"c{i}")


def _payload_window(filters: Filters) -> str:
    # The ledger writes a payload row with its envelope's start_time, so the filters'
    # time bounds also bound the payload rows: only those day partitions are read.
    out = ""
    if filters.since:
        out += " AND start_time >= fromUnixTimestamp64Nano({since:Int64})"
    if filters.until:
        out += " AND start_time < fromUnixTimestamp64Nano({until:Int64})"
    return out


def _narrows(filters: Filters) -> bool:
    """True when the filters pick records by more than their time: only then is it
    worth reading just the matching records' payloads (a set of their ids). With
    time bounds alone the window already bounds the payload rows, and the join
    ignores the rest."""
    return any(getattr(filters, key) is not None for key in (
        "task", "reviewer", "request_id", "trace_id", "record_id", "service")) or bool(
        filters.types or filters.variant or filters.activity != "include")


def _fast(raw: list[str]) -> str:
    """True for a row none of whose cells ``raw`` needs the formula guard or quotes:
    joined by commas, the text holds no quote, CR or LF and exactly one comma per
    joint (so no cell holds one), and no cell starts with a byte a formula can start
    with (csv_format.FORMULA_CHARS, a space, NBSP's or U+FF1D's lead byte). Such a
    row's guarded cells are its raw cells; the test is conservative (a cell that
    merely starts with such a byte takes the guarded way, which is exact too)."""
    joined = f"arrayStringConcat([{', '.join(raw)}], ',')"
    starts = ", ".join(f"concat(',', char({b}))" for b in FORMULA_LEAD)
    return (f"(countSubstrings({joined}, ',') = {len(raw) - 1}"
            f" AND NOT multiSearchAny({joined}, ['\"', '\\r', '\\n', {starts}])"
            f" AND ascii({joined}) NOT IN ({', '.join(map(str, FORMULA_LEAD))}))")


def export_sql(filters: Filters, columns: str = "full") -> tuple[str, dict[str, Any]]:
    """One CSV line per matching record (Python csv's QUOTE_MINIMAL with CRLF)."""
    where, params = filters.where()
    names = COLUMN_SETS[columns]
    guarded, raw = cells(columns), cells(columns, guard=False)
    # The envelope's text cells: most rows need neither the formula guard nor quotes
    # in any of them (ids, names, codes), and one test of the row's joined raw text
    # costs far less than the guard and the quote test of each cell (the full layout
    # has forty). A row that fails the test takes the guarded way, built only then.
    text = [i for i, col in enumerate(names) if col not in _PLAIN and col not in PAYLOAD_NAMES]
    select = ", ".join([f"{c} AS c{i}" for i, c in enumerate(guarded)]
                       + [f"{raw[i]} AS r{i}" for i in text])
    # Payload cells come quoted from the payload side.
    slow = [f"c{i}" if col in _PLAIN or col in PAYLOAD_NAMES else _quoted(i)
            for i, col in enumerate(names)]
    quick = [f"r{i}" if i in text else slow[i] for i in range(len(names))]
    order = "DESC" if filters.order == "desc" else "ASC"
    envelopes = f"(SELECT * FROM {DB}.envelopes{where})"
    # Only the payloads the column set shows: a compact export never reads, hashes or
    # carries a diff or the token log-probabilities.
    wanted = ", ".join(f"'{n}'" for n in names if n in PAYLOAD_NAMES)
    picked = (f" AND record_id IN (SELECT record_id FROM {DB}.envelopes{where})"
              if _narrows(filters) else "")
    payloads = ("(SELECT record_id, groupArray(name) AS names,"
                " groupArray(concat(name, ':', lower(hex(SHA256(concat(unhex(salt), content))))))"
                " AS keys, groupArray(" + _quote(_safe("content")) + ") AS cells"
                f" FROM {DB}.payloads WHERE name IN ({wanted}){picked}{_payload_window(filters)}"
                " GROUP BY record_id)")
    # A review's task model call: the task's latest at or before the review, among the
    # model calls of the tasks the matching reviews name (the key reads only those),
    # and so before the export's end (the day partitions after it are never read: a
    # window of an export reads the model calls up to its own end).
    reviews = where + (" AND " if where else " WHERE ") + "event_type = 'review'"
    before = (" AND start_time < fromUnixTimestamp64Nano({until:Int64})"
              if filters.until else "")
    models = ("(SELECT task_id, start_time, model AS m_model, prompt_version AS m_prompt"
              f" FROM {DB}.envelopes WHERE event_type = 'model_call'{before} AND task_id IN"
              f" (SELECT task_id FROM {DB}.envelopes{reviews}))")
    line = (f"concat(if({_fast([f'r{i}' for i in text])},"
            f" arrayStringConcat([{', '.join(quick)}], ','),"
            f" arrayStringConcat([{', '.join(slow)}], ',')), '\\r\\n')")
    inner = (f"SELECT {select}, e.{filters.sort} AS sort_key, e.seq AS sort_seq"
             f" FROM {envelopes} AS e ASOF LEFT JOIN {models} AS m"
             " ON m.task_id = e.task_id AND m.start_time <= e.start_time"
             f" LEFT JOIN {payloads} AS p ON p.record_id = e.record_id")
    # The line is a sort key of its own, last (it only orders rows that tie on the
    # other two, which were in no defined order before): so the engine must build it
    # before the sort, in parallel, and the sort moves one text column. Otherwise the
    # planner lifts the line's expression above the sort, which then merges every
    # column the line is made of (payload arrays included) and the whole line is built
    # after the merge, in one thread: 40% of the export's time on the 1M store.
    sql = (f"SELECT {line} AS line FROM ({inner})"
           f" ORDER BY sort_key {order}, sort_seq {order}, line {order}")
    if filters.limit is not None:
        sql += " LIMIT {limit:UInt64} OFFSET {offset:UInt64}"
        params.update(limit=filters.limit, offset=filters.offset)
    # Each row's guarded cells are built only when its quick test fails. No JIT: this
    # query runs once per window, and compiling its time arithmetic cost more (25-70 ms
    # of a query's ~200 ms fixed cost on the 1M store) than it saved.
    sql += (" SETTINGS short_circuit_function_evaluation = 'force_enable',"
            " compile_expressions = 0")
    return sql, params


# The rows one query of an export renders at most (whole days, unless one day holds
# more): the engine sorts a window's lines in memory, so a window bounds what an
# export holds however many rows it has, and its first bytes leave after one window's
# work, not the whole export's. On the 1M store a full-layout export peaked at 1.4 GB
# RSS (the bench process) with 250k-row windows, 2.1 GB with 500k; CPU the same. Each
# query also has a fixed cost (~0.2 s: parsing, analysing and planning forty to sixty
# cells and two joins), so windows are not smaller.
WINDOW_ROWS = 250_000


def windows(store: Store, filters: Filters, rows: int = WINDOW_ROWS) -> list[Filters]:
    """The export's filters cut into consecutive spans of whole days of at most about
    ``rows`` matching records each, in the export's order. Days are the tables'
    partitions, and the records of two spans never tie on time, so the spans' lines
    back to back are the whole export's, in its order. An export in another order, or
    with a limit, stays one query."""
    if filters.sort != "start_time" or filters.limit is not None:
        return [filters]
    where, params = filters.where()
    days = store.query(f"SELECT toDate(start_time) AS day, count() FROM {DB}.envelopes{where}"
                       " GROUP BY day ORDER BY day", params).result_rows
    starts, held = [], rows
    for day, n in days:
        if held + n > rows:
            starts.append(datetime(day.year, day.month, day.day, tzinfo=timezone.utc))
            held = 0
        held += n
    # The first span starts where the filters do, the last ends where they do.
    bounds = [filters.since] + starts[1:] + [filters.until]
    spans = [replace(filters, since=bounds[i], until=bounds[i + 1]) for i in range(len(starts))]
    return spans[::-1] if filters.order == "desc" else spans


def export_csv(store: Store, filters: Filters, columns: str = "full",
               window_rows: int = WINDOW_ROWS) -> Iterator[bytes]:
    """The header, then every matching record as CSV in the column set ``columns``: the
    engine's bytes as they come (FORMAT RawBLOB: the lines back to back), never a
    Python string per row; one query per window of days (``windows``)."""
    yield next(csv_lines([], columns)).encode("utf-8")
    for span in windows(store, filters, window_rows):
        sql, params = export_sql(span, columns)
        yield from store.stream_raw(sql, params, "RawBLOB")
