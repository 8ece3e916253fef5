"""A small client for a running collector's JSON API (standard library only).

CLI commands given ``--url`` use it, so querying a collector needs nothing but
``pip install aitrail``.
"""

from __future__ import annotations

import http.client
import json
import ssl
import types
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, Iterator, Mapping, Optional, cast

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from aitrail.errors import AitrailError
from aitrail.verify.checkpoint import (
    CheckpointError,
    SignedCheckpoint,
    key_id,
    load_public_key,
    verify_signature,
)
from aitrail.verify.pinned import (
    Extension,
    PinnedError,
    check_pinned,
    describe,
    newest_extension,
    parse_pinned,
)
from aitrail.verify.trust_root import FROM_FLAG_KEY, trust_root


class ClientError(AitrailError, RuntimeError):
    """The collector refused the request or could not be reached; the text says which."""


class NothingToErase(ClientError):
    """An erasure found nothing to erase: no such task or record, or already erased."""


# No query parameters (dict() of it is {}, as it was of the former default, ()).
_NO_PARAMS: Mapping[str, Any] = types.MappingProxyType({})


class HttpBackend:
    def __init__(self, url: str, timeout: float = 120.0, token: Optional[str] = None,
                 ca_cert: Optional[str] = None):
        if not url.startswith(("http://", "https://")):
            raise ClientError(f"--url {url!r}: expected http://host:port")
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.token = token
        # https: the system's CAs, or only ``ca_cert`` (a private CA, a self-signed cert).
        self.context: Optional[ssl.SSLContext] = None
        if ca_cert:
            try:
                self.context = ssl.create_default_context(cafile=ca_cert)
            except (OSError, ssl.SSLError) as exc:
                raise ClientError(f"--ca-cert {ca_cert}: {exc}") from None

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def _open(self, path: str, params: Mapping[str, Any] = _NO_PARAMS) -> http.client.HTTPResponse:
        query = urllib.parse.urlencode(
            [(k, v) for k, vs in dict(params).items() if vs not in (None, "", [], ())
             for v in (vs if isinstance(vs, (list, tuple)) else [vs])])
        url = f"{self.url}{path}" + (f"?{query}" if query else "")
        try:
            # typeshed types urlopen's result as Any; for an http(s) URL (checked in
            # __init__) it is an HTTPResponse.
            return cast(http.client.HTTPResponse, urllib.request.urlopen(
                urllib.request.Request(url, headers=self._headers()),
                timeout=self.timeout, context=self.context))  # noqa: S310 - user's URL
        except urllib.error.HTTPError as err:
            try:
                detail = json.loads(err.read()).get("detail")
            except (ValueError, AttributeError):
                detail = None
            raise ClientError(f"{detail or err.reason} (HTTP {err.code} from {self.url})") from None
        except (urllib.error.URLError, OSError) as err:
            reason = getattr(err, "reason", err)
            raise ClientError(f"cannot reach the collector at {self.url}: {reason}") from None

    def _json(self, path: str, params: Mapping[str, Any] = _NO_PARAMS) -> Any:
        with self._open(path, params) as resp:
            return json.load(resp)

    def search(self, params: Mapping[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = self._json("/api/v1/records", params)
        return result

    def timeline(self, task_id: str) -> list[dict[str, Any]]:
        # A query value, not a path segment: ids like "..", "a/b" survive every proxy.
        events: list[dict[str, Any]] = self._json("/api/v1/timeline", {"task": task_id})["events"]
        return events

    def export_csv(self, params: Mapping[str, Any]) -> Iterator[bytes]:
        with self._open("/api/v1/export.csv", params) as resp:
            while True:
                chunk = resp.read(1 << 16)
                if not chunk:
                    return
                yield chunk

    def verify(self, from_checkpoint: Optional[int] = None, public_key: Optional[str] = None,
               anchor: Optional[str] = None,
               since_checkpoint: Optional[str] = None) -> dict[str, Any]:
        # The collector checks with its own key and anchor; the caller compares the
        # key id with the key it trusts (cli._check_key_id), and the trust root then
        # names that key.
        if anchor:
            raise ClientError("--anchor applies to --data-dir; a collector compares with its "
                              "own anchor store")
        pinned = None
        if since_checkpoint is not None:
            try:
                pinned = parse_pinned(since_checkpoint)
            except PinnedError as exc:
                raise ClientError(str(exc)) from None
        report: dict[str, Any] = self._json("/api/v1/verify", {"from_checkpoint": from_checkpoint})
        key = None
        if public_key:
            try:
                key = load_public_key(public_key)
            except (CheckpointError, OSError) as exc:
                raise ClientError(f"--public-key: {exc}") from None
            _retrust(report, public_key, key_id(key))
        if pinned is not None:
            self._check_pinned(report, pinned, key)
        return report

    def _check_pinned(self, report: dict[str, Any], pinned: SignedCheckpoint,
                      key: Optional[Ed25519PublicKey]) -> None:
        """The pinned checkpoint against the collector's chain, from its API: the stored
        checkpoints and a consistency proof from the pinned size to the newest one."""
        chain = pinned.checkpoint.origin
        if key is None:  # only the collector's own key: better than none
            with self._open("/api/v1/public-key") as resp:
                key = load_public_key(resp.read())
        chains = [c["chain_id"] for c in report.get("chains", [])]
        head = next((c["head_seq"] for c in report.get("chains", []) if c["chain_id"] == chain), 0)
        stored: list[SignedCheckpoint] = []
        extension = None
        if chain in chains:
            rows = self._json("/api/v1/checkpoints", {"chain": chain, "limit": 10_000})
            for row in rows.get("checkpoints", []):
                try:
                    signed = SignedCheckpoint.parse(row["text"])
                    verify_signature(signed, key)
                except (CheckpointError, KeyError, TypeError):
                    continue  # the collector's verify reports it
                stored.append(signed)
            newest = newest_extension(pinned, stored)
            if newest is not None:
                proof = None
                size1, size2 = pinned.checkpoint.size, newest.checkpoint.size
                if 0 < size1 < size2:
                    try:
                        got = self._json("/api/v1/proofs/consistency",
                                         {"size1": size1, "size2": size2, "chain": chain})
                        proof = [bytes.fromhex(h) for h in got["proof"]]
                    except (ClientError, KeyError, TypeError, ValueError):
                        proof = None
                extension = Extension(newest, proof)
        found = check_pinned(pinned, chains=chains, public_key=key, head_seq=head,
                             stored=stored, extension=extension)
        report["findings"] += [f.as_dict() for f in found]
        if found:
            report["ok"] = False
        root = report.setdefault("trust_root", {})
        root["pinned"] = describe(pinned)

    def prove(self, record_id: str) -> str:
        path = "/api/v1/records/" + urllib.parse.quote(record_id, safe="") + "/proof"
        with self._open(path) as resp:
            return resp.read().decode("utf-8")

    def summary(self) -> dict[str, Any]:
        summary: dict[str, Any] = self._json("/api/v1/summary")
        return summary

    def erase(self, *, task: Optional[str] = None, record_id: Optional[str] = None,
              reason: Optional[str] = None, actor: Optional[str] = None) -> dict[str, Any]:
        """POST /api/v1/erase. Raises NothingToErase (HTTP 404 or 409), else ClientError."""
        body = json.dumps({"task": task, "record_id": record_id, "reason": reason,
                           "actor": actor}).encode("utf-8")
        req = urllib.request.Request(f"{self.url}/api/v1/erase", data=body, method="POST",
                                     headers={"Content-Type": "application/json",
                                              **self._headers()})
        try:
            with urllib.request.urlopen(req, timeout=self.timeout,  # noqa: S310
                                        context=self.context) as resp:
                result: dict[str, Any] = json.load(resp)
                return result
        except urllib.error.HTTPError as err:
            try:
                detail = json.loads(err.read()).get("detail")
            except (ValueError, AttributeError):
                detail = None
            kind = NothingToErase if err.code in (404, 409) else ClientError
            raise kind(f"{detail or err.reason} (HTTP {err.code} from {self.url})") from None
        except (urllib.error.URLError, OSError) as err:
            reason_ = getattr(err, "reason", err)
            raise ClientError(f"cannot reach the collector at {self.url}: {reason_}") from None


def _retrust(report: dict[str, Any], path: str, kid: str) -> None:
    """The trust root of a collector's report, with the key the caller holds in place
    of the collector's own."""
    server = report.get("trust_root") or {}
    anchor = server.get("anchor") or {}
    root = trust_root(data_dir=server.get("data_dir"), key_path=path, key_id=kid,
                      key_source=FROM_FLAG_KEY, anchor=anchor.get("location"),
                      anchor_describe=anchor.get("describe"), anchor_source=anchor.get("source"),
                      anchor_inside=anchor.get("inside_data_dir"))
    old = set(server.get("warnings") or [])
    report["warnings"] = [w for w in report.get("warnings", []) if w not in old] + root["warnings"]
    report["trust_root"] = root
