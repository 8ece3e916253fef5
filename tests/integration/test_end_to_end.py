"""SDK -> real gRPC -> collector -> real ClickHouse engine -> query, CLI and HTTP."""

import csv
import io
import json
import urllib.parse

from opentelemetry.sdk.trace import TracerProvider
from support import cli, verdict


def _emit_scenario(aitrail, tracer):
    @aitrail.model_call(model="triage-llm", model_version="2026-10", prompt_version="v3",
                        provider="acme", parameters={"temperature": 0.2})
    def classify(ticket: str) -> str:
        aitrail.current_call().record_output("billing", confidence=0.83,
                                             logprobs=[("billing", -0.19)],
                                             usage={"input_tokens": 12, "output_tokens": 1})
        return "billing"

    with tracer.start_as_current_span("handle") as span:
        with aitrail.task("T-e2e-1", request_id="req-77"):
            classify("My invoice is wrong, write to jane@example.org")
            with aitrail.review(reviewer="rev-ann") as r:
                r.modify(output="refund", rationale=aitrail.Rationale(
                    reason_code="wrong_category", policy_ref="POL-4", text="asks for money back"))
            aitrail.escalate(from_reviewer="rev-ann", to_reviewer="rev-sam", reason="amount > 500")
            aitrail.resolve(resolution="refunded", final_decision="refund")
    return span.get_span_context()


def test_query_returns_exactly_what_was_emitted(sdk, collector):
    tracer = TracerProvider().get_tracer("test")
    ctx = _emit_scenario(sdk, tracer)
    assert sdk.flush(30)
    assert sdk.stats()["sent"] == 4 and sdk.stats()["dropped"] == 0

    events = collector.get("/api/v1/tasks/T-e2e-1/timeline")["events"]
    assert [e["event_type"] for e in events] == ["model_call", "review", "escalation", "resolution"]
    assert [e["seq"] for e in events] == [1, 2, 3, 4]
    call, review, esc, res = events
    trace_id, span_id = format(ctx.trace_id, "032x"), format(ctx.span_id, "016x")
    for e in events:
        assert (e["trace_id"], e["span_id"], e["request_id"]) == (trace_id, span_id, "req-77")
        assert e["service"] == "test-svc" and e["environment"] == "test"
    assert call["model"] == "triage-llm" and call["prompt_version"] == "v3"
    assert call["model_version"] == "2026-10" and call["provider"] == "acme"
    assert call["parameters"] == {"temperature": "0.2"}
    assert call["confidence"] == 0.83 and call["input_tokens"] == 12
    assert call["output"] == "billing"
    assert json.loads(call["logprobs"]) == [["billing", -0.19]]
    assert "jane@example.org" not in call["input"] and "[EMAIL:" in call["input"]
    assert review["decision"] == "modify" and review["reviewer_id"] == "rev-ann"
    assert review["reason_code"] == "wrong_category" and review["policy_ref"] == "POL-4"
    assert review["rationale"] == "asks for money back"
    assert review["modified_output"] == "refund"
    assert "-billing" in review["diff"] and "+refund" in review["diff"]
    assert (esc["escalation_from"], esc["escalation_to"]) == ("rev-ann", "rev-sam")
    assert esc["escalation_reason"] == "amount > 500"
    assert (res["resolution_outcome"], res["final_decision"]) == ("refunded", "refund")

    by_trace = collector.get("/api/v1/records?trace_id=" + trace_id)
    assert by_trace["total"] == 4
    by_reviewer = collector.get("/api/v1/records?reviewer=rev-sam")
    assert [r["event_type"] for r in by_reviewer["records"]] == ["escalation"]
    typed = collector.get("/api/v1/records?type=review&type=resolution")
    assert sorted(r["event_type"] for r in typed["records"]) == ["resolution", "review"]


def test_cli_reaches_the_collector_and_then_the_store_directly(sdk, collector):
    _emit_scenario(sdk, TracerProvider().get_tracer("test"))
    assert sdk.flush(30)

    out = cli("query", "--url", collector.url, "--task", "T-e2e-1", "--format", "json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["total"] == 4

    # Pointed at the directory a collector holds, the CLI goes through that collector.
    out = cli("timeline", "T-e2e-1", "--data-dir", str(collector.data_dir))
    assert out.returncode == 0, out.stderr
    assert "REVIEW" in out.stdout and "rev-ann decided MODIFY" in out.stdout
    assert "+refund" in out.stdout

    collector.stop()
    out = cli("export", "--data-dir", str(collector.data_dir), "--since", "1h")
    assert out.returncode == 0, out.stderr
    rows = list(csv.DictReader(io.StringIO(out.stdout)))
    # The two reads through the collector were sealed as data_access records; reading
    # the store directly (no collector holds it) leaves none.
    reads = [(r["actor"], r["resource"]) for r in rows if r["event_type"] == "data_access"]
    assert reads == [("local", "search"), ("local", "timeline:T-e2e-1")]
    rows = [r for r in rows if r["event_type"] != "data_access"]
    assert [r["event_type"] for r in rows] == ["model_call", "review", "escalation", "resolution"]
    assert rows[1]["decision"] == "modify" and rows[0]["time"].endswith("Z")

    out = cli("query", "--data-dir", str(collector.data_dir), "--type", "review")
    assert out.returncode == 0 and "rev-ann" in out.stdout and "1 of 1" in out.stderr

    out = cli("verify", "--data-dir", str(collector.data_dir))
    assert out.returncode == 0, out.stdout + out.stderr
    assert verdict(out.stdout).startswith("OK: 6 records")


def test_csv_export_neutralises_formulas(sdk, collector):
    with sdk.task("=HYPERLINK(\"http://x\")"):
        sdk.resolve(resolution="done", final_decision="+1 refund")
    assert sdk.flush(30)
    q = urllib.parse.urlencode({"type": "resolution"})
    with __import__("urllib.request").request.urlopen(f"{collector.url}/api/v1/export.csv?{q}") as r:
        text = r.read().decode("utf-8")
    row = list(csv.DictReader(io.StringIO(text)))[0]
    assert row["task_id"].startswith("'=") and row["final_decision"] == "'+1 refund"


def test_export_streams_every_row_of_a_large_result(collector, tmp_path):
    from support import make_record, stub

    from aitrail.v1 import audit_pb2 as pb
    client = stub(collector.grpc)
    for b in range(5):  # more rows than one payload chunk of the stream (2000)
        batch = [make_record(event_type="model_call", task_id=f"T-{b}-{i}",
                             **{"model_call.input": f"prompt {b}-{i}", "model_call.output": "ok"})
                 for i in range(1000)]
        assert client.Export(pb.ExportRequest(records=batch), timeout=60).accepted == 1000
    for target in (["--url", collector.url], None):
        if target is None:
            collector.stop()
            target = ["--data-dir", str(collector.data_dir)]
        out_file = tmp_path / "audit.csv"
        out = cli("export", *target, "-o", str(out_file))
        assert out.returncode == 0, out.stderr
        rows = list(csv.DictReader(io.StringIO(out_file.read_text(encoding="utf-8"))))
        # The export through the collector was itself sealed as a data_access record.
        reads = [r for r in rows if r["event_type"] == "data_access"]
        assert [r["resource"] for r in reads] == ([] if "--url" in target else ["export"])
        assert reads == [] or reads[0]["attributes"].endswith("rows=5000;via=api")
        rows = [r for r in rows if r["event_type"] == "model_call"]
        assert len(rows) == 5000
        assert {r["input"] for r in rows} == {f"prompt {b}-{i}" for b in range(5) for i in range(1000)}


# Each starts like a formula, or does once a spreadsheet trims leading blanks or
# normalises U+FF1D to "=" (csv_format.FORMULA_CHARS).
FORMULA_CELLS = ("\nx", "|cmd", "%PATH%", "\u00a0x", "\uff1dSUM(A1)", " =1+1", "   +1",
                 " \u00a0 -1", " @x", "  |x", " %x", " \uff1d1", " \tx", "\u00a0\u00a0@x")


def test_engine_rendered_export_is_byte_identical_to_csv_lines(sdk, collector):
    """The export is rendered by ClickHouse (aitrail_collector.store.export); it must write
    exactly what aitrail.record.csv_format.csv_lines writes for the same records, including
    quoting, formula-safe cells, unicode, maps, and payloads erased or tampered with."""
    from support import engine

    from aitrail.record.csv_format import csv_lines

    _emit_scenario(sdk, TracerProvider().get_tracer("test"))
    with sdk.task("=SUM(A1)", request_id='quote " and, comma'):
        @sdk.model_call(model="m", parameters={"b": "-1", "a": "x,y"})
        def call(text: str) -> str:
            return "línea 1\r\nzweite \"Zeile\"\n@home"
        call("+44 prompt with ünïcödé and a\ttab")
        call("second call")
        sdk.resolve(resolution="-done", final_decision="")
    # Cells a spreadsheet may run once it trims or normalises them, in plain columns,
    # payloads and maps; and harmless look-alikes, left as they are.
    for cell in FORMULA_CELLS + (" plain", "a|b", "x\n=1"):
        with sdk.task(cell, request_id=cell):
            @sdk.model_call(model=cell, parameters={cell: cell})
            def echo(text: str) -> str:
                return text
            echo(cell)
            sdk.resolve(resolution=cell, final_decision=cell)
    # Evaluations: a score is any finite number, and each spelling of one is the engine's.
    scores = (42.0, -0.0, 0.82, 1e-07, 2.5e-05, -1e300, 1e21, 123456789012345678.0, None)
    with sdk.task("T-scores"):
        for score in scores:
            sdk.evaluate(name="relevance", score=score, label="-1 ok, \"quoted\"",
                         explanation="=explained", response_id="chatcmpl-1")
    assert sdk.flush(30)
    collector.stop()
    engine(collector.data_dir,
           "ALTER TABLE aitrail.payloads UPDATE content = 'forged' WHERE content = 'second call'"
           " SETTINGS mutations_sync = 1",
           "ALTER TABLE aitrail.payloads DELETE WHERE name = 'rationale'"
           " SETTINGS mutations_sync = 1")
    collector.start()

    # The reads themselves are sealed as data_access records; leave them out of both.
    kinds = "&".join(f"type={t}" for t in ("model_call", "review", "escalation", "resolution",
                                           "evaluation"))
    records = collector.get(f"/api/v1/records?limit=10000&{kinds}")["records"]
    assert len(records) == 7 + 2 * (len(FORMULA_CELLS) + 3) + len(scores)
    assert {"[erased]", "[payload does not match its sealed commitment]"} <= {
        v for r in records for v in r.values() if isinstance(v, str)}
    with __import__("urllib.request").request.urlopen(
            f"{collector.url}/api/v1/export.csv?{kinds}") as r:
        exported = r.read()
    assert exported == "".join(csv_lines(records)).encode("utf-8")
    # Both column sets (full is the API's default; compact is for people).
    with __import__("urllib.request").request.urlopen(
            f"{collector.url}/api/v1/export.csv?{kinds}&columns=compact") as r:
        assert r.read() == "".join(csv_lines(records, "compact")).encode("utf-8")
    rows = list(csv.DictReader(io.StringIO(exported.decode("utf-8"))))
    evaluations = [r for r in rows if r["event_type"] == "evaluation"]
    assert sorted(r["score_value"] for r in evaluations) == sorted(
        ["42", "-0", "0.82", "1e-7", "0.000025", "-1e300", "1e21", "123456789012345680", ""])
    assert {(r["explanation"], r["score_label"]) for r in evaluations} == {
        ("'=explained", "'-1 ok, \"quoted\"")}
    rows = [r for r in rows if r["event_type"] != "evaluation"]
    assert rows[4]["task_id"] == "'=SUM(A1)" and rows[4]["parameters"] == "a=x,y;b=-1"
    for row in rows[7:]:
        task = row["task_id"].removeprefix("'")
        quoted = "'" if task in FORMULA_CELLS else ""
        assert row["task_id"] == row["request_id"] == quoted + task
        assert row["final_decision" if row["event_type"] == "resolution" else "input"] == \
            quoted + task
    # Each export's data_access record counts the rows exported, not the line breaks:
    # an output above holds a CR LF inside its quoted cell.
    accesses = collector.get("/api/v1/records?type=data_access&limit=10000&sort=seq")["records"]
    exports = [a for a in accesses if a["resource"] == "export"]
    assert [a["attributes"]["rows"] for a in exports[-2:]] == [str(len(records))] * 2
