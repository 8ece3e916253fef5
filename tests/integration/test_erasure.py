"""Erasure (GDPR Art. 17): the payloads go, the proof stays.

Real collectors in subprocesses, records over real gRPC, the real engine; the
erased text is looked for in the raw bytes of every file of the data directory.
"""

from __future__ import annotations

import json
import os
import secrets
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from support import CollectorProc, cli, engine, make_record, stub, verdict

REASON = "GDPR Art. 17 request #42 from the data subject"


def _secret(tag: str) -> str:
    # 64 random characters of a 64-letter alphabet: no 4-byte run of it occurs
    # anywhere else in the part, so LZ4 stores it literally and a byte search finds it.
    return f"{tag}:{secrets.token_urlsafe(48)}"


def _random_part(text: str) -> str:
    # The tags repeat across records, so LZ4 may store them as back-references.
    return text.split(":", 1)[1]


def _ticket(task: str, secret: str, note: str) -> dict:
    """A model call, a modifying review and a resolution, as raw wire records."""
    call = make_record("model_call", task_id=task, **{
        "model_call.input": f"customer wrote: {secret}", "model_call.output": "billing"})
    review = make_record("review", task_id=task, **{
        "review.reviewer_id": "rev-ann", "review.decision": "modify",
        "review.modified_output": "refund", "review.diff": "-billing\n+refund",
        "review.rationale.text": f"asks for money back: {note}"})
    done = make_record("resolution", task_id=task)
    return {"task": task, "secret": secret, "note": note, "call": call.record_id,
            "review": review.record_id,
            "done": done.record_id, "records": [call, review, done]}


@pytest.fixture
def tickets(collector):
    """Two tickets sealed by ``collector``: T-1 (to be erased) and T-2 (kept)."""
    from aitrail.v1 import audit_pb2 as pb
    out = {t: _ticket(t, _secret(f"secret{t}"), _secret(f"note{t}")) for t in ("T-1", "T-2")}
    for t in out.values():
        reply = stub(collector.grpc).Export(pb.ExportRequest(records=t["records"]), timeout=30)
        assert reply.accepted == 3 and not reply.rejected, reply
    return out


def _verify(*target: str) -> tuple[int, dict]:
    out = cli("verify", *target, "--format", "json")
    assert out.returncode in (0, 1), out.stderr
    report = json.loads(out.stdout)
    assert report["ok"] == (out.returncode == 0)
    return out.returncode, report


def _written(collector: CollectorProc) -> int:
    """Records sealed, leaving out the collector's own data_access records of reads
    (every search and timeline view is itself sealed)."""
    by_type = collector.get("/api/v1/summary")["by_type"]
    return sum(n for kind, n in by_type.items() if kind != "data_access")


def _kinds(report: dict) -> set[tuple[str, int, str]]:
    return {(f["kind"], f["seq"], f["record_id"]) for f in report["findings"]}


def _seq(collector_or_dir, record_id: str) -> int:
    if isinstance(collector_or_dir, CollectorProc):
        rec = collector_or_dir.get(f"/api/v1/records?record_id={record_id}")["records"][0]
        return rec["seq"]
    rows = engine(collector_or_dir, "SELECT seq FROM aitrail.envelopes WHERE record_id = "
                  f"'{record_id}'")[0]
    return rows[0][0]


PRESENT = 16  # bytes of a text found together: it is on disk (the absent check takes 12)


def _files_containing(data_dir: Path, text: str, piece: int = 0) -> list[str]:
    """Every file under the directory whose raw bytes hold ``text`` or, with ``piece``,
    any ``piece``-byte slice of it (so no fragment of the text survives unnoticed)."""
    data = text.encode()
    needles = ([data[i:i + piece] for i in range(0, len(data) - piece + 1)] if piece
               else [data])
    hits = []
    for root, _, files in os.walk(data_dir):
        for name in files:
            path = os.path.join(root, name)
            with open(path, "rb") as fh:
                raw = fh.read()
            if any(n in raw for n in needles):
                hits.append(os.path.relpath(path, data_dir))
    return hits


def _post_erase(collector: CollectorProc, body: dict) -> tuple[int, dict]:
    req = urllib.request.Request(collector.url + "/api/v1/erase", method="POST",
                                 data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, json.load(resp)
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


# ---------------------------------------------------------------- erasing a task

def test_erase_task_verifies_clean_and_lists_the_erased_payloads(collector, tickets):
    t1 = tickets["T-1"]
    code, before = _verify("--url", collector.url)
    assert code == 0 and before["erased"] == []

    out = cli("erase", "--url", collector.url, "--task", "T-1", "--reason", REASON,
              "--actor", "dpo@example.org")
    assert out.returncode == 0, out.stderr
    assert "Erased 5 payload(s) of 2 record(s) of task:T-1" in out.stdout
    assert _written(collector) == 7  # six records and the redaction

    code, report = _verify("--url", collector.url)
    assert code == 0, report["findings"]
    erased = {e["record_id"]: e for e in report["erased"]}
    assert set(erased) == {t1["call"], t1["review"]}
    assert erased[t1["call"]]["payloads"] == ["input", "output"]
    assert erased[t1["review"]]["payloads"] == ["diff", "modified_output", "rationale"]
    redaction_id = erased[t1["call"]]["redaction_id"]
    assert all(e["reason"] == REASON and e["actor"] == "dpo@example.org"
               and e["redaction_id"] == redaction_id and e["redaction_seq"] > 6
               for e in erased.values())
    text = cli("verify", "--url", collector.url)
    assert text.returncode == 0 and verdict(text.stdout).startswith("OK: "), text.stdout
    assert "5 payload(s) of 2 record(s) erased" in text.stdout and REASON in text.stdout

    # The redaction record is sealed in the task's timeline, saying who, what, why.
    events = collector.get("/api/v1/tasks/T-1/timeline")["events"]
    assert [e["event_type"] for e in events] == ["model_call", "review", "resolution",
                                                 "redaction"]
    call, review, _, redaction = events
    assert (call["input"], call["output"]) == ("[erased]", "[erased]")
    assert review["rationale"] == review["diff"] == review["modified_output"] == "[erased]"
    # Envelope v2: the reason is free text, so an (erasable) payload, not the purpose.
    assert (redaction["actor"], redaction["resource"], redaction["purpose"],
            redaction["erase_reason"]) == ("dpo@example.org", "task:T-1", "", REASON)
    assert redaction["record_id"] == redaction_id
    assert redaction["seq"] == erased[t1["call"]]["redaction_seq"]
    assert redaction["attributes"] == {f"erased:{t1['call']}": "input,output",
                                       f"erased:{t1['review']}": "diff,modified_output,rationale"}
    timeline = cli("timeline", "T-1", "--url", collector.url)
    assert timeline.returncode == 0 and "REDACTION" in timeline.stdout
    assert "[erased]" in timeline.stdout and t1["secret"] not in timeline.stdout

    # Search and export show the same; the other task is untouched.
    found = cli("query", "--url", collector.url, "--format", "json")
    by_id = {r["record_id"]: r for r in json.loads(found.stdout)["records"]}
    assert by_id[t1["call"]]["input"] == "[erased]"
    assert by_id[tickets["T-2"]["call"]]["input"] == f"customer wrote: {tickets['T-2']['secret']}"
    csv_text = cli("export", "--url", collector.url, "--task", "T-1").stdout
    assert "[erased]" in csv_text and t1["secret"] not in csv_text


def test_erasing_again_is_refused_and_writes_nothing(collector, tickets):
    first = cli("erase", "--url", collector.url, "--task", "T-1", "--reason", REASON)
    assert first.returncode == 0, first.stderr
    again = cli("erase", "--url", collector.url, "--task", "T-1", "--reason", REASON)
    assert again.returncode == 1
    assert "already erased by redaction record" in again.stderr and REASON in again.stderr
    record = cli("erase", "--url", collector.url, "--record", tickets["T-1"]["review"],
                 "--reason", REASON)
    assert record.returncode == 1 and "already erased" in record.stderr
    assert _written(collector) == 7
    assert _verify("--url", collector.url)[0] == 0


# ---------------------------------------------------------------- the bytes

def test_erased_text_is_gone_from_every_file_of_the_data_directory(collector, tickets):
    data_dir = collector.data_dir
    texts = {t: (_random_part(tickets[t]["secret"]), _random_part(tickets[t]["note"]))
             for t in tickets}
    collector.stop()
    # Before: every text is on disk, so a miss below means erased, not never found.
    # On disk as 16-byte pieces, not whole: a 4-byte run of a random text can still
    # match other bytes of its part by chance (about 61 x part size / 64**4), and LZ4
    # then stores that run as a back-reference, splitting the text (seen in CI).
    for text in texts["T-1"] + texts["T-2"]:
        assert _files_containing(data_dir, text, piece=PRESENT), text

    again = CollectorProc(data_dir).start()
    try:
        out = cli("erase", "--url", again.url, "--task", "T-1", "--reason", REASON,
                  "--format", "json")
        assert out.returncode == 0, out.stderr
        assert json.loads(out.stdout)["inactive_parts_left"] == 0
    finally:
        again.stop()
    for text in texts["T-1"]:
        # Not a fragment of 12 bytes of it is left.
        assert _files_containing(data_dir, text, piece=12) == [], text
    for text in texts["T-2"]:  # the other ticket is untouched
        assert _files_containing(data_dir, text, piece=PRESENT), text

    # Erasing with no collector running (the CLI seals the redaction itself).
    out = cli("erase", "--data-dir", str(data_dir), "--record", tickets["T-2"]["call"],
              "--reason", REASON)
    assert out.returncode == 0, out.stderr
    secret2, note2 = texts["T-2"]
    assert _files_containing(data_dir, secret2, piece=12) == []
    assert _files_containing(data_dir, note2, piece=PRESENT)  # the review was not erased
    rows = engine(data_dir, "SELECT count() FROM aitrail.payloads WHERE content LIKE '%secret%'"
                  " OR content LIKE '%note%'")
    assert rows == [[[1]]]  # only T-2's rationale
    code, report = _verify("--data-dir", str(data_dir))
    assert code == 0, report["findings"]
    assert len(report["erased"]) == 3


# ---------------------------------------------------------------- by record, over HTTP

def test_erase_one_record_over_http_then_directly_and_the_chain_continues(collector, tickets):
    t1, t2 = tickets["T-1"], tickets["T-2"]
    status, body = _post_erase(collector, {"record_id": t2["call"], "reason": REASON,
                                           "actor": "dpo"})
    assert status == 200, body
    assert body["erased"] == [{"chain_id": "main", "record_id": t2["call"], "seq": 4,
                               "payloads": ["input", "output"]}]
    assert body["redactions"][0]["seq"] == 7 and body["target"] == f"record:{t2['call']}"
    # Erasing one record puts the redaction in that record's task.
    timeline = collector.get("/api/v1/tasks/T-2/timeline")["events"]
    assert timeline[-1]["event_type"] == "redaction"
    assert timeline[-1]["resource"] == f"record:{t2['call']}"
    assert timeline[0]["input"] == "[erased]" and timeline[1]["rationale"] != "[erased]"

    data_dir = collector.data_dir
    collector.stop()
    out = cli("erase", "--data-dir", str(data_dir), "--record", t1["review"], "--reason",
              "retention period over", "--actor", "ops")
    assert out.returncode == 0, out.stderr
    assert "Erased 3 payload(s) of 1 record(s)" in out.stdout
    local_redaction = out.stdout.split("sealed redaction record ")[1].split()[0]
    code, report = _verify("--data-dir", str(data_dir))
    assert code == 0, report["findings"]
    assert {e["record_id"]: e["redaction_id"] for e in report["erased"]} == {
        t1["review"]: local_redaction, t2["call"]: body["redactions"][0]["record_id"]}
    head = report["chains"][0]["head_seq"]
    assert report["erased"][0]["redaction_seq"] == head  # sealed on top of the chain

    # A collector started on the directory resumes after the redaction: no fork.
    again = CollectorProc(data_dir).start()
    try:
        from aitrail.v1 import audit_pb2 as pb
        reply = stub(again.grpc).Export(pb.ExportRequest(records=[make_record()]), timeout=30)
        assert reply.accepted == 1 and reply.head_seq == head + 1
        code, report = _verify("--url", again.url)
        assert code == 0 and len(report["erased"]) == 2, report["findings"]
    finally:
        again.stop()


# ---------------------------------------------------------------- tampering is not erasure

def test_payload_changed_without_erasure_fails_verification(collector, tickets):
    t1 = tickets["T-1"]
    data_dir = collector.data_dir
    call_seq = _seq(collector, t1["call"])
    collector.stop()
    engine(data_dir, "ALTER TABLE aitrail.payloads UPDATE content = 'a harmless question'"
                     f" WHERE record_id = '{t1['call']}' AND name = 'input'"
                     " SETTINGS mutations_sync = 1")
    code, report = _verify("--data-dir", str(data_dir))
    assert code == 1 and _kinds(report) == {("payload_modified", call_seq, t1["call"])}
    text = cli("verify", "--data-dir", str(data_dir))
    assert text.returncode == 1 and "payload_modified" in text.stdout

    # Erasing it afterwards does not hide the change: the redaction record says so.
    out = cli("erase", "--data-dir", str(data_dir), "--record", t1["call"], "--reason", REASON,
              "--format", "json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["erased"][0]["modified"] == ["input"]
    code, report = _verify("--data-dir", str(data_dir))
    assert code == 1 and _kinds(report) == {("payload_modified", call_seq, t1["call"])}


def test_changed_salt_fails_verification(collector, tickets):
    t2 = tickets["T-2"]
    data_dir = collector.data_dir
    seq = _seq(collector, t2["review"])
    collector.stop()
    engine(data_dir, "ALTER TABLE aitrail.payloads UPDATE salt = '00' WHERE record_id = "
                     f"'{t2['review']}' AND name = 'diff' SETTINGS mutations_sync = 1")
    code, report = _verify("--data-dir", str(data_dir))
    assert code == 1 and _kinds(report) == {("payload_modified", seq, t2["review"])}


def test_payload_deleted_without_erasure_is_missing(collector, tickets):
    t1 = tickets["T-1"]
    data_dir = collector.data_dir
    seq = _seq(collector, t1["review"])
    collector.stop()
    engine(data_dir, "ALTER TABLE aitrail.payloads DELETE WHERE record_id = "
                     f"'{t1['review']}' AND name = 'rationale' SETTINGS mutations_sync = 1")
    code, report = _verify("--data-dir", str(data_dir))
    assert code == 1 and _kinds(report) == {("payload_missing", seq, t1["review"])}
    assert report["erased"] == []

    # A later erasure names only what it erased: the deletion stays a finding.
    out = cli("erase", "--data-dir", str(data_dir), "--task", "T-1", "--reason", REASON)
    assert out.returncode == 0, out.stderr
    code, report = _verify("--data-dir", str(data_dir))
    assert code == 1 and _kinds(report) == {("payload_missing", seq, t1["review"])}
    assert {e["record_id"]: e["payloads"] for e in report["erased"]} == {
        t1["call"]: ["input", "output"], t1["review"]: ["diff", "modified_output"]}


# ---------------------------------------------------------------- bad requests

def test_bad_requests_are_refused_and_write_nothing(collector, tickets):
    url = ("--url", collector.url)
    t1 = tickets["T-1"]
    cases = [
        (("--task", "T-1"), 2, "--reason"),                               # no reason
        (("--task", "T-1", "--reason", ""), 2, "reason is required"),
        (("--task", "T-1", "--reason", "   "), 2, "reason is required"),
        (("--task", "T-1", "--reason", "x" * 1025), 2, "the limit is 1024"),
        (("--task", "T-1", "--record", t1["call"], "--reason", REASON), 2, "not allowed with"),
        (("--reason", REASON), 2, "one of the arguments --task --record is required"),
        (("--task", "T-nope", "--reason", REASON), 1, "no records for task 'T-nope'"),
        (("--record", "01900000-0000-7000-8000-00000000abcd", "--reason", REASON), 1,
         "no records for record"),
        (("--record", t1["done"], "--reason", REASON), 1, "has no payloads to erase"),
    ]
    for args, code, message in cases:
        out = cli("erase", *url, *args)
        assert out.returncode == code and message in out.stderr, (args, out.stderr)

    status, body = _post_erase(collector, {"task": "T-1", "record_id": t1["call"],
                                           "reason": REASON})
    assert status == 400 and "exactly one of task and record_id" in body["detail"]
    status, body = _post_erase(collector, {"task": "T-1"})
    assert status == 400 and "reason is required" in body["detail"]
    status, body = _post_erase(collector, {"task": "T-nope", "reason": REASON})
    assert status == 404

    assert _written(collector) == 6
    code, report = _verify(*url)
    assert code == 0 and report["erased"] == []
    assert collector.get(f"/api/v1/records?record_id={t1['call']}")["records"][0]["input"] \
        == f"customer wrote: {t1['secret']}"


def test_clients_cannot_send_a_redaction_record(collector):
    from aitrail.v1 import audit_pb2 as pb
    forged = make_record("redaction")
    reply = stub(collector.grpc).Export(pb.ExportRequest(records=[forged]), timeout=30)
    assert reply.accepted == 0 and "written by the collector only" in reply.rejected[0].reason


def test_an_erasure_cut_short_is_reported_and_completed_by_running_it_again(collector, tickets):
    t1 = tickets["T-1"]
    data_dir = collector.data_dir
    call_seq = _seq(collector, t1["call"])
    collector.stop()
    # Keep a copy of the rows, erase, and put them back: as if the deletion after
    # the sealed redaction record had failed.
    records = _verify("--data-dir", str(data_dir))[1]["records"]
    engine(data_dir, "CREATE TABLE aitrail.kept AS aitrail.payloads",
           f"INSERT INTO aitrail.kept SELECT * FROM aitrail.payloads WHERE record_id = "
           f"'{t1['call']}'")
    out = cli("erase", "--data-dir", str(data_dir), "--record", t1["call"], "--reason", REASON)
    assert out.returncode == 0, out.stderr
    engine(data_dir, "INSERT INTO aitrail.payloads SELECT * FROM aitrail.kept",
           "DROP TABLE aitrail.kept SYNC")
    code, report = _verify("--data-dir", str(data_dir))
    assert code == 1 and _kinds(report) == {("erasure_incomplete", call_seq, t1["call"])}

    again = cli("erase", "--data-dir", str(data_dir), "--record", t1["call"], "--reason", REASON)
    assert again.returncode == 0, again.stderr
    assert "completed the earlier erasure of 1 record(s)" in again.stdout
    code, report = _verify("--data-dir", str(data_dir))
    assert code == 0 and report["records"] == records + 1, report["findings"]  # one redaction
    assert [e["payloads"] for e in report["erased"]] == [["input", "output"]]
    assert _files_containing(data_dir, _random_part(t1["secret"]), piece=12) == []
