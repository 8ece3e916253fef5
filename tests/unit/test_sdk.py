"""The SDK against a real gRPC server (a capturing AuditService on a real socket)."""

import asyncio
import subprocess
import sys
import textwrap
import threading
from concurrent import futures

import grpc
import pytest
from opentelemetry.sdk.trace import TracerProvider

import aitrail
from aitrail.export import GrpcExporter
from aitrail.v1 import audit_pb2 as pb
from aitrail.v1 import audit_pb2_grpc as pb_grpc


class Capture(pb_grpc.AuditServiceServicer):
    def __init__(self):
        self.records: list[pb.AuditRecord] = []

    def Export(self, request, context):
        self.records.extend(request.records)
        return pb.ExportResponse(accepted=len(request.records))


@pytest.fixture
def server():
    capture = Capture()
    srv = grpc.server(futures.ThreadPoolExecutor(2))
    pb_grpc.add_AuditServiceServicer_to_server(capture, srv)
    port = srv.add_insecure_port("127.0.0.1:0")
    srv.start()
    capture.endpoint = f"127.0.0.1:{port}"
    yield capture
    srv.stop(0)


@pytest.fixture
def sent(server):
    aitrail.configure(endpoint=server.endpoint, service="unit", redaction_key="k",
                      flush_interval=0.05)

    def records():
        assert aitrail.flush(10)
        return list(server.records)
    yield records
    aitrail.shutdown()


def test_sync_decorator_records_input_output_and_model(sent):
    @aitrail.model_call(model="m1", model_version="7", prompt_version="v2", provider="p",
                        prompt_template_id="triage", parameters={"temperature": 0.1})
    def ask(prompt):
        return "answer"

    with aitrail.task("T-1"):
        assert ask("question?") == "answer"
    (rec,) = sent()
    m = rec.model_call
    assert (rec.event_type, rec.task_id, rec.service) == ("model_call", "T-1", "unit")
    assert (m.model, m.model_version, m.prompt_version, m.provider, m.prompt_template_id) == (
        "m1", "7", "v2", "p", "triage")
    assert (m.input, m.output, dict(m.parameters)) == ("question?", "answer", {"temperature": "0.1"})
    assert rec.end_time_unix_nano >= rec.start_time_unix_nano > 0
    assert len(rec.record_id) == 36 and rec.record_id[14] == "7"  # UUIDv7


def test_an_exception_is_recorded_and_reraised_unchanged(sent):
    boom = TimeoutError("provider timed out")

    @aitrail.model_call(model="m")
    def ask(prompt):
        raise boom

    with pytest.raises(TimeoutError) as info:
        ask("q")
    assert info.value is boom
    (rec,) = sent()
    assert (rec.error.type, rec.error.message) == ("TimeoutError", "provider timed out")


def test_async_and_streamed_calls_are_recorded_once_whole(sent):
    @aitrail.model_call(model="m")
    async def ask(prompt):
        await asyncio.sleep(0)
        return "async answer"

    @aitrail.model_call(model="m")
    def stream(prompt):
        yield "Hel"
        yield "lo"

    @aitrail.model_call(model="m")
    async def astream(prompt):
        for part in ("a", "b", "c"):
            yield part

    async def consume():
        return [c async for c in astream("q3")]

    assert asyncio.run(ask("q1")) == "async answer"
    assert list(stream("q2")) == ["Hel", "lo"]
    assert asyncio.run(consume()) == ["a", "b", "c"]
    recs = {r.model_call.input: r.model_call for r in sent()}
    assert recs["q1"].output == "async answer" and not recs["q1"].streamed
    assert recs["q2"].output == "Hello" and recs["q2"].streamed
    assert recs["q3"].output == "abc" and recs["q3"].streamed


def test_a_stream_abandoned_early_records_what_was_read(sent):
    @aitrail.model_call(model="m")
    def stream(prompt):
        yield "one "
        yield "two"

    gen = stream("q")
    next(gen)
    gen.close()
    (rec,) = sent()
    assert rec.model_call.output == "one " and not rec.error.type


def test_context_manager_form(sent):
    with aitrail.model_call(model="m", task_id="T-9") as call:
        assert aitrail.current_call() is call
        call.record_input({"messages": [{"role": "user", "content": "hi"}]})
        call.record_output("hello", confidence=0.5, logprobs=[("hello", -0.7)],
                           usage={"prompt_tokens": 3, "completion_tokens": 1})
    assert aitrail.current_call() is None
    (rec,) = sent()
    m = rec.model_call
    assert rec.task_id == "T-9" and m.input == '{"messages": [{"role": "user", "content": "hi"}]}'
    assert (m.output, m.confidence, m.usage.input_tokens, m.usage.output_tokens) == ("hello", 0.5, 3, 1)
    assert [(lp.token, lp.logprob) for lp in m.logprobs] == [("hello", -0.7)]


def test_input_is_snapshotted_when_the_call_is_made(sent):
    history = [{"role": "user", "content": "first"}]

    @aitrail.model_call(model="m")
    def chat(messages):
        return "ok"

    chat(history)
    history.append({"role": "assistant", "content": "later"})
    (rec,) = sent()
    assert "later" not in rec.model_call.input


def test_task_context_follows_threads_and_asyncio_tasks(sent):
    def worker(n):
        with aitrail.task(f"T-thread-{n}"):
            aitrail.resolve(resolution="closed")

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    async def job(n):
        async with aitrail.task(f"T-async-{n}"):
            await asyncio.sleep(0.01 * (3 - n))
            aitrail.resolve(resolution="closed")

    async def main():
        await asyncio.gather(*(job(n) for n in range(3)))

    asyncio.run(main())
    aitrail.resolve("T-explicit", resolution="closed")
    tasks = sorted(r.task_id for r in sent())
    assert tasks == sorted([f"T-thread-{n}" for n in range(4)] + [f"T-async-{n}" for n in range(3)]
                           + ["T-explicit"])


def test_records_carry_the_active_span_ids(sent):
    tracer = TracerProvider().get_tracer("t")
    with tracer.start_as_current_span("outer") as outer:
        with tracer.start_as_current_span("inner") as inner:
            aitrail.resolve("T", resolution="closed")
    aitrail.resolve("T2", resolution="closed")
    inside, outside = sent()
    assert inside.trace_id == format(inner.get_span_context().trace_id, "032x")
    assert inside.span_id == format(inner.get_span_context().span_id, "016x")
    assert inside.parent_span_id == format(outer.get_span_context().span_id, "016x")
    assert (outside.trace_id, outside.span_id) == ("", "")


def test_review_decisions_rationale_and_diff(sent):
    with aitrail.task("T-r"):
        with aitrail.model_call(model="m") as call:
            call.record_output("category: billing")
        with aitrail.review(reviewer="ann") as r:
            r.modify(output="category: refund", rationale=aitrail.Rationale(
                reason_code="wrong", policy_ref="POL-1", text="customer asked for money"))
        with aitrail.review(reviewer="bob", time_spent_ms=90_000) as r:
            r.reject(rationale={"reason_code": "unsafe"})
        with aitrail.review(reviewer="cy") as r:
            r.approve("fine")
        with aitrail.review(reviewer="dee"):
            pass
    _, modify, reject, approve, undecided = sent()
    v = modify.review
    assert (v.reviewer_id, v.decision, v.modified_output) == ("ann", "modify", "category: refund")
    assert (v.rationale.reason_code, v.rationale.policy_ref, v.rationale.text) == (
        "wrong", "POL-1", "customer asked for money")
    assert "-category: billing" in v.diff and "+category: refund" in v.diff
    assert (reject.review.decision, reject.review.time_spent_ms) == ("reject", 90_000)
    assert reject.review.rationale.reason_code == "unsafe"
    assert (approve.review.decision, approve.review.rationale.text) == ("approve", "fine")
    assert undecided.review.decision == "none"


def test_a_review_takes_one_decision(sent):
    with pytest.raises(RuntimeError, match="already recorded"):
        with aitrail.review("T", reviewer="ann") as r:
            r.approve()
            r.reject()
    with pytest.raises(ValueError, match="unknown key"):
        with aitrail.review("T", reviewer="ann") as r:
            r.approve({"reason": "x"})


def test_escalation_resolution_and_data_access(sent):
    aitrail.escalate("T-e", from_reviewer="ann", to_reviewer="sam", reason="over limit")
    aitrail.resolve("T-e", resolution="refunded", final_decision="refund 20 EUR")
    aitrail.data_access(actor="ann", resource="crm://c/9", purpose="verify identity", task_id="T-e")
    esc, res, acc = sent()
    assert (esc.escalation.from_reviewer, esc.escalation.to_reviewer, esc.escalation.reason) == (
        "ann", "sam", "over limit")
    assert (res.resolution.outcome, res.resolution.final_decision) == ("refunded", "refund 20 EUR")
    assert (acc.data_access.actor, acc.data_access.resource, acc.data_access.purpose) == (
        "ann", "crm://c/9", "verify identity")
    with pytest.raises(ValueError, match="to_reviewer"):
        aitrail.escalate("T", from_reviewer="a", to_reviewer="")


def test_evaluate_records_an_evaluation_with_its_explanation_redacted(sent):
    with aitrail.task("T-ev"):
        rid = aitrail.evaluate(name="relevance", score=0.82, label="relevant",
                               explanation="mail bob@corp.example for the rest",
                               response_id="chatcmpl-7", attributes={"evaluator": "judge-1"})
    aitrail.evaluate("T-ev2", name="toxicity", label="none")
    aitrail.evaluate("T-ev3", name="pass@1", score=-3)  # any finite number, ints too
    ev, label_only, negative = sent()
    assert (ev.record_id, ev.event_type, ev.task_id) == (rid, "evaluation", "T-ev")
    e = ev.evaluation
    assert (e.name, e.score_value, e.score_label, e.response_id) == (
        "relevance", 0.82, "relevant", "chatcmpl-7")
    assert e.explanation.startswith("mail [EMAIL:") and "bob@" not in e.explanation
    assert dict(ev.attributes) == {"evaluator": "judge-1"}
    assert not label_only.evaluation.HasField("score_value")
    assert (label_only.task_id, label_only.evaluation.score_label) == ("T-ev2", "none")
    assert negative.evaluation.score_value == -3.0
    with pytest.raises(ValueError, match="name"):
        aitrail.evaluate("T", name="")
    for bad in (float("nan"), float("inf"), True, "0.5"):
        with pytest.raises(ValueError, match="score"):
            aitrail.evaluate("T", name="x", score=bad)
    with pytest.raises(ValueError, match="label"):
        aitrail.evaluate("T", name="x", label=None)


def test_pii_is_redacted_before_it_leaves_the_process(sent):
    @aitrail.model_call(model="m")
    def ask(prompt):
        return "I emailed bob@corp.example"

    ask("my card is 4111-1111-1111-1111, call 415 555 0134")
    (rec,) = sent()
    assert "4111" not in rec.model_call.input and "[CARD:" in rec.model_call.input
    assert "[PHONE:" in rec.model_call.input
    assert rec.model_call.output.startswith("I emailed [EMAIL:")


def test_sending_happens_on_the_worker_thread_only(sent, monkeypatch):
    threads = []
    original = GrpcExporter.export

    def spy(self, *args, **kwargs):
        threads.append(threading.current_thread().name)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(GrpcExporter, "export", spy)
    for i in range(50):
        aitrail.resolve(f"T-{i}", resolution="closed")
    assert len(sent()) == 50
    assert threads and set(threads) == {"aitrail-export"}


def test_configuration_from_the_environment(monkeypatch, server):
    monkeypatch.setenv("AITRAIL_ENDPOINT", server.endpoint)
    monkeypatch.setenv("AITRAIL_SERVICE", "env-svc")
    monkeypatch.setenv("AITRAIL_ENVIRONMENT", "staging")
    monkeypatch.setenv("AITRAIL_REDACTION_KEY", "k")
    config = aitrail.configure()
    assert (config.endpoint, config.service, config.environment) == (server.endpoint, "env-svc",
                                                                      "staging")
    aitrail.resolve("T", resolution="closed")
    assert aitrail.flush(10)
    assert server.records[0].service == "env-svc" and server.records[0].environment == "staging"
    aitrail.shutdown()


def test_bad_configuration_is_refused_clearly(monkeypatch):
    monkeypatch.setenv("AITRAIL_BATCH_SIZE", "lots")
    with pytest.raises(ValueError, match="AITRAIL_BATCH_SIZE='lots'"):
        aitrail.configure()
    monkeypatch.delenv("AITRAIL_BATCH_SIZE")
    with pytest.raises(TypeError, match="endpiont"):
        aitrail.configure(endpiont="x:1")
    with pytest.raises(ValueError, match="HOST:PORT"):
        aitrail.configure(endpoint="nohost", redaction_key="k")


def test_records_are_flushed_at_interpreter_exit(server):
    code = textwrap.dedent(f"""
        import aitrail
        aitrail.configure(endpoint={server.endpoint!r}, service="exiting", redaction_key="k",
                          flush_interval=30)
        for i in range(25):
            aitrail.resolve(f"T-{{i}}", resolution="closed")
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert sorted(r.task_id for r in server.records) == sorted(f"T-{i}" for i in range(25))


def test_a_streamed_call_can_record_confidence_and_usage(sent):
    @aitrail.model_call(model="m")
    def stream(prompt):
        yield "par"
        aitrail.current_call().record_output("partial", confidence=0.4,
                                             usage={"input_tokens": 5, "output_tokens": 2})
        yield "tial"

    @aitrail.model_call(model="m")
    async def astream(prompt):
        yield "x"
        aitrail.current_call().record_output("x", confidence=0.9)

    async def consume():
        return [c async for c in astream("q2")]

    assert list(stream("q1")) == ["par", "tial"]
    assert asyncio.run(consume()) == ["x"]
    assert aitrail.current_call() is None
    recs = {r.model_call.input: r.model_call for r in sent()}
    assert (recs["q1"].confidence, recs["q1"].usage.output_tokens) == (0.4, 2)
    assert recs["q2"].confidence == 0.9


def test_after_shutdown_records_are_not_sent_until_configured_again(server):
    aitrail.configure(endpoint=server.endpoint, service="unit", redaction_key="k")
    aitrail.resolve("T-before", resolution="closed")
    aitrail.shutdown()
    aitrail.resolve("T-after", resolution="closed")
    aitrail.configure(endpoint=server.endpoint, service="unit", redaction_key="k")
    aitrail.resolve("T-again", resolution="closed")
    assert aitrail.flush(10)
    aitrail.shutdown()
    assert [r.task_id for r in server.records] == ["T-before", "T-again"]


def test_the_context_manager_form_leaves_nothing_behind_in_the_context(sent):
    import contextvars
    before = len(contextvars.copy_context())
    for _ in range(200):
        with aitrail.model_call(model="m") as call:  # a new spec each time, as in a loop body
            call.record_output("x")
    assert len(contextvars.copy_context()) <= before + 1
    assert aitrail.current_call() is None and len(sent()) == 200
