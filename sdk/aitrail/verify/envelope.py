"""The sealed envelope: its fields, their order, and their canonical bytes.

This module is the one place that says what a sealed record consists of. The
collector builds its ClickHouse table from ``FIELDS``; the verifier recomputes
leaf hashes with ``canonical_bytes``. The encoding is specified, byte for byte,
in docs/canonical-envelope.md so that a verifier in any language can rebuild it.

Encoding, in ``FIELDS`` order after a version tag:

* ``str``  -- unsigned 32-bit big-endian byte length, then the UTF-8 bytes
* ``u64`` / ``time`` -- unsigned 64-bit big-endian integer (times: ns since epoch)
* ``f64?`` -- one byte 0 when absent; else byte 1 and the IEEE 754 binary64
  value, big-endian (NaN and infinities are refused before sealing)
* ``map``  -- u32 entry count, then entries sorted by key bytes, key and value
  each encoded as ``str``

The chain position (``seq``) is not part of the envelope: like an RFC 6962 leaf
index it is a position, bound by the chain hash, not content.
"""

from __future__ import annotations

import math
import struct
from typing import Any, Callable, Mapping, NamedTuple, Sequence

from aitrail.errors import AitrailError

VERSION_TAG = b"aitrail.envelope.v1"


class EncodingError(AitrailError, ValueError):
    """Envelope values that have no canonical encoding (a non-finite confidence, a
    number out of u64 range, a value of the wrong type, a missing field). Before
    sealing that is bad input; in a stored row it means the row was changed."""


class Field(NamedTuple):
    name: str
    kind: str  # str | lstr | u64 | time | f64? | map
    doc: str


FIELDS: tuple[Field, ...] = (
    Field("chain_id", "lstr", "the chain this record was sealed into"),
    Field("record_id", "str", "UUIDv7 made by the SDK; the idempotency key"),
    Field("event_type", "lstr", "model_call, review, escalation, resolution, ..."),
    Field("task_id", "str", "the business task this event belongs to"),
    Field("request_id", "str", "the application's request id"),
    Field("trace_id", "str", "OpenTelemetry trace id, 32 hex digits"),
    Field("span_id", "str", "OpenTelemetry span id, 16 hex digits"),
    Field("parent_span_id", "str", "parent span id"),
    Field("start_time", "time", "when the event started (SDK clock)"),
    Field("end_time", "time", "when the event ended (SDK clock)"),
    Field("received_time", "time", "when the collector accepted it"),
    Field("service", "lstr", "emitting service"),
    Field("service_version", "lstr", "its version"),
    Field("environment", "lstr", "production, staging, ..."),
    Field("host", "lstr", "host name"),
    Field("sdk_version", "lstr", "aitrail SDK version"),
    Field("provider", "lstr", "model provider"),
    Field("model", "lstr", "model name"),
    Field("model_version", "lstr", "model version"),
    Field("prompt_template_id", "lstr", "prompt template id"),
    Field("prompt_version", "lstr", "prompt template version"),
    Field("parameters", "map", "model request parameters"),
    Field("confidence", "f64?", "model confidence, when known"),
    Field("input_tokens", "u64", "token usage: input"),
    Field("output_tokens", "u64", "token usage: output"),
    Field("streamed", "u64", "1 when the output was streamed"),
    Field("error_type", "lstr", "exception type of a failed call"),
    Field("error_message", "str", "its message (redacted)"),
    Field("reviewer_id", "str", "reviewer"),
    Field("decision", "lstr", "approve, reject, modify or none"),
    Field("time_spent_ms", "u64", "time the reviewer spent"),
    Field("reason_code", "lstr", "structured rationale: reason code"),
    Field("policy_ref", "lstr", "structured rationale: policy reference"),
    Field("escalation_from", "str", "escalated from"),
    Field("escalation_to", "str", "escalated to"),
    Field("escalation_reason", "str", "why (redacted)"),
    Field("resolution_outcome", "lstr", "outcome of the task"),
    Field("final_decision", "str", "final decision"),
    Field("actor", "str", "data access: who"),
    Field("resource", "str", "data access: what"),
    Field("purpose", "str", "data access: why"),
    Field("attributes", "map", "everything else"),
    Field("commitments", "map", "payload name -> hex SHA-256(salt || content)"),
)

FIELD_NAMES: tuple[str, ...] = tuple(f.name for f in FIELDS)

# Content held apart from the envelope so that it can be erased.
PAYLOAD_NAMES: tuple[str, ...] = (
    "input", "output", "logprobs", "modified_output", "diff", "rationale",
)

_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")
_F64 = struct.Struct(">d")


def _put_str(out: list[bytes], value: str) -> None:
    data = value.encode("utf-8")
    out.append(_U32.pack(len(data)))
    out.append(data)


def _put(out: list[bytes], kind: str, value: Any) -> None:
    if kind in ("str", "lstr"):
        _put_str(out, value)
    elif kind in ("u64", "time"):
        out.append(_U64.pack(value))
    elif kind == "f64?":
        if value is None:
            out.append(b"\x00")
        else:
            if not math.isfinite(value):
                raise EncodingError("confidence must be a finite number")
            out.append(b"\x01" + _F64.pack(value))
    elif kind == "map":
        items = sorted(value.items(), key=lambda kv: kv[0].encode("utf-8"))
        out.append(_U32.pack(len(items)))
        for k, v in items:
            _put_str(out, k)
            _put_str(out, v)
    else:  # pragma: no cover - FIELDS is fixed
        raise AssertionError(kind)


def canonical_bytes_reference(envelope: Mapping[str, Any]) -> bytes:
    """The encoding written the plain way, field by field: the specification
    ``canonical_bytes`` is tested against."""
    out: list[bytes] = []
    _put_str(out, VERSION_TAG.decode())
    for f in FIELDS:
        _put(out, f.kind, envelope[f.name])
    return b"".join(out)


def _map_bytes(value: Mapping[str, str]) -> bytes:
    out: list[bytes] = []
    _put(out, "map", value)
    return b"".join(out)


def _f64_bytes(value: Any) -> bytes:
    out: list[bytes] = []
    _put(out, "f64?", value)
    return b"".join(out)


def _compile_encoder() -> Callable[[Sequence[Any]], bytes]:
    # Sealing and verification encode every record, so the encoder is one
    # straight-line function generated from FIELDS: no per-field dispatch.
    # Empty strings and maps, the common case, cost a constant.
    tag = VERSION_TAG
    lines = ["def encode(v):", "    out = [TAG]", "    a = out.append"]
    for i, f in enumerate(FIELDS):
        if f.kind in ("str", "lstr"):
            lines += [f"    x = v[{i}]",
                      "    if x:",
                      "        b = x.encode()",
                      "        a(U32(len(b))); a(b)",
                      "    else:",
                      "        a(ZERO32)"]
        elif f.kind in ("u64", "time"):
            lines.append(f"    a(U64(v[{i}]))")
        elif f.kind == "f64?":
            lines.append(f"    a(b'\\x00' if v[{i}] is None else F64(v[{i}]))")
        else:
            lines.append(f"    a(MAP(v[{i}]) if v[{i}] else ZERO32)")
    lines.append("    return b''.join(out)")
    scope: dict[str, Any] = {"TAG": _U32.pack(len(tag)) + tag, "U32": _U32.pack, "U64": _U64.pack,
             "F64": _f64_bytes, "MAP": _map_bytes, "ZERO32": b"\x00\x00\x00\x00"}
    exec("\n".join(lines), scope)  # noqa: S102 - code built from FIELDS above only
    encode: Callable[[Sequence[Any]], bytes] = scope["encode"]
    return encode


encode_values = _compile_encoder()
encode_values.__doc__ = "Canonical bytes of envelope values given in FIELDS order."


def canonical_bytes(envelope: Mapping[str, Any]) -> bytes:
    """The envelope's canonical encoding (the input of its leaf hash). Raises
    EncodingError (a ValueError) when a value has none."""
    try:
        encoded: bytes = encode_values([envelope[name] for name in FIELD_NAMES])
        return encoded
    except Exception:  # noqa: BLE001 - located and explained field by field below
        raise _encoding_error(envelope) from None


def _encoding_error(envelope: Mapping[str, Any]) -> EncodingError:
    # The fast encoder failed somewhere: name the first field the reference refuses.
    for f in FIELDS:
        if f.name not in envelope:
            return EncodingError(f"{f.name}: missing")
        try:
            _put([], f.kind, envelope[f.name])
        except (ValueError, TypeError, AttributeError, OverflowError, struct.error) as exc:
            if isinstance(exc, EncodingError):
                return exc
            return EncodingError(f"{f.name}: {exc} ({f.kind} field holds "
                                 f"{type(envelope[f.name]).__name__} "
                                 f"{_short(envelope[f.name])})")
    return EncodingError("values without a canonical encoding")  # pragma: no cover


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def empty_envelope() -> dict[str, Any]:
    """An envelope with every field at its zero value."""
    zero = {"str": "", "lstr": "", "u64": 0, "time": 0, "f64?": None}
    return {f.name: ({} if f.kind == "map" else zero[f.kind]) for f in FIELDS}
