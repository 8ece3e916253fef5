"""API keys for ingest: per service, revocable, stored only as hashes.

A key looks like ``ait_<id>_<secret>``; the keys file holds, per id, the
service it may write as, SHA-256 of the secret (the secret is 32 random bytes,
so a fast hash is enough; nothing low-entropy is stored), and whether it was
revoked. The collector rereads the file when it changes, so a revocation takes
effect without a restart. Clients send ``authorization: Bearer <key>`` as gRPC
metadata; KeyInterceptor checks it before a request is read.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import threading
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Optional, Sequence

import grpc

from aitrail.errors import AitrailError
from aitrail.record.event_types import is_collector_service
from aitrail_collector import credentials

PREFIX = "ait_"
log = logging.getLogger("aitrail.collector")


class AuthError(AitrailError):
    """The request's credentials are missing or not valid; the text says which."""


class KeysFileError(AitrailError, ValueError):
    """The keys file cannot be read or changed as asked; the message says why."""


@dataclass(frozen=True)
class ApiKey:
    key_id: str
    service: str
    sha256: str
    created: str
    revoked: bool = False
    # The task ids it may write: records whose task_id starts with one of these;
    # empty: any task. (Keys files written before this field read as empty.)
    task_prefixes: tuple[str, ...] = ()


def load_keys(path: str) -> dict[str, ApiKey]:
    try:
        with open(path) as fh:
            raw = json.load(fh)
    except FileNotFoundError:
        return {}
    except ValueError as exc:
        raise KeysFileError(f"{path}: not a valid keys file: {exc}") from None
    try:
        return {k["key_id"]: ApiKey(**{**k, "task_prefixes": tuple(k.get("task_prefixes", ()))})
                for k in raw.get("keys", [])}
    except (AttributeError, KeyError, TypeError) as exc:
        raise KeysFileError(f"{path}: not a valid keys file: {exc}") from None


def save_keys(path: str, keys: dict[str, ApiKey]) -> None:
    """Atomically, mode 0600 (credentials.write_json); callers hold ``credentials.locked``."""
    credentials.write_json(path, {"keys": [{**k.__dict__, "task_prefixes": list(k.task_prefixes)}
                                           for k in keys.values()]})


def create_key(path: str, service: str, task_prefixes: Sequence[str] = ()) -> str:
    """Adds a key for ``service`` (limited to task ids starting with one of
    ``task_prefixes``, when given); returns the key text (shown once, never stored)."""
    if not service:
        raise KeysFileError("a key needs a service name")
    if is_collector_service(service):
        raise KeysFileError(f"service {service!r} is reserved for the collector's own records")
    prefixes = tuple(task_prefixes)
    if any(not p or len(p) > 256 or not p.isprintable() for p in prefixes):
        raise KeysFileError("a task prefix must be 1 to 256 printable characters")
    key_id, token = credentials.new_token(PREFIX)
    secret = token[len(PREFIX) + len(key_id) + 1:]
    with credentials.locked(path):
        keys = load_keys(path)
        keys[key_id] = ApiKey(key_id, service, credentials.digest(secret),
                              datetime.now(timezone.utc).isoformat(timespec="seconds"),
                              task_prefixes=prefixes)
        save_keys(path, keys)
    return token


def revoke_key(path: str, key_id: str) -> None:
    with credentials.locked(path):
        keys = load_keys(path)
        if key_id not in keys:
            raise KeysFileError(f"no key with id {key_id!r} in {path}")
        k = keys[key_id]
        keys[key_id] = dataclasses.replace(k, revoked=True)
        save_keys(path, keys)


class KeyRing:
    """The collector's view of the keys file, reread whenever it changes."""

    def __init__(self, path: str):
        self.path = path
        self._lock = threading.Lock()
        self._stamp: Optional[tuple] = None
        self._keys = load_keys(path)  # at start-up a bad file is an error, not a warning
        self._refresh()
        if not self._keys:
            raise KeysFileError(f"{path}: no API keys (create one with `aitrail apikey create`)")

    def _refresh(self) -> None:
        stamp = credentials.file_stamp(self.path)
        if stamp != self._stamp:
            with self._lock:
                try:
                    self._keys = load_keys(self.path)
                except KeysFileError as exc:
                    # A half-edited file must not lock everyone out (or let anyone
                    # in): keep the last good keys until it is valid again.
                    log.error("API keys not reloaded, keeping the previous ones: %s", exc)
                self._stamp = stamp

    def service_for(self, metadata) -> str:
        """The service the request's key may write as; raises AuthError."""
        return self.key_for(metadata).service

    def key_for(self, metadata) -> ApiKey:
        """The valid, unrevoked key the request carries; raises AuthError."""
        self._refresh()
        token = ""
        for key, value in metadata or ():
            if key == "authorization" and value.startswith("Bearer "):
                token = value[len("Bearer "):].strip()
        if not token:
            raise AuthError("missing API key (send 'authorization: Bearer ait_...')")
        if not token.startswith(PREFIX) or token.count("_") < 2:
            raise AuthError("malformed API key")
        key_id, _, secret = token[len(PREFIX):].partition("_")
        key = self._keys.get(key_id)
        if key is None or not credentials.matches(key.sha256, secret):
            raise AuthError("unknown API key")
        if key.revoked:
            raise AuthError(f"API key {key_id} has been revoked")
        return key


class KeyInterceptor(grpc.ServerInterceptor):
    """Authenticates every call from its metadata before its request is read.

    grpcio calls interceptors when a call arrives, before the request message is
    received; the engine only reads (and inflates a compressed) message when the
    handler asks for it. A call with a missing, unknown or revoked key is answered
    UNAUTHENTICATED by a handler that never asks, so its body is not decompressed.
    An accepted call's unary handler gets the key (its id, service and task scope) as a
    third argument: ``behavior(request, context, key)``. Any gRPC service can sit behind it
    (the OTLP endpoints, too).
    """

    def __init__(self, keys: KeyRing):
        self.keys = keys

    def intercept_service(self, continuation: Any, details: Any) -> Any:
        handler = continuation(details)
        if handler is None:
            return None  # unknown method: gRPC answers UNIMPLEMENTED
        try:
            key = self.keys.key_for(details.invocation_metadata)
        except AuthError as exc:
            return _refusal(grpc.StatusCode.UNAUTHENTICATED, str(exc))
        behavior = handler.unary_unary
        return grpc.unary_unary_rpc_method_handler(
            lambda request, context: behavior(request, context, key),
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer)


def _refusal(code: grpc.StatusCode, details: str) -> grpc.RpcMethodHandler:
    # A stream handler that ends the call without iterating its requests: nothing
    # is received. The client's unary call cannot tell the difference.
    def refuse(requests: Any, context: grpc.ServicerContext) -> Any:
        context.abort(code, details)
    return grpc.stream_unary_rpc_method_handler(refuse)
