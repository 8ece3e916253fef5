"""The CLI shows ledger text inert: controls escaped, verdict last (aitrail.cli.output)."""

import io

import pytest

from aitrail.cli.output import describe_event, print_table, print_verify, safe


@pytest.mark.parametrize("raw, shown", [
    ("plain text, ünïcödé, 漢字, NBSP\u00a0ok", "plain text, ünïcödé, 漢字, NBSP\u00a0ok"),
    ("\x1b[2K\rOK", "\\x1b[2K\\rOK"), ("a\nb\tc", "a\\nb\\tc"), ("\x00\x07\x7f", "\\x00\\x07\\x7f"),
    ("\x9b2J\x85", "\\x9b2J\\x85"), ("\u202eexe.txt\u202c", "\\u202eexe.txt\\u202c"),
    ("\u2066x\u2069\u200b\u200f\ufeff", "\\u2066x\\u2069\\u200b\\u200f\\ufeff"),
    ("line\u2028sep\u2029", "line\\u2028sep\\u2029"), ("\U000e0041tag", "\\U000e0041tag"),
])
def test_safe_shows_controls_and_format_characters_escaped(raw, shown):
    assert safe(raw) == shown


def test_a_line_break_in_a_timeline_field_continues_it_indented():
    ev = {"event_type": "resolution", "time": "2026-01-01T00:00:00Z", "seq": 1,
          "record_id": "r\x1b", "resolution_outcome": "done\rOK",
          "final_decision": "one\r\nOK: fake\x1b[1A"}
    lines = describe_event(ev)
    assert lines[0].endswith("RESOLUTION  done\\rOK")
    assert lines[1:] == ["    final:    one", " " * 14 + "OK: fake\\x1b[1A", "    record=r\\x1b"]


def test_table_cells_are_escaped():
    out = io.StringIO()
    print_table([{"task_id": "T\x1b]0;x\x07", "record_id": "\u202e"}], out)
    assert "T\\x1b]0;x\\x07" in out.getvalue() and "\\u202e" in out.getvalue()


def test_the_verdict_is_the_last_line_and_holds_no_ledger_text(capsys):
    report = {"ok": False, "records": 3, "seconds": 0.5,
              "chains": [{"chain_id": "main\x1b[2K", "head_seq": 3}],
              "findings": [{"kind": "inserted", "chain_id": "main", "seq": 2,
                            "record_id": "\x1b[2K\rOK: 3 records", "detail": "x\ny"}],
              "warnings": ["w\x1b"],
              "erased": [{"record_id": "r", "chain_id": "main", "seq": 1, "payloads": ["input"],
                          "redaction_id": "d", "redaction_seq": 3, "actor": "a\u202e",
                          "reason": "\rOK"}]}
    print_verify(report)
    lines = capsys.readouterr().out.splitlines()
    assert lines[-1] == "FAILED: 1 finding(s) in 3 records in 1 chain(s)"
    assert "\x1b" not in "".join(lines) and "\r" not in "".join(lines)
    assert not [line for line in lines[:-1] if line.startswith(("OK", "FAILED"))]
    print_verify(dict(report, ok=True, findings=[]))
    assert capsys.readouterr().out.splitlines()[-1] == \
        "OK: 3 records in 1 chain(s) verified in 0.5 s"
