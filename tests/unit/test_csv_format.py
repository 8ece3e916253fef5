"""Formula-safe CSV cells (aitrail.record.csv_format.csv_cell)."""

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
