"""Formula-safe CSV cells (aitrail.record.csv_format.csv_cell)."""

import csv
import io

import pytest

from aitrail.record.csv_format import csv_cell

# Cells a spreadsheet would run as a formula, or that Excel/LibreOffice/Sheets treat as
# the start of one once they trim or normalise the cell.
DANGEROUS = ["=1+1", "+44", "-1", "@SUM(A1)", "\tx", "\rx", "\nx", "|cmd", "%PATH%",
             "\u00a0x", "\u00a0=1", "\uff1dSUM(A1)", " =1+1", "   +1", " \u00a0 -1", " @x",
             "  |x", " %x", " \uff1d1", " \tx", " \nx", "\u00a0\u00a0@x"]
HARMLESS = ["", "plain", " plain", "  leading spaces", "a=b", "1-2", "x@y", "50%", "a|b",
            "\u3000=x", "ü=1", "x\n=1", "x\r\n@1"]


@pytest.mark.parametrize("text", DANGEROUS)
def test_cells_a_spreadsheet_may_run_get_a_leading_quote(text):
    assert csv_cell(text) == "'" + text


@pytest.mark.parametrize("text", HARMLESS)
def test_other_cells_are_unchanged(text):
    assert csv_cell(text) == text


def test_maps_are_joined_then_made_safe():
    assert csv_cell({"b": "2", "a": "1"}) == "a=1;b=2"
    assert csv_cell({" =k": "v"}) == "' =k=v"
    assert csv_cell(None) == "" and csv_cell(3) == 3


def test_floats_are_written_as_the_engine_writes_them():
    """The SQL export (store/export.py) writes a score or confidence with the engine's
    toString; csv_cell writes the same text, for every kind of finite float (an
    evaluation's score is any finite number): the shortest round-trip digits,
    positional within exponents -6..20, else d.ddde<exp>, no '.0', '-0'."""
    import math
    import random
    import struct

    import chdb

    from aitrail.record.csv_format import float_text
    assert [csv_cell(x) for x in (42.0, 0.82, -0.0, 1e-05, 2.5e-07, 1e21, -1e300)] == [
        "42", "0.82", "-0", "0.00001", "2.5e-7", "1e21", "-1e300"]
    rng = random.Random(13)
    values = [0.0, -0.0, 1.0, 5e-324, 1.7976931348623157e308, 1e-6, 1e-7, 1e20, 1e21,
              123456789012345678.0, 0.1, -3.5]
    values += [v for v in (struct.unpack("<d", struct.pack("<Q", rng.getrandbits(64)))[0]
                           for _ in range(3000)) if math.isfinite(v)]
    values += [rng.random() * 10 ** rng.randint(-9, 24) for _ in range(2000)]
    values += [round(rng.uniform(-100, 100), rng.randint(0, 3)) for _ in range(1000)]
    # One row per value, in order (numbers: the unhex literal is the exact bits).
    sql = ("SELECT toString(reinterpretAsFloat64(unhex(h))) FROM (SELECT arrayJoin(["
           + ",".join(f"'{struct.pack('<d', v).hex()}'" for v in values) + "]) AS h)"
           " FORMAT TSV")
    engine = chdb.query(sql).bytes().decode().split("\n")[:len(values)]
    assert [float_text(v) for v in values] == engine


@pytest.mark.parametrize("ms, text", [(0, "0"), (42000, "42"), (1500, "1.5"), (1234, "1.234"),
                                      (1050, "1.05"), (7, "0.007")])
def test_time_spent_is_written_in_exact_seconds(ms, text):
    from aitrail.record.csv_format import seconds_text
    assert seconds_text(ms) == text


def test_column_sets_put_the_unit_in_the_header_and_keep_full_compatible():
    from aitrail.record.csv_format import COLUMN_SETS, RESULT_COLUMNS, csv_lines
    full, compact = COLUMN_SETS["full"], COLUMN_SETS["compact"]
    assert full[:len(RESULT_COLUMNS)] == RESULT_COLUMNS and "time_spent_s" in full
    assert "time_spent_s" in compact and "time_spent_ms" not in compact
    review = {"event_type": "review", "time_spent_ms": 2500, "model": "",
              "task_model": "triage-llm", "task_prompt_version": "v7"}
    row = next(csv.DictReader(io.StringIO("".join(csv_lines([review], "compact")))))
    assert (row["model"], row["prompt_version"], row["time_spent_s"]) == ("triage-llm", "v7",
                                                                        "2.5")
