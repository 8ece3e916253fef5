"""Ingest security against a real collector subprocess on real sockets.

API keys (per service, revocable without a restart, stored only as hashes),
TLS and mutual TLS on the gRPC port, and the collector's refusal to start with
a half-configured setup. Certificates are made here with ``cryptography``: a
CA, a server certificate for 127.0.0.1 / localhost, a client certificate from
the same CA, an unrelated second CA with a client certificate of its own, and
an expired client certificate from the right CA.

Collectors are shared per module (starting one costs a second or two); a test
that expects nothing to be stored compares the record count before and after
and checks that its own record ids are absent.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
import json
import os
import stat
import time
import urllib.parse
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from support import CollectorProc, cli, count_records, free_port, make_record, stub

import aitrail
from aitrail.v1 import audit_pb2 as pb
from aitrail.v1 import audit_pb2_grpc

TIMEOUT = 5  # seconds per raw RPC: a failure must not hang the suite


# ------------------------------------------------------------------ certificates

def _key():
    return ec.generate_private_key(ec.SECP256R1())


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _cert(subject: str, key, issuer_name: x509.Name, issuer_key, *, ca: bool = False,
          server: bool = False, client: bool = False, not_before=None, not_after=None):
    now = dt.datetime.now(dt.timezone.utc)
    b = (x509.CertificateBuilder()
         .subject_name(_name(subject))
         .issuer_name(issuer_name)
         .public_key(key.public_key())
         .serial_number(x509.random_serial_number())
         .not_valid_before(not_before or now - dt.timedelta(hours=1))
         .not_valid_after(not_after or now + dt.timedelta(days=2))
         .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
         .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                        critical=False))
    if ca:
        b = b.add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True,
                                          crl_sign=True, content_commitment=False,
                                          key_encipherment=False, data_encipherment=False,
                                          key_agreement=False, encipher_only=False,
                                          decipher_only=False), critical=True)
    else:
        b = b.add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
            issuer_key.public_key()), critical=False)
    if server:
        b = (b.add_extension(x509.SubjectAlternativeName([
                x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]),
                critical=False)
             .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
                            critical=False))
    if client:
        b = b.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]),
                            critical=False)
    return b.sign(issuer_key, hashes.SHA256())


class Certs:
    """PEM files (paths) and their bytes, for the collector, the SDK and raw clients."""

    def __init__(self, d: Path):
        self.dir = d
        now = dt.datetime.now(dt.timezone.utc)
        ca_key, other_ca_key = _key(), _key()
        ca = _cert("aitrail test CA", ca_key, _name("aitrail test CA"), ca_key, ca=True)
        other_ca = _cert("unrelated CA", other_ca_key, _name("unrelated CA"), other_ca_key,
                         ca=True)
        self.ca = self._write("ca.pem", ca)
        self.other_ca = self._write("other-ca.pem", other_ca)

        server_key = _key()
        self.server_cert = self._write("server.pem", _cert(
            "localhost", server_key, ca.subject, ca_key, server=True))
        self.server_key = self._write("server-key.pem", server_key)

        client_key = _key()
        self.client_cert = self._write("client.pem", _cert(
            "svc-a client", client_key, ca.subject, ca_key, client=True))
        self.client_key = self._write("client-key.pem", client_key)

        foreign_key = _key()
        self.foreign_cert = self._write("foreign-client.pem", _cert(
            "foreign client", foreign_key, other_ca.subject, other_ca_key, client=True))
        self.foreign_key = self._write("foreign-client-key.pem", foreign_key)

        expired_key = _key()
        self.expired_cert = self._write("expired-client.pem", _cert(
            "expired client", expired_key, ca.subject, ca_key, client=True,
            not_before=now - dt.timedelta(days=10), not_after=now - dt.timedelta(days=1)))
        self.expired_key = self._write("expired-client-key.pem", expired_key)

    def _write(self, name: str, obj) -> str:
        if isinstance(obj, x509.Certificate):
            data = obj.public_bytes(serialization.Encoding.PEM)
        else:
            data = obj.private_bytes(serialization.Encoding.PEM,
                                     serialization.PrivateFormat.PKCS8,
                                     serialization.NoEncryption())
        path = self.dir / name
        path.write_bytes(data)
        return str(path)

    @staticmethod
    def read(path: str) -> bytes:
        return Path(path).read_bytes()


@pytest.fixture(scope="module")
def certs(tmp_path_factory) -> Certs:
    return Certs(tmp_path_factory.mktemp("certs"))


# ------------------------------------------------------------------ helpers

def _channel(endpoint: str, *, ca: str = None, cert: str = None, key: str = None,
             insecure: bool = False) -> grpc.Channel:
    # A local subchannel pool: no connection is shared with another test's channel.
    options = [("grpc.use_local_subchannel_pool", 1)]
    if insecure:
        return grpc.insecure_channel(endpoint, options=options)
    creds = grpc.ssl_channel_credentials(
        root_certificates=Certs.read(ca) if ca else None,
        private_key=Certs.read(key) if key else None,
        certificate_chain=Certs.read(cert) if cert else None)
    return grpc.secure_channel(endpoint, creds, options=options)


def _export(channel: grpc.Channel, records, metadata=None) -> pb.ExportResponse:
    return audit_pb2_grpc.AuditServiceStub(channel).Export(
        pb.ExportRequest(records=list(records)), timeout=TIMEOUT, metadata=metadata)


def _export_fails(channel: grpc.Channel, records, metadata=None) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        _export(channel, records, metadata)
    return info.value


def _bearer(key: str):
    return (("authorization", f"Bearer {key}"),)


def _stored_ids(collector: CollectorProc, **filters: str) -> set[str]:
    query = urllib.parse.urlencode(dict(filters, limit="10000"))
    return {r["record_id"] for r in collector.get(f"/api/v1/records?{query}")["records"]}


def _stored(collector: CollectorProc, record_id: str) -> bool:
    return record_id in _stored_ids(collector, record_id=record_id)


def _create_key(keys_file: Path, service: str) -> str:
    out = cli("apikey", "create", "--keys-file", str(keys_file), "--service", service)
    assert out.returncode == 0, out.stderr
    key = out.stdout.strip()
    assert key.startswith("ait_") and key.count("_") >= 2, out.stdout
    return key


def _key_id(key: str) -> str:
    return key[len("ait_"):].split("_", 1)[0]


def _secret(key: str) -> str:
    return key[len("ait_"):].split("_", 1)[1]


def _wait_sdk(timeout: float = 10) -> dict:
    assert aitrail.flush(timeout), aitrail.stats()
    return aitrail.stats()


# ------------------------------------------------------------------ collectors

@pytest.fixture(scope="module")
def keyed(tmp_path_factory):
    """A collector requiring API keys; ``keyed.key`` may write as svc-a."""
    d = tmp_path_factory.mktemp("keyed")
    keys_file = d / "keys.json"
    key = _create_key(keys_file, "svc-a")
    proc = CollectorProc(d / "store", "--api-keys", str(keys_file)).start()
    proc.keys_file, proc.key = keys_file, key
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def tls_collector(tmp_path_factory, certs):
    d = tmp_path_factory.mktemp("tls")
    proc = CollectorProc(d / "store", "--tls-cert", certs.server_cert,
                         "--tls-key", certs.server_key).start()
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def mtls_collector(tmp_path_factory, certs):
    d = tmp_path_factory.mktemp("mtls")
    proc = CollectorProc(d / "store", "--tls-cert", certs.server_cert,
                         "--tls-key", certs.server_key, "--tls-client-ca", certs.ca).start()
    yield proc
    proc.stop()


# ------------------------------------------------------------------ 1. API keys

def test_api_key_missing_is_unauthenticated_and_nothing_is_stored(keyed):
    before = count_records(keyed)
    rec = make_record(service="svc-a")
    with pytest.raises(grpc.RpcError) as info:
        stub(keyed.grpc).Export(pb.ExportRequest(records=[rec]), timeout=TIMEOUT)
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "missing API key" in info.value.details()
    # A header that is not a Bearer token counts as missing too.
    with pytest.raises(grpc.RpcError) as info:
        stub(keyed.grpc).Export(pb.ExportRequest(records=[rec]), timeout=TIMEOUT,
                                metadata=(("authorization", keyed.key),))
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert count_records(keyed) == before
    assert not _stored(keyed, rec.record_id)


@pytest.mark.parametrize("bad, detail", [
    ("not-a-key", "malformed API key"),
    ("ait_nounderscore", "malformed API key"),
    ("ait_0123456789ab_" + "x" * 43, "unknown API key"),       # unknown id
    ("WRONG-SECRET", "unknown API key"),                       # right id, wrong secret
])
def test_api_key_malformed_or_unknown_is_unauthenticated(keyed, bad, detail):
    if bad == "WRONG-SECRET":
        bad = f"ait_{_key_id(keyed.key)}_{_secret(keyed.key)[:-2]}xx"
        assert bad != keyed.key
    before = count_records(keyed)
    rec = make_record(service="svc-a")
    with pytest.raises(grpc.RpcError) as info:
        stub(keyed.grpc).Export(pb.ExportRequest(records=[rec]), timeout=TIMEOUT,
                                metadata=_bearer(bad))
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert detail in info.value.details()
    assert count_records(keyed) == before
    assert not _stored(keyed, rec.record_id)


def _peak_rss_mib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith("VmHWM")) >> 10


def test_api_key_is_checked_before_a_gzip_body_is_decompressed(keyed):
    """A compressed request with a bad key is refused from its metadata: its body is
    never inflated (nor even read), so the collector's peak memory does not grow."""
    channel = grpc.insecure_channel(keyed.grpc, options=[("grpc.max_send_message_length", -1)])
    call = channel.unary_unary("/aitrail.v1.AuditService/Export")
    body = b"\0" * (48 << 20)  # inflates to 48 MiB; under the 64 MiB message limit
    _export(grpc.insecure_channel(keyed.grpc), [make_record(service="svc-a")],
            metadata=_bearer(keyed.key))  # warm up: the first call allocates a little
    before = _peak_rss_mib(keyed.proc.pid)
    for metadata in ((), _bearer("ait_nope_nope"), _bearer(keyed.key[:-4] + "xxxx")):
        with pytest.raises(grpc.RpcError) as err:
            call(body, timeout=TIMEOUT, metadata=metadata, compression=grpc.Compression.Gzip)
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED, err.value.details()
    assert _peak_rss_mib(keyed.proc.pid) - before < 24


def test_api_key_valid_is_accepted(keyed):
    before = count_records(keyed)
    rec = make_record(service="svc-a", task_id="T-key-ok")
    resp = stub(keyed.grpc).Export(pb.ExportRequest(records=[rec]), timeout=TIMEOUT,
                                   metadata=_bearer(keyed.key))
    assert (resp.accepted, resp.duplicates, list(resp.rejected)) == (1, 0, [])
    assert count_records(keyed) == before + 1
    assert _stored(keyed, rec.record_id)


def test_api_key_refuses_records_of_another_service_per_record(keyed):
    before = count_records(keyed)
    a1 = make_record(service="svc-a", task_id="T-mixed")
    b = make_record(service="svc-b", task_id="T-mixed")
    a2 = make_record(service="svc-a", task_id="T-mixed")
    resp = stub(keyed.grpc).Export(pb.ExportRequest(records=[a1, b, a2]), timeout=TIMEOUT,
                                   metadata=_bearer(keyed.key))
    assert resp.accepted == 2
    assert len(resp.rejected) == 1
    (rej,) = resp.rejected
    assert (rej.index, rej.record_id) == (1, b.record_id)
    assert "API key's service" in rej.reason and "'svc-a'" in rej.reason
    assert "'svc-b'" in rej.reason
    assert count_records(keyed) == before + 2
    assert _stored_ids(keyed, task="T-mixed") == {a1.record_id, a2.record_id}


def test_api_key_revoked_while_running_is_refused_without_restart(keyed):
    pid = keyed.proc.pid
    # A key created while the collector runs is picked up without a restart...
    key = _create_key(keyed.keys_file, "svc-a")
    first = make_record(service="svc-a")
    resp = stub(keyed.grpc).Export(pb.ExportRequest(records=[first]), timeout=TIMEOUT,
                                   metadata=_bearer(key))
    assert resp.accepted == 1
    # ...and revoking it takes effect on the very next request.
    out = cli("apikey", "revoke", _key_id(key), "--keys-file", str(keyed.keys_file))
    assert out.returncode == 0, out.stderr
    assert f"revoked {_key_id(key)}" in out.stdout
    # The client's records only: the collector seals the revocation itself as an
    # admin_action when it notices the keys file changed, so a total would race it.
    before = _stored_ids(keyed, service="svc-a")
    rec = make_record(service="svc-a")
    with pytest.raises(grpc.RpcError) as info:
        stub(keyed.grpc).Export(pb.ExportRequest(records=[rec]), timeout=TIMEOUT,
                                metadata=_bearer(key))
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "revoked" in info.value.details()
    assert _key_id(key) in info.value.details()
    assert _stored_ids(keyed, service="svc-a") == before
    assert not _stored(keyed, rec.record_id)
    assert keyed.proc.pid == pid and keyed.proc.poll() is None  # same process, no restart
    listing = cli("apikey", "list", "--keys-file", str(keyed.keys_file))
    line = next(l for l in listing.stdout.splitlines() if l.startswith(_key_id(key)))
    assert "REVOKED" in line
    # The other key is untouched.
    ok = stub(keyed.grpc).Export(pb.ExportRequest(records=[make_record(service="svc-a")]),
                                 timeout=TIMEOUT, metadata=_bearer(keyed.key))
    assert ok.accepted == 1


def test_api_keys_file_stores_no_secret(tmp_path):
    keys_file = tmp_path / "keys.json"
    keys = [_create_key(keys_file, "svc-a"), _create_key(keys_file, "svc-b")]
    text = keys_file.read_text()
    entries = {k["key_id"]: k for k in json.loads(text)["keys"]}
    assert set(entries) == {_key_id(k) for k in keys}
    for key in keys:
        assert _secret(key) not in text
        assert key not in text
        # What is kept is the secret's hash, for the right service.
        entry = entries[_key_id(key)]
        assert entry["sha256"] == hashlib.sha256(_secret(key).encode()).hexdigest()
        assert not entry["revoked"]
    assert entries[_key_id(keys[1])]["service"] == "svc-b"
    assert stat.S_IMODE(os.stat(keys_file).st_mode) & 0o077 == 0  # not readable by others


def test_api_key_for_the_collectors_own_service_is_refused(tmp_path):
    keys_file = tmp_path / "keys.json"
    for service in ("aitrail-collector", "Aitrail-Collector "):
        out = cli("apikey", "create", "--keys-file", str(keys_file), "--service", service)
        assert out.returncode == 2, out.stdout + out.stderr
        assert "reserved for the collector" in out.stderr and out.stdout == ""
    assert not keys_file.exists()


# ------------------------------------------------------------------ 2. SDK with an API key

def test_sdk_with_api_key_delivers_and_wrong_service_is_rejected(keyed):
    aitrail.configure(endpoint=keyed.grpc, service="svc-a", api_key=keyed.key,
                      redaction_key="k", delivery="best_effort", retry_for=2,
                      flush_interval=0.05)
    try:
        ids = [aitrail.resolve("T-sdk-key", resolution="closed") for _ in range(3)]
        stats = _wait_sdk()
        assert (stats["sent"], stats["rejected"], stats["dropped"]) == (3, 0, 0)
        rows = keyed.get("/api/v1/records?limit=10000&task=T-sdk-key")["records"]
        assert {r["record_id"] for r in rows} == set(ids)
        assert {r["service"] for r in rows} == {"svc-a"}

        # The same key cannot write as another service.
        aitrail.configure(endpoint=keyed.grpc, service="svc-b", api_key=keyed.key,
                          redaction_key="k", delivery="best_effort", retry_for=2,
                          flush_interval=0.05)
        bad = aitrail.resolve("T-sdk-key-b", resolution="closed")
        stats = _wait_sdk()
        assert (stats["sent"], stats["rejected"]) == (0, 1)
        assert not _stored(keyed, bad)
    finally:
        aitrail.shutdown()


def test_sdk_without_api_key_is_refused(keyed):
    before = count_records(keyed)
    aitrail.configure(endpoint=keyed.grpc, service="svc-a", redaction_key="k",
                      delivery="best_effort", retry_for=1, flush_interval=0.05)
    try:
        rid = aitrail.resolve("T-sdk-nokey", resolution="closed")
        stats = _wait_sdk(15)
        assert (stats["sent"], stats["dropped"]) == (0, 1)
    finally:
        aitrail.shutdown()
    assert count_records(keyed) == before
    assert not _stored(keyed, rid)


# ------------------------------------------------------------------ 3. TLS

@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_tls_sdk_trusting_the_ca_delivers(tls_collector, certs, host):
    endpoint = f"{host}:{tls_collector.grpc_port}"
    aitrail.configure(endpoint=endpoint, service="svc-tls", tls=True, ca_cert=certs.ca,
                      redaction_key="k", delivery="best_effort", retry_for=2,
                      flush_interval=0.05)
    try:
        rid = aitrail.resolve(f"T-tls-{host}", resolution="closed")
        stats = _wait_sdk()
        assert (stats["sent"], stats["dropped"]) == (1, 0)
    finally:
        aitrail.shutdown()
    assert _stored_ids(tls_collector, task=f"T-tls-{host}") == {rid}


def test_tls_raw_client_trusting_the_ca_is_accepted(tls_collector, certs):
    rec = make_record(service="svc-tls")
    ch = _channel(tls_collector.grpc, ca=certs.ca)
    try:
        assert _export(ch, [rec]).accepted == 1
    finally:
        ch.close()
    assert _stored(tls_collector, rec.record_id)


def test_tls_plaintext_client_fails(tls_collector):
    before = count_records(tls_collector)
    rec = make_record(service="svc-tls")
    ch = _channel(tls_collector.grpc, insecure=True)
    try:
        err = _export_fails(ch, [rec])
    finally:
        ch.close()
    assert err.code() == grpc.StatusCode.UNAVAILABLE
    assert count_records(tls_collector) == before
    assert not _stored(tls_collector, rec.record_id)


def test_tls_client_trusting_another_ca_fails(tls_collector, certs):
    before = count_records(tls_collector)
    rec = make_record(service="svc-tls")
    ch = _channel(tls_collector.grpc, ca=certs.other_ca)
    try:
        err = _export_fails(ch, [rec])
    finally:
        ch.close()
    assert err.code() == grpc.StatusCode.UNAVAILABLE
    assert count_records(tls_collector) == before
    assert not _stored(tls_collector, rec.record_id)


def test_tls_sdk_trusting_another_ca_drops_and_stores_nothing(tls_collector, certs):
    before = count_records(tls_collector)
    aitrail.configure(endpoint=tls_collector.grpc, service="svc-tls", tls=True,
                      ca_cert=certs.other_ca, redaction_key="k", delivery="best_effort",
                      retry_for=1, export_timeout=2, flush_interval=0.05)
    try:
        rid = aitrail.resolve("T-tls-wrong-ca", resolution="closed")
        stats = _wait_sdk(15)
        assert (stats["sent"], stats["dropped"]) == (0, 1)
    finally:
        aitrail.shutdown()
    assert count_records(tls_collector) == before
    assert not _stored(tls_collector, rid)


# ------------------------------------------------------------------ 4. mutual TLS

def test_mtls_valid_client_cert_is_accepted(mtls_collector, certs):
    rec = make_record(service="svc-mtls")
    ch = _channel(mtls_collector.grpc, ca=certs.ca, cert=certs.client_cert, key=certs.client_key)
    try:
        resp = _export(ch, [rec])
    finally:
        ch.close()
    assert (resp.accepted, list(resp.rejected)) == (1, [])
    assert _stored(mtls_collector, rec.record_id)


def test_mtls_sdk_with_client_cert_delivers(mtls_collector, certs):
    aitrail.configure(endpoint=mtls_collector.grpc, service="svc-mtls", ca_cert=certs.ca,
                      client_cert=certs.client_cert, client_key=certs.client_key,
                      redaction_key="k", delivery="best_effort", retry_for=2,
                      flush_interval=0.05)
    try:
        rid = aitrail.resolve("T-mtls-sdk", resolution="closed")
        stats = _wait_sdk()
        assert (stats["sent"], stats["dropped"]) == (1, 0)
    finally:
        aitrail.shutdown()
    assert _stored_ids(mtls_collector, task="T-mtls-sdk") == {rid}


def test_mtls_applies_to_the_otlp_grpc_receiver_too(mtls_collector, certs):
    """OTLP/gRPC rides the same server: the OTel exporter needs a client certificate,
    and its records carry the certificate's subject as their principal."""
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource({"service.name": "svc-mtls"}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    with provider.get_tracer("t").start_as_current_span("chat") as span:
        span.set_attributes({"gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai",
                             "gen_ai.request.model": "gpt-4o", "aitrail.task_id": "T-mtls-otlp"})
    spans = memory.get_finished_spans()
    before = count_records(mtls_collector)
    plain = OTLPSpanExporter(endpoint=mtls_collector.grpc, timeout=3,
                             credentials=grpc.ssl_channel_credentials(Certs.read(certs.ca)))
    assert plain.export(spans) == SpanExportResult.FAILURE  # no client certificate
    plain.shutdown()
    assert count_records(mtls_collector) == before
    exporter = OTLPSpanExporter(endpoint=mtls_collector.grpc, timeout=10,
                                credentials=grpc.ssl_channel_credentials(
                                    Certs.read(certs.ca), Certs.read(certs.client_key),
                                    Certs.read(certs.client_cert)))
    assert exporter.export(spans) == SpanExportResult.SUCCESS
    exporter.shutdown()
    (rec,) = mtls_collector.get("/api/v1/records?task=T-mtls-otlp")["records"]
    assert rec["principal_kind"] == "mtls" and rec["model"] == "gpt-4o"


@pytest.mark.parametrize("which", ["no client cert", "cert from another CA", "expired cert"])
def test_mtls_refuses_clients_without_a_valid_cert(mtls_collector, certs, which):
    cert, key = {"no client cert": (None, None),
                 "cert from another CA": (certs.foreign_cert, certs.foreign_key),
                 "expired cert": (certs.expired_cert, certs.expired_key)}[which]
    before = count_records(mtls_collector)
    rec = make_record(service="svc-mtls")
    ch = _channel(mtls_collector.grpc, ca=certs.ca, cert=cert, key=key)
    try:
        err = _export_fails(ch, [rec])
    finally:
        ch.close()
    assert err.code() == grpc.StatusCode.UNAVAILABLE, (err.code(), err.details())
    assert count_records(mtls_collector) == before
    assert not _stored(mtls_collector, rec.record_id)


# ------------------------------------------------------------------ 5. refusing to start

def _collector_args(tmp_path: Path, *extra: str) -> list[str]:
    return ["collector", "--data-dir", str(tmp_path / "store"),
            "--grpc-listen", f"127.0.0.1:{free_port()}",
            "--http-listen", f"127.0.0.1:{free_port()}", *extra]


@pytest.mark.parametrize("case", ["cert without key", "key without cert",
                                  "client CA without cert", "keys file without keys",
                                  "empty keys file", "missing keys file"])
def test_collector_refuses_to_start_half_configured(tmp_path, certs, case):
    keys_file = tmp_path / "keys.json"
    if case == "keys file without keys":
        keys_file.write_text('{"keys": []}')
    elif case == "empty keys file":
        keys_file.write_text("")
    extra, message = {
        "cert without key": (["--tls-cert", certs.server_cert],
                             "--tls-cert and --tls-key go together"),
        "key without cert": (["--tls-key", certs.server_key],
                             "--tls-cert and --tls-key go together"),
        "client CA without cert": (["--tls-client-ca", certs.ca], "--tls-client-ca"),
        "keys file without keys": (["--api-keys", str(keys_file)], "no API keys"),
        "empty keys file": (["--api-keys", str(keys_file)], "not a valid keys file"),
        "missing keys file": (["--api-keys", str(keys_file)], "no such file"),
    }[case]
    start = time.monotonic()
    out = cli(*_collector_args(tmp_path, *extra), timeout=30)
    assert out.returncode == 2, (out.returncode, out.stdout, out.stderr)
    assert message in out.stderr, out.stderr
    assert out.stderr.startswith("aitrail collector: ")
    assert "Traceback" not in out.stderr
    assert time.monotonic() - start < 30
