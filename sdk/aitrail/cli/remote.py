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

from aitrail.errors import AitrailError


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
               anchor: Optional[str] = None) -> dict[str, Any]:
        # The collector checks with its own key and anchor; the caller compares the
        # key id with the key it trusts (cli._check_key_id).
        if anchor:
            raise ClientError("--anchor applies to --data-dir; a collector compares with its "
                              "own anchor store")
        report: dict[str, Any] = self._json("/api/v1/verify", {"from_checkpoint": from_checkpoint})
        return report

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
