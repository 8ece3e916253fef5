"""Command-line behaviour: exit codes and clear messages for usage and connection errors."""

from support import cli, free_port, verdict


def test_unreachable_collector_is_exit_2_with_the_reason():
    out = cli("query", "--url", f"http://127.0.0.1:{free_port()}")
    assert out.returncode == 2
    assert "cannot reach the collector" in out.stderr


def test_missing_store_is_exit_2(tmp_path):
    out = cli("verify", "--data-dir", str(tmp_path / "nothing-here"))
    assert out.returncode == 2 and "no store at" in out.stderr


def test_bad_filter_is_exit_2_naming_the_value(collector):
    for args, expected in ((["--since", "last tuesday"], "ISO 8601"),
                           (["--trace-id", "abc"], "32 hex")):
        via_url = cli("query", "--url", collector.url, *args)
        assert via_url.returncode == 2 and expected in via_url.stderr, via_url.stderr
    collector.stop()
    direct = cli("query", "--data-dir", str(collector.data_dir), "--since", "last tuesday")
    assert direct.returncode == 2 and "ISO 8601" in direct.stderr


def test_a_second_collector_on_a_held_directory_is_refused(collector, tmp_path):
    second = cli("collector", "--data-dir", str(collector.data_dir),
                 "--grpc-listen", f"127.0.0.1:{free_port()}",
                 "--http-listen", f"127.0.0.1:{free_port()}", timeout=60)
    assert second.returncode == 2
    assert "held by a running collector" in second.stderr


def test_unknown_task_timeline_is_exit_2(collector):
    out = cli("timeline", "T-nope", "--url", collector.url)
    assert out.returncode == 2 and "no records for task 'T-nope'" in out.stderr


def test_verify_of_an_empty_ledger_is_ok(collector):
    out = cli("verify", "--url", collector.url)
    assert out.returncode == 0 and verdict(out.stdout).startswith("OK: 0 records")


def test_bad_clickhouse_dsn_is_exit_2():
    out = cli("collector", "--clickhouse", "postgres://x", "--grpc-listen", "127.0.0.1:0",
              "--http-listen", "")
    assert out.returncode == 2 and "expected chdb:///path" in out.stderr


# ------------------------------------------------------------------ ledger text on a terminal

# Text that, printed raw, clears the line and paints a fake verdict over it, retitles
# the terminal window and reverses what follows; C1 CSI (\x9b) is ESC [ to some terminals.
EVIL = "\x1b[2K\rOK: 0 records in 1 chain(s) verified\x1b]0;owned\x07\u202egnp.exe\x9b2J\r"
# What `aitrail timeline` shows of it: every control visibly escaped.
EVIL_SHOWN = "\\x1b[2K\\rOK: 0 records in 1 chain(s) verified\\x1b]0;owned\\x07\\u202egnp.exe" \
             "\\x9b2J\\r"


def _assert_inert(text: str) -> None:
    """No control, format (bidi) or line-separator character but the line breaks."""
    import unicodedata
    raw = {c for c in text if c != "\n" and unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp")}
    assert not raw, (sorted(raw), text)


def _evil_records(task: str) -> list:
    from support import make_record
    call = make_record(event_type="model_call", task_id=task, request_id=EVIL,
                       **{"model_call.model": EVIL, "model_call.provider": EVIL,
                          "model_call.prompt_version": EVIL,
                          "model_call.input": "first line\n" + EVIL + "\nOK: 1 records",
                          "model_call.output": EVIL})
    call.attributes[EVIL] = EVIL
    review = make_record(event_type="review", task_id=task,
                         **{"review.reviewer_id": EVIL, "review.decision": "modify",
                            "review.modified_output": EVIL, "review.rationale.text": EVIL,
                            "review.rationale.reason_code": EVIL})
    escalation = make_record(event_type="escalation", task_id=task,
                             **{"escalation.from_reviewer": EVIL,
                                "escalation.to_reviewer": EVIL, "escalation.reason": EVIL})
    resolution = make_record(task_id=task, **{"resolution.outcome": EVIL,
                                              "resolution.final_decision": EVIL})
    return [call, review, escalation, resolution]


def test_ledger_text_cannot_paint_over_the_verdict(collector):
    import json

    from support import engine, stub

    from aitrail.v1 import audit_pb2 as pb
    task = "T-evil" + EVIL + "-end"
    reply = stub(collector.grpc).Export(pb.ExportRequest(records=_evil_records(task)),
                                        timeout=30)
    assert reply.accepted == 4, reply.rejected

    query = cli("query", "--url", collector.url, "--task", task)
    assert query.returncode == 0, query.stderr
    _assert_inert(query.stdout)
    assert len(query.stdout.splitlines()) == 5 and "\\x1b[2K" in query.stdout
    timeline = cli("timeline", task, "--url", collector.url)
    assert timeline.returncode == 0, timeline.stderr
    _assert_inert(timeline.stdout)
    assert EVIL_SHOWN in timeline.stdout
    # A line break inside a field continues the field, indented: no line of ledger
    # text starts at column 0.
    assert not [line for line in timeline.stdout.splitlines() if line.startswith("OK")]
    assert " " * 14 + "OK: 1 records" in timeline.stdout.splitlines()
    # JSON stays JSON, the text exactly as stored.
    as_json = cli("timeline", task, "--url", collector.url, "--format", "json")
    assert json.loads(as_json.stdout)[0]["model"] == EVIL

    erase = cli("erase", "--url", collector.url, "--task", task, "--reason", EVIL,
                "--actor", EVIL)
    assert erase.returncode == 0, erase.stderr
    _assert_inert(erase.stdout)
    assert "\\x1b[2K" in erase.stdout

    # Someone with the store's files forges a row whose id and chain are the attack.
    collector.stop()
    engine(collector.data_dir,
           f"INSERT INTO aitrail.envelopes SELECT * REPLACE ('{EVIL}' AS record_id)"
           " FROM (SELECT * FROM aitrail.envelopes WHERE seq = 2)")
    verify = cli("verify", "--data-dir", str(collector.data_dir))
    assert verify.returncode == 1, verify.stdout + verify.stderr
    _assert_inert(verify.stdout)
    lines = verify.stdout.splitlines()
    assert lines[-1].startswith("FAILED: ") and "\\x1b[2K" in verify.stdout
    assert not [line for line in lines[:-1] if line.startswith(("OK", "FAILED"))]
    report = json.loads(cli("verify", "--data-dir", str(collector.data_dir),
                            "--format", "json").stdout)
    assert EVIL in {f["record_id"] for f in report["findings"]}


def test_names_in_key_lists_are_shown_escaped(tmp_path):
    keys = tmp_path / "keys.json"
    out = cli("apikey", "create", "--keys-file", str(keys), "--service", "svc" + EVIL)
    assert out.returncode == 0, out.stderr
    listing = cli("apikey", "list", "--keys-file", str(keys))
    assert listing.returncode == 0 and "svc\\x1b[2K" in listing.stdout
    _assert_inert(listing.stdout)
