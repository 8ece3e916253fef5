"""Hostile and broken input: clear errors, nothing stored partially, the collector stays up."""

import time

import grpc
import pytest
from support import CollectorProc, count_records, make_record, stub

from aitrail.v1 import audit_pb2 as pb

NASTY = ["'; DROP TABLE aitrail.envelopes; --", "\\' OR 1=1 --", "{task:String}", "`x`",
         "\"quoted\"", "a\x00b", "ünïcødé ✓ 漢字", "%s %d {0}", "\n\r\t", "$(rm -rf /)"]


def _raw_export(endpoint: str, payload: bytes):
    channel = grpc.insecure_channel(endpoint)
    call = channel.unary_unary("/aitrail.v1.AuditService/Export")  # bytes in, bytes out
    return call(payload, timeout=30)


def _still_accepts(collector) -> None:
    reply = stub(collector.grpc).Export(pb.ExportRequest(records=[make_record()]), timeout=30)
    assert reply.accepted == 1


def test_garbage_bytes_are_refused_whole_with_a_clear_error(collector):
    with pytest.raises(grpc.RpcError) as err:
        _raw_export(collector.grpc, b"\xff\xff\xff\xff not protobuf")
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "not a valid aitrail.v1.ExportRequest" in err.value.details()
    assert count_records(collector) == 0
    _still_accepts(collector)


def test_invalid_utf8_in_a_string_field_stores_nothing(collector):
    good = make_record().SerializeToString()
    bad_record = b"\x0a\x02\xff\xfe" + good[good.index(b"\x12"):]  # record_id = b"\xff\xfe"
    payload = b"".join(b"\x0a" + bytes([len(r)]) + r for r in (good, bad_record))
    with pytest.raises(grpc.RpcError) as err:
        _raw_export(collector.grpc, payload)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "UTF-8" in err.value.details()
    assert count_records(collector) == 0
    _still_accepts(collector)


def test_each_bad_record_is_refused_with_its_reason_and_the_rest_land(collector):
    now = time.time_ns()
    year = 365 * 86400 * 10**9
    bad = {
        1: (make_record(start_time_unix_nano=now + 3 * year), "in the future"),
        2: (make_record(start_time_unix_nano=now - 3 * year), "days old"),
        3: (make_record(record_id="not-a-uuid"), "not a UUID"),
        4: (make_record(event_type="review", **{"review.reviewer_id": "r",
                                                "review.decision": "maybe"}), "decision"),
        5: (make_record(event_type="model_call", **{"model_call.input": "x" * (2 << 20)}),
            "the limit is"),
        6: (make_record(trace_id="xyz"), "trace_id"),
        7: (make_record(event_type="redaction"), "collector only"),
        8: (make_record(event_type="model_call", **{"model_call.confidence": float("nan")}),
            "confidence"),
        9: (make_record(event_type="escalation"), "from_reviewer"),
        # The collector's own service: what tells its data_access records from a client's.
        10: (make_record(event_type="data_access", service="aitrail-collector",
                         **{"data_access.actor": "a", "data_access.resource": "r"}),
             "reserved for the collector"),
        11: (make_record(service="aitrail-collector"), "reserved for the collector"),
        12: (make_record(service=" AItrail-Collector"), "reserved for the collector"),
    }
    records = [make_record(task_id="T-good-0")] + [r for r, _ in bad.values()] + \
              [make_record(task_id="T-good-1")]
    reply = stub(collector.grpc).Export(pb.ExportRequest(records=records), timeout=60)
    assert reply.accepted == 2
    reasons = {rej.index: rej.reason for rej in reply.rejected}
    assert sorted(reasons) == sorted(bad)
    for index, (_, expected) in bad.items():
        assert expected in reasons[index], (index, reasons[index])
    stored = collector.get("/api/v1/records?limit=10000")["records"]
    assert sorted(r["task_id"] for r in stored) == ["T-good-0", "T-good-1"]


def test_sql_metacharacters_in_every_string_field_are_stored_verbatim(collector):
    records = []
    for i, text in enumerate(NASTY):
        rec = make_record(event_type="model_call", task_id=text, request_id=text, service=text,
                          environment=text, host=text, **{
                              "model_call.model": text, "model_call.provider": text,
                              "model_call.prompt_version": text, "model_call.input": text,
                              "model_call.output": text, "error.type": text,
                              "error.message": text})
        rec.attributes[text] = text
        rec.model_call.parameters[text] = text
        records.append(rec)
    reply = stub(collector.grpc).Export(pb.ExportRequest(records=records), timeout=60)
    assert reply.accepted == len(NASTY), list(reply.rejected)
    import urllib.parse
    for text in NASTY:
        found = collector.get("/api/v1/records?" + urllib.parse.urlencode({"task": text}))
        assert found["total"] == 1, text
        rec = found["records"][0]
        for field in ("task_id", "request_id", "service", "environment", "host", "model",
                      "provider", "prompt_version", "input", "output", "error_type",
                      "error_message"):
            assert rec[field] == text, (field, text)
        assert rec["attributes"] == {text: text} and rec["parameters"] == {text: text}
    assert count_records(collector) == len(NASTY)
    _still_accepts(collector)


def test_oversized_request_is_refused_by_the_transport(tmp_path):
    small = CollectorProc(tmp_path / "store", "--max-message-bytes", "100000").start()
    try:
        big = pb.ExportRequest(records=[make_record(event_type="model_call", **{
            "model_call.input": "x" * 60_000}) for _ in range(3)])
        with pytest.raises(grpc.RpcError) as err:
            stub(small.grpc).Export(big, timeout=30)
        assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert count_records(small) == 0
        _still_accepts(small)
    finally:
        small.stop()


def test_a_gzip_bomb_is_refused_without_inflating_it(tmp_path):
    """The message limit applies to the decompressed message, and the engine stops
    inflating at the limit: 200 MiB in about 200 KiB of gzip never reach memory."""
    proc = CollectorProc(tmp_path / "store", "--max-message-bytes", str(8 << 20)).start()
    try:
        _still_accepts(proc)
        with open(f"/proc/{proc.proc.pid}/status") as fh:
            before = next(int(x.split()[1]) for x in fh if x.startswith("VmHWM")) >> 10
        channel = grpc.insecure_channel(proc.grpc,
                                        options=[("grpc.max_send_message_length", -1)])
        call = channel.unary_unary("/aitrail.v1.AuditService/Export")
        with pytest.raises(grpc.RpcError) as err:
            call(b"\0" * (200 << 20), timeout=60, compression=grpc.Compression.Gzip)
        assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "larger than max" in err.value.details()
        with open(f"/proc/{proc.proc.pid}/status") as fh:
            after = next(int(x.split()[1]) for x in fh if x.startswith("VmHWM")) >> 10
        assert after - before < 64, (before, after)
        _still_accepts(proc)
        assert count_records(proc) == 2
    finally:
        proc.stop()


def test_bad_query_filters_get_clear_400s(collector):
    import urllib.error
    import urllib.request
    for query, expected in (("since=yesterday-ish", "ISO 8601"), ("limit=-3", "limit"),
                            ("trace_id=zz", "32 hex"), ("sort=password", "sort"),
                            ("since=2026-02-01&until=2026-01-01", "after until")):
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(f"{collector.url}/api/v1/records?{query}")
        assert err.value.code == 400
        assert expected in err.value.read().decode()


def test_limits_are_configurable_and_refusals_name_them(tmp_path):
    strict = CollectorProc(tmp_path / "store", "--max-text-chars", "100", "--max-attributes", "2",
                           "--max-records-per-batch", "5", "--max-clock-skew", "1",
                           "--max-record-age-days", "1").start()
    try:
        now = time.time_ns()
        long_input = make_record(event_type="model_call", **{"model_call.input": "x" * 101})
        many_attrs = make_record()
        for k in "abc":
            many_attrs.attributes[k] = k
        ahead = make_record(start_time_unix_nano=now + 30 * 10**9)
        old = make_record(start_time_unix_nano=now - 2 * 86400 * 10**9)
        ok = make_record()
        reply = stub(strict.grpc).Export(pb.ExportRequest(
            records=[long_input, many_attrs, ahead, old, ok]), timeout=30)
        reasons = [r.reason for r in reply.rejected]
        assert reply.accepted == 1 and len(reasons) == 4
        assert "limit is 100" in reasons[0] and "limit is 2" in reasons[1]
        assert "in the future" in reasons[2] and "older than 1 days" in reasons[3]
        with pytest.raises(grpc.RpcError) as err:
            stub(strict.grpc).Export(pb.ExportRequest(records=[make_record()] * 6), timeout=30)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "the limit is 5" in err.value.details()
        assert count_records(strict) == 1
    finally:
        strict.stop()
