"""The export's row count (aitrail.record.csv_format.RowCounter) against Python's own CSV
reader: rows whose cells hold CR LF, lone LF, quotes and commas, cut into chunks at
every kind of place (inside a cell, between CR and LF, on a quote)."""

from __future__ import annotations

import csv
import io
import random

from hypothesis import given
from hypothesis import strategies as st

from aitrail.record.csv_format import RowCounter, csv_lines

CELLS = st.text(alphabet=st.sampled_from(list('ab,"\r\n é')), max_size=12)


def _count(text: bytes, cuts: list[int]) -> int:
    counter = RowCounter()
    edges = [0, *sorted(c % (len(text) + 1) for c in cuts), len(text)]
    for a, b in zip(edges, edges[1:]):
        counter.feed(text[a:b])
    return counter.rows


@given(st.lists(st.lists(CELLS, min_size=1, max_size=4), max_size=20),
       st.lists(st.integers(min_value=0), max_size=30))
def test_the_count_is_the_csv_readers_whatever_the_chunks(rows, cuts):
    out = io.StringIO()
    csv.writer(out, lineterminator="\r\n").writerows(rows)
    text = out.getvalue().encode("utf-8")
    read = list(csv.reader(io.StringIO(out.getvalue(), newline="")))
    assert _count(text, cuts) == len(read) == len(rows)


def test_an_export_with_a_line_break_in_a_payload_counts_its_records():
    records = [{"record_id": f"r{i}", "event_type": "model_call",
                "output": "line 1\r\nline \"2\"\n@3"} for i in range(5)]
    text = "".join(csv_lines(records)).encode("utf-8")
    assert text.count(b"\r\n") > 6  # the header, five rows and their cells' own
    assert _count(text, [random.randrange(len(text)) for _ in range(7)]) == 6
