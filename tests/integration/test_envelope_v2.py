"""Envelope v2 (docs/canonical-envelope.md): free text is a payload that erasure can
delete, each record seals the credential that delivered it, API keys can be scoped to
task-id prefixes, an erase reason with personal data is refused, and records sealed
under v1 keep verifying next to v2 ones."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.parse
from pathlib import Path

import grpc
import pytest
from support import CollectorProc, cli, engine, make_record, stub

from aitrail.v1 import audit_pb2 as pb

E = "aitrail.envelopes"
SECRET = "zq-freetext-7731"  # a marker to look for in the store's files


def _text_records(task: str, tag: str) -> list[pb.AuditRecord]:
    esc = make_record("escalation", task_id=task, **{
        "escalation.from_reviewer": "rev-a", "escalation.to_reviewer": "rev-b",
        "escalation.reason": f"{tag} escalation {SECRET}"})
    res = make_record("resolution", task_id=task, **{
        "resolution.outcome": "refunded", "resolution.final_decision": f"{tag} final {SECRET}"})
    call = make_record("model_call", task_id=task, **{
        "model_call.model": "m", "model_call.input": f"{tag} prompt",
        "error.type": "Timeout", "error.message": f"{tag} error {SECRET}"})
    return [esc, res, call]


def _send(endpoint: str, records, metadata=None) -> pb.ExportResponse:
    return stub(endpoint).Export(pb.ExportRequest(records=list(records)), timeout=60,
                                 metadata=metadata)


def _files_containing(root: Path, needle: bytes) -> list[str]:
    hits = []
    for dirpath, _, files in os.walk(root):
        for name in files:
            path = os.path.join(dirpath, name)
            try:
                if needle in Path(path).read_bytes():
                    hits.append(path)
            except OSError:
                pass
    return hits


def _timeline(proc: CollectorProc, task: str) -> dict[str, dict]:
    events = proc.get(f"/api/v1/tasks/{urllib.parse.quote(task, safe='')}/timeline")["events"]
    return {e["event_type"]: e for e in events}


@pytest.mark.parametrize("version", [2, 3])
def test_free_text_is_sealed_as_payloads_and_erasure_removes_it_from_disk(tmp_path, version):
    # v2's rule, kept by v3 (the default), which adds an evaluation's explanation.
    proc = CollectorProc(tmp_path / "store", "--envelope-version", str(version)).start()
    try:
        assert _send(proc.grpc, _text_records("T-text", "v2")).accepted == 3
        shown = _timeline(proc, "T-text")
        assert shown["escalation"]["escalation_reason"] == f"v2 escalation {SECRET}"
        assert shown["resolution"]["final_decision"] == f"v2 final {SECRET}"
        assert shown["model_call"]["error_message"] == f"v2 error {SECRET}"
        assert {e["envelope_version"] for e in shown.values()} == {version}
        out = cli("erase", "--task", "T-text", "--reason", "GDPR request REQ-17", "--url",
                  proc.url)
        assert out.returncode == 0, out.stderr
        after = _timeline(proc, "T-text")
        assert after["escalation"]["escalation_reason"] == "[erased]"
        assert after["resolution"]["final_decision"] == "[erased]"
        assert after["redaction"]["erase_reason"] == "GDPR request REQ-17"
    finally:
        proc.stop()
    # The envelope never held the text, and erasure took it off the disk.
    rows = engine(tmp_path / "store", f"SELECT countIf(escalation_reason != '' OR"
                  f" final_decision != '' OR error_message != ''), countIf(purpose != '')"
                  f" FROM {E} WHERE task_id = 'T-text' AND event_type != 'data_access'")[0]
    assert rows == [[0, 0]]
    assert _files_containing(tmp_path / "store", SECRET.encode()) == []
    report = cli("verify", "--data-dir", str(tmp_path / "store"), "--format", "json")
    assert report.returncode == 0, report.stdout + report.stderr
    erased = json.loads(report.stdout)["erased"]
    assert {n for e in erased for n in e["payloads"]} >= {"escalation_reason",
                                                           "final_decision", "error_message"}


def test_an_erase_reason_with_personal_data_is_refused_and_nothing_is_erased(collector):
    assert _send(collector.grpc, _text_records("T-pii", "x")).accepted == 3
    for reason in ("asked by jane.doe@example.com", "caller +1 415 555 0134",
                   "card 4111 1111 1111 1111", "SSN 123-45-6789"):
        out = cli("erase", "--task", "T-pii", "--reason", reason, "--url", collector.url)
        assert out.returncode == 2, (reason, out.stdout, out.stderr)
        assert "looks like personal data" in out.stderr
    assert _timeline(collector, "T-pii")["escalation"]["escalation_reason"] == \
        f"x escalation {SECRET}"
    assert "redaction" not in _timeline(collector, "T-pii")


def test_each_record_seals_the_credential_that_delivered_it(tmp_path):
    keys_file = tmp_path / "keys.json"
    made = cli("apikey", "create", "--keys-file", str(keys_file), "--service", "raw-client",
               "--task-prefix", "T-ok-")
    assert made.returncode == 0, made.stderr
    key = made.stdout.strip()
    key_id = key[len("ait_"):].split("_", 1)[0]
    proc = CollectorProc(tmp_path / "store", "--api-keys", str(keys_file)).start()
    try:
        bearer = (("authorization", f"Bearer {key}"),)
        inside, outside = make_record(task_id="T-ok-1"), make_record(task_id="T-other-1")
        resp = _send(proc.grpc, [inside, outside], bearer)
        assert resp.accepted == 1
        (refused,) = resp.rejected
        assert refused.record_id == outside.record_id
        assert "outside the API key's scope" in refused.reason and "'T-ok-'" in refused.reason
        got = proc.get(f"/api/v1/records?record_id={inside.record_id}")["records"][0]
        assert (got["principal_kind"], got["principal_id"]) == ("apikey", key_id)
        # The collector's own records (this read, sealed as data_access) say so.
        reads = proc.get("/api/v1/records?type=data_access&service=aitrail-collector")
        assert {r["principal_kind"] for r in reads["records"]} == {"collector"}
        listed = cli("apikey", "list", "--keys-file", str(keys_file))
        assert "tasks T-ok-*" in listed.stdout
    finally:
        proc.stop()


def test_mutual_tls_clients_are_sealed_by_their_certificate_subject(tmp_path):
    from test_security import Certs
    certs = Certs(tmp_path)
    proc = CollectorProc(tmp_path / "store", "--tls-cert", certs.server_cert, "--tls-key",
                         certs.server_key, "--tls-client-ca", certs.ca).start()
    try:
        creds = grpc.ssl_channel_credentials(
            root_certificates=Certs.read(certs.ca), private_key=Certs.read(certs.client_key),
            certificate_chain=Certs.read(certs.client_cert))
        channel = grpc.secure_channel(proc.grpc, creds,
                                      options=[("grpc.use_local_subchannel_pool", 1)])
        rec = make_record(task_id="T-mtls")
        from aitrail.v1 import audit_pb2_grpc
        resp = audit_pb2_grpc.AuditServiceStub(channel).Export(
            pb.ExportRequest(records=[rec]), timeout=60)
        assert resp.accepted == 1
        got = proc.get(f"/api/v1/records?record_id={rec.record_id}")["records"][0]
        assert (got["principal_kind"], got["principal_id"]) == ("mtls", "CN=svc-a client")
    finally:
        proc.stop()


def test_records_sealed_as_v1_keep_verifying_after_the_upgrade(tmp_path):
    """A store sealed under v1, then v2, then v3 (the default): every version verifies,
    and each record's proof bundle is of its own version."""
    data = tmp_path / "store"
    old = CollectorProc(data, "--envelope-version", "1").start()
    try:
        assert _send(old.grpc, _text_records("T-v1", "old")).accepted == 3
        # v1 has no column for an evaluation: refused, not stored without its fields.
        refused = _send(old.grpc, [make_record("evaluation", task_id="T-v1",
                                               **{"evaluation.name": "relevance"})])
        assert refused.accepted == 0 and "need envelope v3" in refused.rejected[0].reason
        assert cli("erase", "--task", "T-v1", "--reason", "old erasure",
                   "--url", old.url).returncode == 0
        v1_id = old.get("/api/v1/records?task=T-v1&type=escalation")["records"][0]["record_id"]
    finally:
        old.stop()
    mid = CollectorProc(data, "--envelope-version", "2").start()
    try:
        records = _text_records("T-v2", "new")
        assert _send(mid.grpc, records).accepted == 3
    finally:
        mid.stop()
    new = CollectorProc(data).start()
    try:
        evaluation = make_record("evaluation", task_id="T-v3", **{
            "evaluation.name": "relevance", "evaluation.score_value": -2.5,
            "evaluation.score_label": "off topic", "evaluation.response_id": "chatcmpl-9",
            "evaluation.explanation": f"about {SECRET}"})
        assert _send(new.grpc, [evaluation]).accepted == 1
        v1_shown, v2_shown = _timeline(new, "T-v1"), _timeline(new, "T-v2")
        v3_shown = _timeline(new, "T-v3")
        assert {e["envelope_version"] for e in v1_shown.values()} == {1}
        assert {e["envelope_version"] for e in v2_shown.values()} == {2}
        assert v3_shown["evaluation"]["envelope_version"] == 3
        assert (v3_shown["evaluation"]["score_value"], v3_shown["evaluation"]["explanation"]
                ) == (-2.5, f"about {SECRET}")
        # v1 sealed the free text in the envelope: erasure could not take it (the reason
        # v2 exists); a v1 redaction's reason reads the same as a v2 one's.
        assert v1_shown["escalation"]["escalation_reason"] == f"old escalation {SECRET}"
        assert v1_shown["redaction"]["erase_reason"] == "old erasure"
        assert v2_shown["escalation"]["escalation_reason"] == f"new escalation {SECRET}"
        bundles = {}
        for name, rid in (("v1", v1_id), ("v2", records[0].record_id),
                          ("v3", evaluation.record_id)):
            path = tmp_path / f"{name}.json"
            out = cli("prove", rid, "--url", new.url, "-o", str(path))
            assert out.returncode == 0, out.stderr
            bundles[name] = path
    finally:
        new.stop()
    for name, path in bundles.items():
        assert json.loads(path.read_text())["format"] == f"aitrail-proof-bundle/{name}"
    for path in bundles.values():
        out = subprocess.run([sys.executable, "-m", "aitrail.cli", "verify-proof", str(path),
                              "--public-key", str(data / "signing-key.pub")],
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stdout + out.stderr
    versions = engine(data, f"SELECT envelope_version, count() FROM {E} GROUP BY 1 ORDER BY 1")
    assert [v for v, _ in versions[0]] == [1, 2, 3]
    ok = cli("verify", "--data-dir", str(data))
    assert ok.returncode == 0, ok.stdout + ok.stderr
    # A v1 row's free text is still bound by its leaf hash.
    engine(data, f"ALTER TABLE {E} UPDATE escalation_reason = 'rewritten' WHERE record_id ="
                 f" '{v1_id}' SETTINGS mutations_sync = 2")
    bad = cli("verify", "--data-dir", str(data), "--format", "json")
    assert bad.returncode == 1
    found = json.loads(bad.stdout)["findings"]
    assert [(f["kind"], f["record_id"]) for f in found] == [("modified", v1_id)]
