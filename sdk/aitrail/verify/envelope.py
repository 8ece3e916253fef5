"""The sealed envelope: its fields, their order, and their canonical bytes.

This module is the one place that says what a sealed record consists of. The
collector builds its ClickHouse table from ``STORED_FIELDS``; the verifier
recomputes leaf hashes with ``canonical_bytes``. The encoding is specified,
byte for byte, in docs/canonical-envelope.md so that a verifier in any language
can rebuild it.

Three encoding versions exist. Records are sealed under the current one, v3
(``FIELDS``); records sealed under v1 (``FIELDS_V1``) and v2 (``FIELDS_V2``) keep
verifying. v2 holds no free text: the escalation reason, the final decision, the
error message and an erasure's reason are payloads (erasable), and it seals who
delivered the record (``principal_kind``, ``principal_id``). v3 adds the model
response's id (``response_id``, after the model call's fields) and the evaluation
event type's ``evaluation_name``, ``score_value`` and ``score_label`` (after the
data access fields); an evaluation's explanation is a payload. A stored row, a
proof bundle and an envelope dict say their version in ``envelope_version``
(absent: 1).

Encoding, in the version's field order after its version tag:

* ``str``  -- unsigned 32-bit big-endian byte length, then the UTF-8 bytes
* ``u64`` / ``time`` -- unsigned 64-bit big-endian integer (times: ns since epoch)
* ``f64?`` -- one byte 0 when absent; else byte 1 and the IEEE 754 binary64
  value, big-endian (NaN and infinities are refused before sealing)
* ``map``  -- u32 entry count, then entries sorted by key bytes, key and value
  each encoded as ``str``. A map holds each key once: a stored map with a key
  twice (written in after sealing) has no encoding

A map value is a mapping, or (a stored row's, as the store holds it) a sequence of
(key, value) entries: a driver reading a stored map into a dict keeps one entry of a
repeated key, so the verifier reads the entries, and only they show the repeat.

The chain position (``seq``) is not part of the envelope: like an RFC 6962 leaf
index it is a position, bound by the chain hash, not content.

Two encoders implement this, generated from the same field tables: ``canonical_bytes``
for an envelope (a dict of str values: the sealer, proof bundles) and ``ROW_ENCODERS``
for a row as the store gives it to the verifier (``ROW_COLUMNS``: text as the stored
UTF-8 bytes). Both are held against ``canonical_bytes_reference``, the layout written
out field by field, and against the committed vectors.
"""

from __future__ import annotations

import math
import struct
from operator import itemgetter
from typing import Any, Callable, Mapping, NamedTuple, Sequence

from aitrail.errors import AitrailError


class EncodingError(AitrailError, ValueError):
    """Envelope values that have no canonical encoding (a non-finite confidence, a
    number out of u64 range, a value of the wrong type, a missing field). Before
    sealing that is bad input; in a stored row it means the row was changed."""


class Field(NamedTuple):
    name: str
    kind: str  # str | lstr | u64 | time | f64? | map
    doc: str


FIELDS_V1: tuple[Field, ...] = (
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


FIELD_NAMES_V1: tuple[str, ...] = tuple(f.name for f in FIELDS_V1)

# v2: free text leaves the envelope (it is a payload now, see PAYLOAD_NAMES), and
# the credential that delivered the record is sealed with it.
_MOVED_TO_PAYLOADS = ("error_message", "escalation_reason", "final_decision")
_PRINCIPAL = (
    Field("principal_kind", "lstr", "what delivered it: apikey, mtls, apikey+mtls, "
          "unauthenticated or collector"),
    Field("principal_id", "str", "which: the API key id and/or the client certificate's "
          "subject; empty when unauthenticated"),
)


def _v2_fields() -> tuple[Field, ...]:
    out: list[Field] = []
    for f in FIELDS_V1:
        if f.name in _MOVED_TO_PAYLOADS:
            continue
        out.append(f)
        if f.name == "sdk_version":
            out.extend(_PRINCIPAL)
    return tuple(out)


FIELDS_V2: tuple[Field, ...] = _v2_fields()

# v3: the model response's id, and the evaluation event type. Each group goes after
# the field named (v2's and v1's order otherwise unchanged).
_V3_AFTER: Mapping[str, tuple[Field, ...]] = {
    "streamed": (
        Field("response_id", "str", "the provider's id of the model response (a "
              "model call's own, or the one an evaluation judged)"),),
    "purpose": (
        Field("evaluation_name", "lstr", "evaluation: what was evaluated for"),
        Field("score_value", "f64?", "evaluation: the score, when numeric"),
        Field("score_label", "lstr", "evaluation: the verdict in words")),
}


def _with_v3(fields: tuple[Field, ...]) -> tuple[Field, ...]:
    return tuple(g for f in fields for g in (f,) + _V3_AFTER.get(f.name, ()))


FIELDS_V3: tuple[Field, ...] = _with_v3(FIELDS_V2)
CURRENT_VERSION = 3
FIELDS: tuple[Field, ...] = FIELDS_V3      # what is sealed now
FIELD_NAMES: tuple[str, ...] = tuple(f.name for f in FIELDS)

VERSION_TAGS: Mapping[int, bytes] = {1: b"aitrail.envelope.v1", 2: b"aitrail.envelope.v2",
                                     3: b"aitrail.envelope.v3"}
VERSION_FIELDS: Mapping[int, tuple[Field, ...]] = {1: FIELDS_V1, 2: FIELDS_V2, 3: FIELDS_V3}

# Every column a stored row has, whatever its version: v1's, with v2's principal
# after sdk_version and v3's columns where v3 puts them. A row's fields of another
# version hold their zero value.
STORED_FIELDS: tuple[Field, ...] = _with_v3(tuple(
    f for v1 in FIELDS_V1 for f in ((v1,) + (_PRINCIPAL if v1.name == "sdk_version" else ()))))
STORED_FIELD_NAMES: tuple[str, ...] = tuple(f.name for f in STORED_FIELDS)
# The columns v3 added, with the column each follows in a stored row (for the
# migration of a store made before v3: store/schema.py).
V3_COLUMNS: tuple[tuple[Field, str], ...] = tuple(
    (g, STORED_FIELD_NAMES[STORED_FIELD_NAMES.index(g.name) - 1])
    for group in _V3_AFTER.values() for g in group)

# Content held apart from the envelope so that it can be erased; escalation_reason,
# final_decision, error_message and erase_reason are payloads from v2 on (v1 sealed
# the first three of them as envelope fields), explanation from v3 on.
PAYLOAD_NAMES: tuple[str, ...] = (
    "input", "output", "logprobs", "modified_output", "diff", "rationale",
    "escalation_reason", "final_decision", "explanation", "error_message", "erase_reason",
)
# Payloads that were envelope fields under v1: a v1 row holds them in its columns.
V1_ENVELOPE_TEXT: tuple[str, ...] = _MOVED_TO_PAYLOADS

_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")
_F64 = struct.Struct(">d")


def _put_str(out: list[bytes], value: str) -> None:
    data = value.encode("utf-8")
    out.append(_U32.pack(len(data)))
    out.append(data)


def _put(out: list[bytes], kind: str, value: Any, name: str = "confidence") -> None:
    if kind in ("str", "lstr"):
        _put_str(out, value)
    elif kind in ("u64", "time"):
        out.append(_U64.pack(value))
    elif kind == "f64?":
        if value is None:
            out.append(b"\x00")
        else:
            if not math.isfinite(value):
                raise EncodingError(f"{name} must be a finite number")
            out.append(b"\x01" + _F64.pack(value))
    elif kind == "map":
        items = sorted(map_entries(value, name), key=lambda kv: kv[0].encode("utf-8"))
        out.append(_U32.pack(len(items)))
        for k, v in items:
            _put_str(out, k)
            _put_str(out, v)
    else:  # pragma: no cover - FIELDS is fixed
        raise AssertionError(kind)


def map_entries(value: Any, name: str = "map") -> list[tuple[Any, Any]]:
    """The (key, value) entries of a map value: a mapping's items, or a stored map's
    entries as the store holds them. Raises EncodingError when a key is held more than
    once: the sealer's maps come from protobuf maps, whose keys are unique, so such an
    entry was written in after sealing, and a reader of that key by SQL
    (``m['key']``) gets the first entry, a reader into a dict the last."""
    if isinstance(value, Mapping):
        return list(value.items())
    entries = [(k, v) for k, v in value]
    if len({k for k, _ in entries}) != len(entries):
        counts: dict[Any, int] = {}
        for k, _ in entries:
            counts[k] = counts.get(k, 0) + 1
        twice = ", ".join(f"the key {_text(k)!r} {n} times"
                          for k, n in counts.items() if n > 1)
        raise EncodingError(f"{name} holds {twice}: a map holds each key once, so an entry "
                            "was written in after sealing; SQL reads the first entry of a "
                            "key, a dict the last")
    return entries


def _text(key: Any) -> Any:
    # A stored row's keys are its UTF-8 bytes; a finding names them as text.
    return key.decode("utf-8", "replace") if isinstance(key, bytes) else key


def version_of(envelope: Mapping[str, Any]) -> int:
    """The encoding version an envelope says it was sealed under (absent: 1)."""
    version = envelope.get("envelope_version", 1)
    if version not in VERSION_FIELDS:
        raise EncodingError(f"envelope_version {version!r}: expected one of "
                            f"{', '.join(map(str, VERSION_FIELDS))}")
    return int(version)


def canonical_bytes_reference(envelope: Mapping[str, Any]) -> bytes:
    """The encoding written the plain way, field by field: the specification
    ``canonical_bytes`` is tested against."""
    version = version_of(envelope)
    out: list[bytes] = []
    _put_str(out, VERSION_TAGS[version].decode())
    for f in VERSION_FIELDS[version]:
        _put(out, f.kind, envelope[f.name], f.name)
    return b"".join(out)


class _Prefixes(dict[int, bytes]):
    """Byte length -> its u32 big-endian prefix, packed once per length seen (short
    lengths only: a dict lookup is cheaper than struct.pack, and they repeat)."""

    def __missing__(self, n: int) -> bytes:
        prefix = _U32.pack(n)
        if n < 65_536:
            self[n] = prefix
        return prefix


_PREFIX = _Prefixes()


class _Framed(dict[Any, bytes]):
    """A text value -> its ``str`` encoding (u32 length, then the UTF-8 bytes), made
    once per value. The encoders use it for the ``lstr`` fields: their values (service,
    model, event type, ...) repeat from record to record. It keeps at most ``LIMIT``
    values of at most ``LONGEST`` bytes, so a field whose values do not repeat, or are
    long, costs no memory, only the lookup.
    ``text``: keys are str (envelope values); else the UTF-8 bytes (stored rows)."""

    LIMIT, LONGEST = 4096, 256

    def __init__(self, text: bool):
        super().__init__()
        self.text = text

    def __missing__(self, value: Any) -> bytes:
        # A value of another type fails here (bytes has no encode, str does not add to
        # bytes): the encoder's caller then names the field.
        data: bytes = value.encode("utf-8") if self.text else value
        framed = _PREFIX[len(data)] + data
        if len(data) <= self.LONGEST and len(self) < self.LIMIT:
            self[value] = framed
        return framed


def _map_bytes(value: Any) -> bytes:
    # Keys are unique (map_entries refuses a repeat), so sorting the encoded (key,
    # value) pairs sorts by key bytes. A dict (the sealer's) needs no check.
    pairs = value.items() if type(value) is dict else map_entries(value)
    items = sorted((k.encode("utf-8"), v.encode("utf-8")) for k, v in pairs)
    out = [_U32.pack(len(items))]
    for k, v in items:
        out += (_PREFIX[len(k)], k, _PREFIX[len(v)], v)
    return b"".join(out)


def _row_map_bytes(value: Sequence[tuple[bytes, bytes]]) -> bytes:
    # A stored map's entries as stored, as UTF-8 bytes, sorted by key bytes by the
    # store (the collector's STORED_ROW_SELECT: mapSort in the engine). Not sorted
    # again: entries out of order give other bytes, so they can make a sealed row fail,
    # never a changed one pass. The count is of every entry, so a key written in a
    # second time (which a dict would hide) changes the bytes: the row then fails its
    # leaf hash, and check_rows names the key (map_entries). No check of the keys
    # here: a clean row costs nothing more.
    out = [_U32.pack(len(value))]
    for k, v in value:
        out += (_PREFIX[len(k)], k, _PREFIX[len(v)], v)
    return b"".join(out)


def _f64_bytes(value: Any) -> bytes:
    # The encoders test for None themselves (the common case, without this call).
    if not math.isfinite(value):
        raise EncodingError("a finite number is required")  # named by _encoding_error
    return b"\x01" + _F64.pack(value)


# A stored row as the store hands it to the verifier (the collector's ENVELOPE_SELECT):
# its position and version, one value per STORED_FIELDS column, then its hash columns.
# ``str``/``lstr`` values are the stored UTF-8 bytes, times are ns, maps are lists of
# (key, value) entries of bytes sorted by key, every entry as stored (not dicts, which
# would keep one entry of a key written in twice); so the verifier hashes exactly what
# is stored.
ROW_COLUMNS: tuple[str, ...] = (("seq", "envelope_version") + STORED_FIELD_NAMES
                                + ("prev_hash", "leaf_hash", "chain_hash"))
ROW_SEQ, ROW_VERSION, ROW_PREV, ROW_LEAF, ROW_CHAIN = (
    ROW_COLUMNS.index(c) for c in ("seq", "envelope_version", "prev_hash", "leaf_hash",
                                   "chain_hash"))
_ROW_POSITION: Mapping[str, int] = {name: ROW_COLUMNS.index(name) for name in STORED_FIELD_NAMES}


def _compile_encoder(version: int, row: bool = False) -> Callable[[Sequence[Any]], bytes]:
    # Sealing and verification encode every record, so the encoder is one
    # straight-line function generated from the version's fields: no per-field
    # dispatch, and one join over one tuple. Its input is the version's values in
    # field order (text as str), or with ``row`` a stored row (ROW_COLUMNS: text as
    # the stored bytes, so nothing is encoded again). For FIELDS_V2 it reads:
    #     s1 = v[1].encode()                        # record_id, a str field
    #     return b''.join((TAG, L[v[0]],            # chain_id, an lstr field (_Framed)
    #                      P[len(s1)], s1, ...,
    #                      U64x3(v[8], v[9], v[10]),  # consecutive u64/time: one pack
    #                      ..., MAP(v[23]) if v[23] else ZERO32,
    #                      NONE if v[24] is None else F64(v[24]), ...))
    # A value of the wrong type raises here; canonical_bytes then names the field.
    tag = VERSION_TAGS[version]
    scope: dict[str, Any] = {"TAG": _U32.pack(len(tag)) + tag, "P": _PREFIX,
                             "L": _Framed(text=not row), "F64": _f64_bytes,
                             "MAP": _row_map_bytes if row else _map_bytes,
                             "ZERO32": b"\x00" * 4, "NONE": b"\x00"}
    lines, parts = ["def encode(v):"], ["TAG"]
    run: list[str] = []  # the pending u64/time values, packed together

    def pack_run() -> None:
        if run:
            name = f"U64x{len(run)}"
            scope[name] = struct.Struct(">" + "Q" * len(run)).pack
            parts.append(f"{name}({', '.join(run)})")
            run.clear()

    for i, f in enumerate(VERSION_FIELDS[version]):
        v = f"v[{_ROW_POSITION[f.name] if row else i}]"
        if f.kind in ("u64", "time"):
            run.append(v)
            continue
        pack_run()
        if f.kind == "lstr":
            parts.append(f"L[{v}]")
        elif f.kind == "str" and row:
            parts += [f"P[len({v})]", v]
        elif f.kind == "str":
            lines.append(f"    s{i} = {v}.encode()")
            parts += [f"P[len(s{i})]", f"s{i}"]
        elif f.kind == "f64?":
            parts.append(f"NONE if {v} is None else F64({v})")
        else:
            parts.append(f"MAP({v}) if {v} else ZERO32")
    pack_run()
    lines.append(f"    return b''.join(({', '.join(parts)}))")
    exec("\n".join(lines), scope)  # noqa: S102 - code built from FIELDS above only
    encode: Callable[[Sequence[Any]], bytes] = scope["encode"]
    return encode


ENCODERS: Mapping[int, Callable[[Sequence[Any]], bytes]] = {
    v: _compile_encoder(v) for v in VERSION_FIELDS}
# The canonical bytes of a stored row (ROW_COLUMNS) sealed under each version. A value
# with no encoding raises (ValueError, TypeError, struct.error, ...): such a row was
# changed after sealing, and the reference's canonical_bytes names the field.
ROW_ENCODERS: Mapping[int, Callable[[Sequence[Any]], bytes]] = {
    v: _compile_encoder(v, row=True) for v in VERSION_FIELDS}
_NAMES: Mapping[int, tuple[str, ...]] = {
    v: tuple(f.name for f in fs) for v, fs in VERSION_FIELDS.items()}
_MAP_NAMES: Mapping[int, tuple[str, ...]] = {
    v: tuple(f.name for f in fs if f.kind == "map") for v, fs in VERSION_FIELDS.items()}
# The version's values of an envelope, in field order, in one call (KeyError: missing).
_VALUES: Mapping[int, Callable[[Mapping[str, Any]], Sequence[Any]]] = {
    v: itemgetter(*names) for v, names in _NAMES.items()}
encode_values = ENCODERS[CURRENT_VERSION]
encode_values.__doc__ = "Canonical bytes of current-version envelope values, in FIELDS order."


def canonical_bytes(envelope: Mapping[str, Any]) -> bytes:
    """The envelope's canonical encoding (the input of its leaf hash), under the
    version it names. Raises EncodingError (a ValueError) when a value has none."""
    version = version_of(envelope)
    try:
        encoded: bytes = ENCODERS[version](_VALUES[version](envelope))
        return encoded
    except Exception:  # noqa: BLE001 - located and explained field by field below
        raise _encoding_error(envelope, version) from None


def _encoding_error(envelope: Mapping[str, Any], version: int) -> EncodingError:
    # The fast encoder failed somewhere: name the first field the reference refuses.
    for f in VERSION_FIELDS[version]:
        if f.name not in envelope:
            return EncodingError(f"{f.name}: missing")
        try:
            _put([], f.kind, envelope[f.name], f.name)
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


_ZERO = {"str": "", "lstr": "", "u64": 0, "time": 0, "f64?": None}


def zero_value(f: Field) -> Any:
    return {} if f.kind == "map" else _ZERO[f.kind]


def empty_envelope(version: int = CURRENT_VERSION) -> dict[str, Any]:
    """An envelope of ``version`` with every field at its zero value."""
    env = {f.name: zero_value(f) for f in VERSION_FIELDS[version]}
    if version != 1:
        env["envelope_version"] = version
    return env


_OFF_VERSION: Mapping[int, tuple[Field, ...]] = {
    v: tuple(f for f in STORED_FIELDS if f.name not in {g.name for g in fs})
    for v, fs in VERSION_FIELDS.items()}
# (name, zero value) of each of them, computed once: every stored row is checked.
_OFF_VERSION_ZEROS: Mapping[int, tuple[tuple[str, Any], ...]] = {
    v: tuple((f.name, zero_value(f)) for f in fs) for v, fs in _OFF_VERSION.items()}


def _holds_value(value: Any, zero: Any) -> bool:
    # A map is empty as a dict or as a stored row's list of entries.
    return bool(value) if isinstance(zero, dict) else value != zero


def stray_fields(envelope: Mapping[str, Any]) -> list[str]:
    """Stored columns its version does not seal that hold a value: a stored row has
    every column of every version, and the sealer leaves the other version's at their
    zero value, so a value there was written afterwards."""
    version = version_of(envelope)
    return [name for name, zero in _OFF_VERSION_ZEROS[version]
            if name in envelope and _holds_value(envelope[name], zero)]


def _row_values(positions: Sequence[int]) -> Callable[[Sequence[Any]], tuple[Any, ...]]:
    # itemgetter gives a tuple only for two or more positions.
    if len(positions) > 1:
        return itemgetter(*positions)
    return lambda row: tuple(row[p] for p in positions)


# Per version: the stored row's values of the columns it does not seal, and those
# columns' zero values in a stored row (text as bytes).
_ROW_OFF_VERSION: Mapping[int, tuple[Callable[[Sequence[Any]], tuple[Any, ...]],
                                     tuple[Any, ...]]] = {
    v: (_row_values([_ROW_POSITION[f.name] for f in fs]),
        tuple(b"" if f.kind in ("str", "lstr") else [] if f.kind == "map" else zero_value(f)
              for f in fs))
    for v, fs in _OFF_VERSION.items()}


def row_has_stray(row: Sequence[Any]) -> bool:
    """``stray_fields`` for a stored row (ROW_COLUMNS): whether a column its version
    does not seal holds a value. KeyError: a version with no encoding."""
    values, zeros = _ROW_OFF_VERSION[row[ROW_VERSION]]
    return values(row) != zeros


def as_row(envelope: Mapping[str, Any], seq: int = 1, prev_hash: bytes = b"",
           leaf_hash: bytes = b"", chain_hash: bytes = b"") -> tuple[Any, ...]:
    """An envelope (of any version, or a stored row's every column) in the form the
    store gives the verifier (ROW_COLUMNS): text as UTF-8 bytes, maps as sorted lists of
    (key, value) entries of bytes, an absent column at its zero value. For checking the
    row encoders against the envelope encoders and the committed vectors."""
    values: list[Any] = []
    for f in STORED_FIELDS:
        value = envelope.get(f.name, zero_value(f))
        if f.kind in ("str", "lstr"):
            value = value.encode("utf-8")
        elif f.kind == "map":
            value = sorted((k.encode("utf-8"), v.encode("utf-8"))
                           for k, v in map_entries(value, f.name))
        values.append(value)
    return (seq, envelope.get("envelope_version", 1), *values, prev_hash, leaf_hash, chain_hash)


def canonical_envelope(envelope: Mapping[str, Any]) -> dict[str, Any]:
    """Exactly the fields its version seals, plus envelope_version from v2 on: what a
    proof bundle carries of a stored row (which has every STORED_FIELDS column), each
    map as a dict. Raises EncodingError when a stored map holds a key twice: a dict
    cannot show both entries, so no bundle may be made of such a row."""
    version = version_of(envelope)
    out = {name: envelope[name] for name in _NAMES[version]}
    for name in _MAP_NAMES[version]:
        if not isinstance(out[name], Mapping):
            out[name] = dict(map_entries(out[name], name))
    if version != 1:
        out["envelope_version"] = version
    return out
