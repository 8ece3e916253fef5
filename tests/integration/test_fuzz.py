"""Fuzzing the gRPC request bytes against one real collector subprocess.

Every input goes to ``/aitrail.v1.AuditService/Export`` as raw bytes (no
serializer): (a) random bytes from hypothesis, (b) mutations of valid
serialized ExportRequests (bit flips, truncation, duplication, insertion,
deletion, splicing). Each call must either succeed with an ExportResponse whose
counts add up, or fail with INVALID_ARGUMENT exactly when the bytes are not an
ExportRequest -- never UNKNOWN, INTERNAL or anything else -- and the collector
must stay up. Afterwards the collector still takes a valid batch, the store
holds exactly the records acknowledged as ``accepted`` (no partial writes, no
record twice), and ``aitrail verify`` on the stopped collector's store passes.

The tests share one collector and run in file order; the last one checks the
totals of the first two.
"""

from __future__ import annotations

import time
import uuid

import grpc
import pytest
from google.protobuf.message import DecodeError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support import CollectorProc, cli, count_records, engine, make_record, verdict

from aitrail.v1 import audit_pb2 as pb

FUZZ = settings(max_examples=300, deadline=None, derandomize=False,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow, HealthCheck.data_too_large])
METHOD = "/aitrail.v1.AuditService/Export"


class Tally:
    """What the collector acknowledged, over every fuzz call of this module."""

    def __init__(self) -> None:
        self.calls = 0
        self.ok = 0
        self.invalid = 0
        self.accepted = 0
        self.sent_ids: set[str] = set()  # record ids of every request that decoded


@pytest.fixture(scope="module")
def fuzz_collector(tmp_path_factory):
    proc = CollectorProc(tmp_path_factory.mktemp("fuzz") / "store").start()
    channel = grpc.insecure_channel(proc.grpc)
    call = channel.unary_unary(METHOD)  # bytes in, bytes out
    try:
        yield proc, call, Tally()
    finally:
        channel.close()
        proc.stop()


def _send(fuzz_collector, payload: bytes) -> None:
    proc, call, tally = fuzz_collector
    tally.calls += 1
    try:
        local = pb.ExportRequest.FromString(payload)
    except DecodeError:
        local = None
    try:
        raw = call(payload, timeout=30)
    except grpc.RpcError as err:
        tally.invalid += 1
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, (err.code(), err.details(),
                                                                 payload)
        assert err.details(), payload
        # Refused whole only when it really is not an ExportRequest.
        assert local is None, (err.details(), payload)
    else:
        response = pb.ExportResponse.FromString(raw)
        tally.ok += 1
        tally.accepted += response.accepted
        assert local is not None, ("the collector took bytes that do not decode", payload)
        tally.sent_ids.update(r.record_id for r in local.records)
        n = len(local.records)
        assert response.accepted + response.duplicates + len(response.rejected) == n, response
        assert all(rej.index < n and rej.reason for rej in response.rejected), response
        assert response.chain_id == "main"
    finally:
        assert proc.proc.poll() is None, f"collector died:\n{proc.log.read_text()[-4000:]}"


# ---------------------------------------------------------------- a valid corpus

def _corpus() -> list[bytes]:
    now = time.time_ns()
    mc = make_record("model_call", task_id="T-fuzz", request_id="req-1",
                     trace_id="4bf92f3577b34da6a3ce929d0e0e4736", span_id="00f067aa0ba902b7",
                     end_time_unix_nano=now + 10**9, service_version="1.2.3",
                     environment="fuzz", host="h", sdk_version="0.1.0",
                     **{"model_call.provider": "openai", "model_call.prompt_version": "v3",
                        "model_call.input": "classify: the invoice total is wrong ünïcødé",
                        "model_call.output": "billing", "model_call.confidence": 0.75,
                        "model_call.streamed": True})
    mc.model_call.parameters["temperature"] = "0.2"
    mc.model_call.logprobs.add(token="billing", logprob=-0.1)
    mc.model_call.usage.input_tokens, mc.model_call.usage.output_tokens = 12, 1
    mc.attributes["tenant"] = "acme"
    review = make_record("review", **{"review.reviewer_id": "alice", "review.decision": "modify",
                                      "review.modified_output": "refunds",
                                      "review.diff": "-billing\n+refunds",
                                      "review.time_spent_ms": 4200,
                                      "review.rationale.reason_code": "WRONG_QUEUE",
                                      "review.rationale.text": "it is a refund request"})
    esc = make_record("escalation", **{"escalation.from_reviewer": "alice",
                                       "escalation.to_reviewer": "bob",
                                       "escalation.reason": "policy"})
    access = make_record("data_access", **{"data_access.actor": "svc", "data_access.resource":
                                           "crm/customers/42", "data_access.purpose": "support"})
    error = make_record("model_call", **{"error.type": "TimeoutError", "error.message": "slow"})
    singles = [mc, review, esc, make_record(), access, error, make_record("task_created")]
    requests = [pb.ExportRequest(records=[r]) for r in singles]
    requests.append(pb.ExportRequest(records=singles))
    requests.append(pb.ExportRequest())
    return [r.SerializeToString() for r in requests]


CORPUS = _corpus()

OPS = ("flip", "flip", "truncate", "duplicate", "insert", "delete", "replace", "splice",
       "varint")


def _fresh(draw, template: bytes) -> bytes:
    """The template with new record ids, so what survives a mutation is stored anew."""
    request = pb.ExportRequest.FromString(template)
    for rec in request.records:
        rec.record_id = str(draw(st.uuids()))
    return request.SerializeToString()


@st.composite
def mutated_requests(draw) -> bytes:
    data = bytearray(_fresh(draw, draw(st.sampled_from(CORPUS))))
    for op in draw(st.lists(st.sampled_from(OPS), min_size=1, max_size=3)):
        n = len(data)
        point = draw(st.integers(0, n))
        if op == "flip" and n:
            bit = draw(st.integers(0, n * 8 - 1))
            data[bit // 8] ^= 1 << (bit % 8)
        elif op == "truncate":
            del data[point:]
        elif op == "duplicate":
            end = draw(st.integers(point, n))
            at = draw(st.integers(0, n))
            data[at:at] = data[point:end] if end > point else bytes(data)  # a slice, or it all
        elif op == "insert":
            data[point:point] = draw(st.binary(min_size=1, max_size=16))
        elif op == "delete":
            del data[point:draw(st.integers(point, min(n, point + 16)))]
        elif op == "replace" and n:
            data[min(point, n - 1)] = draw(st.integers(0, 255))
        elif op == "splice":
            other = draw(st.sampled_from(CORPUS))
            data = data[:point] + other[draw(st.integers(0, len(other))):]
        elif op == "varint":  # an over-long or huge length / varint
            data[point:point] = draw(st.sampled_from([b"\xff" * 10, b"\x80" * 11, b"\xff\xff\xff\xff\x0f",
                                                      b"\x0a\xff\xff\xff\xff\x07"]))
    return bytes(data)


# ---------------------------------------------------------------- the fuzz runs

@FUZZ
@given(payload=st.one_of(st.binary(max_size=64), st.binary(max_size=2048)))
def test_random_bytes_are_answered_or_refused_as_invalid(fuzz_collector, payload):
    _send(fuzz_collector, payload)


@FUZZ
@given(payload=mutated_requests())
def test_mutated_requests_are_answered_or_refused_as_invalid(fuzz_collector, payload):
    _send(fuzz_collector, payload)


def test_afterwards_the_ledger_holds_exactly_what_was_acknowledged(fuzz_collector):
    proc, call, tally = fuzz_collector
    # Both kinds of outcome were exercised, or this proved little.
    if tally.calls >= 500:
        assert tally.ok >= 20 and tally.invalid >= 100 and tally.accepted >= 10, vars(tally)
    batch = pb.ExportRequest(records=[make_record(task_id=f"T-after-{i}") for i in range(5)])
    response = pb.ExportResponse.FromString(call(batch.SerializeToString(), timeout=30))
    assert response.accepted == 5 and not response.rejected
    tally.accepted += 5
    tally.sent_ids.update(r.record_id for r in batch.records)
    assert count_records(proc) == tally.accepted

    proc.stop()
    assert proc.proc.returncode == 0, proc.log.read_text()[-4000:]
    # The collector's own records (the audit of count_records' search) are left out.
    clients = " WHERE service != 'aitrail-collector'"
    total, distinct, ids, everything = engine(
        proc.data_dir, "SELECT count() FROM aitrail.envelopes" + clients,
        "SELECT uniqExact(record_id) FROM aitrail.envelopes" + clients,
        "SELECT record_id FROM aitrail.envelopes" + clients,
        "SELECT count() FROM aitrail.envelopes")
    assert int(total[0][0]) == int(distinct[0][0]) == tally.accepted
    stored = {row[0] for row in ids}
    assert stored <= tally.sent_ids, stored - tally.sent_ids
    assert all(str(uuid.UUID(r)) == r for r in stored)
    out = cli("verify", "--data-dir", str(proc.data_dir))
    assert out.returncode == 0, out.stdout + out.stderr
    assert verdict(out.stdout).startswith(f"OK: {everything[0][0]} records"), out.stdout
