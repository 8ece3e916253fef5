"""How the CLI prints what it read: tables, a task's timeline as a person reads it,
and verification reports.

Ledger text is hostile: a record's fields, an erasure reason, even a record id
forged into a tampered store can hold terminal escape sequences (clear the line,
move the cursor, retitle the window) or Unicode bidi controls that reorder what
is shown. Every ledger-derived text the CLI prints in text mode goes through
``safe``, which shows such characters visibly escaped (``\x1b``, ``\u202e``).
A line break inside a field is escaped (``\n``) in one-line output (tables,
headlines, verify findings); in a timeline's multi-line fields it starts an
indented continuation line, so no ledger text ever starts a line at column 0.
The verdict of ``aitrail verify`` is printed last and built from counts and
fixed words only. JSON output (``--format json``) escapes controls itself.
"""

from __future__ import annotations

import sys
import textwrap
import unicodedata
from typing import Any, Callable, Optional, Sequence, TextIO

from aitrail.record import event_types
from aitrail.verify.trust_root import verdict_ok

# Characters shown escaped: controls (C0, DEL, C1), format characters (bidi
# embeddings, overrides and isolates, zero-width characters, tags, ...), the
# Unicode line and paragraph separators, and lone surrogates.
_UNSAFE = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs"})
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escaped(c: str) -> str:
    n = ord(c)
    if c in _NAMED:
        return _NAMED[c]
    if n < 0x100:
        return f"\\x{n:02x}"
    return f"\\u{n:04x}" if n < 0x10000 else f"\\U{n:08x}"


def safe(text: Any) -> str:
    """``text`` (made a string) with every character that a terminal would act on,
    or that reorders or hides text, shown escaped; one line."""
    s = str(text)
    if s.isprintable():  # the common case: nothing to escape
        return s
    return "".join(_escaped(c) if unicodedata.category(c) in _UNSAFE else c for c in s)


TABLE_COLUMNS = (("time", 26), ("event_type", 11), ("task_id", 14), ("who", 12),
                 ("model", 24), ("decision", 8), ("confidence", 10), ("record_id", 36))


def _who(rec: dict[str, Any]) -> str:
    return (rec.get("reviewer_id") or rec.get("escalation_from") and
            f"{rec['escalation_from']}>{rec['escalation_to']}" or rec.get("actor") or "")


def _model(rec: dict[str, Any]) -> str:
    model = rec.get("model") or ""
    if model and rec.get("prompt_version"):
        model += f" @{rec['prompt_version']}"
    return model


def _cell(rec: dict[str, Any], col: str) -> str:
    if col == "who":
        return _who(rec)
    if col == "model":
        return _model(rec)
    if col == "decision":
        # An evaluation's verdict in words (its name and score: aitrail timeline).
        return rec.get("decision") or rec.get("resolution_outcome") or rec.get("score_label") or ""
    value = rec.get(col)
    if col == "confidence":
        return "" if value is None else f"{value:.2f}"
    return "" if value is None else str(value)


def print_table(records: Sequence[dict[str, Any]], out: TextIO = sys.stdout) -> None:
    def fit(text: str, width: int) -> str:
        return text if len(text) <= width else text[: width - 1] + "…"
    out.write("  ".join(name.upper().ljust(w) for name, w in TABLE_COLUMNS).rstrip() + "\n")
    for rec in records:
        out.write("  ".join(fit(safe(_cell(rec, name)), w).ljust(w)
                            for name, w in TABLE_COLUMNS).rstrip() + "\n")


def _indent(label: str, text: str, width: int = 100) -> list[str]:
    """``text`` under ``label``, wrapped; each of its lines an indented continuation
    (only LF and CRLF break a line: any other control is shown escaped)."""
    lines = []
    for i, para in enumerate(text.replace("\r\n", "\n").split("\n")):
        wrapped = textwrap.wrap(safe(para), width - 14) or [""]
        for j, line in enumerate(wrapped):
            lead = f"    {label:<9} " if i == 0 and j == 0 else " " * 14
            lines.append(lead + line)
    return lines


def _model_call_head(ev: dict[str, Any]) -> str:
    head = f"  {ev.get('provider') or ''} {_model(ev)}".rstrip()
    if ev.get("model_version"):
        head += f" (version {ev['model_version']})"
    if ev.get("confidence") is not None:
        head += f"  confidence {ev['confidence']:.2f}"
    return head


def _review_head(ev: dict[str, Any]) -> str:
    return (f"  {ev['reviewer_id']} decided {ev['decision'].upper()}"
            f" after {ev['time_spent_ms'] / 1000:.1f} s")


def _evaluation_head(ev: dict[str, Any]) -> str:
    head = f"  {ev['evaluation_name']}"
    verdict = " ".join(x for x in (
        ev.get("score_label") or "",
        f"({ev['score_value']:g})" if ev.get("score_value") is not None else "") if x)
    return f"{head}: {verdict}" if verdict else head


def _review_reason(ev: dict[str, Any]) -> list[str]:
    why = ", ".join(x for x in (ev.get("reason_code"), ev.get("policy_ref") and
                                f"policy {ev['policy_ref']}") if x)
    return _indent("reason:", why) if why else []


def _error(ev: dict[str, Any]) -> list[str]:
    if not ev.get("error_type"):
        return []
    return _indent("error:", f"{ev['error_type']}: {ev.get('error_message', '')}")


# Headlines and lines the table of event types cannot say as a template.
_HEADS: dict[str, Callable[[dict[str, Any]], str]] = {"model_call": _model_call_head,
                                            "review": _review_head,
                                            "evaluation": _evaluation_head}
_BEFORE: dict[str, Callable[[dict[str, Any]], list[str]]] = {"review": _review_reason}
_AFTER: dict[str, Callable[[dict[str, Any]], list[str]]] = {"model_call": _error}


def describe_event(ev: dict[str, Any]) -> list[str]:
    """A person-readable account of one event, for ``aitrail timeline``.

    The headline and the lines shown come from the table of event types
    (aitrail.record.event_types); custom types show their attributes and ids.
    """
    kind = ev["event_type"]
    head = f"{ev['time']}  #{ev['seq']:<6} {kind.upper().replace('_', ' ')}"
    body: list[str] = []
    spec = event_types.BY_NAME.get(kind)
    if spec is not None:
        if kind in _HEADS:
            head += _HEADS[kind](ev)
        elif spec.summary:
            head += "  " + spec.summary.format(**ev)
        body += _BEFORE.get(kind, _no_lines)(ev)
        part = event_types.part_of(kind)
        for detail in spec.details:
            assert part is not None, kind
            field = part.field(detail.path)
            if detail.always or ev.get(field.key):
                body += _indent((detail.label or field.label) + ":", ev.get(field.key) or "")
        body += _AFTER.get(kind, _no_lines)(ev)
    if ev.get("attributes"):
        body += _indent("attributes:", ", ".join(f"{k}={v}" for k, v in
                                                 sorted(ev["attributes"].items())))
    ids = [f"{k}={ev[k]}" for k in ("request_id", "trace_id") if ev.get(k)]
    body.append("    " + safe("  ".join(ids + [f"record={ev['record_id']}"])))
    return [safe(head)] + body


def _no_lines(ev: dict[str, Any]) -> list[str]:
    return []


def print_verify(report: dict[str, Any]) -> None:
    """The trust root, the chains, the findings, notes and erasures; then the verdict,
    last (nothing printed after it can paint over it) and made of counts and fixed
    words only."""
    _print_trust_root(report.get("trust_root"))
    for c in report["chains"]:
        print(safe(f"  chain {c['chain_id']}: head seq {c['head_seq']}"
                   + _checkpoint_note(c.get("checkpoints"))))
    if not report["ok"]:
        for f in report["findings"]:
            print(safe(f"  {f['kind']:<12} chain={f['chain_id']} seq={f['seq']} "
                       f"record={f['record_id'] or '-'}: {f['detail']}"))
    for c in report["chains"]:
        for period in (c.get("checkpoints") or {}).get("periods_without_checkpoint", []):
            print(safe(f"  no checkpoint for {period['hours']} h after checkpoint "
                       f"{period['after']} of chain {c['chain_id']}: nothing proves what was "
                       "logged in that period"))
    for warning in report.get("warnings", []):
        print(safe(f"  note: {warning}"))
    _print_erased(report.get("erased") or [])
    records, chains = int(report["records"]), len(report["chains"])
    if report["ok"]:
        print(f"{verdict_ok(report)}: {records} records in {chains} chain(s) verified in "
              f"{float(report['seconds']):g} s")
    else:
        print(f"FAILED: {len(report['findings'])} finding(s) in {records} records in "
              f"{chains} chain(s)")


def _print_trust_root(root: Optional[dict[str, Any]]) -> None:
    """Which key and anchor the verification trusted, and where each came from."""
    if not isinstance(root, dict):
        return
    key, anchor, pinned = root.get("public_key"), root.get("anchor"), root.get("pinned")
    print("trust root:")
    if key:
        print(safe(f"  public key  {key.get('key_id')} from {key.get('path') or '-'} "
                   f"({key.get('source')})"))
    else:
        print("  public key  none: signatures not checked")
    if anchor:
        print(safe(f"  anchor      {anchor.get('describe') or anchor.get('location')} "
                   f"({anchor.get('source')})"))
    else:
        print("  anchor      none")
    if pinned:
        print(safe(f"  pinned      checkpoint {pinned.get('number')} of chain "
                   f"{pinned.get('chain_id')} at size {pinned.get('size')}"))


def _print_erased(erased: Sequence[dict[str, Any]], shown: int = 20) -> None:
    """Erased payloads are not failures: each is named by a sealed redaction record."""
    if not erased:
        return
    n = sum(len(e["payloads"]) for e in erased)
    print(f"  {n} payload(s) of {len(erased)} record(s) erased, each named by a sealed "
          "redaction record:")
    for e in erased[:shown]:
        print(safe(f"    record {e['record_id']} (chain {e['chain_id']}, seq {e['seq']}): "
                   f"{', '.join(e['payloads'])}; redaction {e['redaction_id']} (seq "
                   f"{e['redaction_seq']}) by {e['actor']}: {e['reason']}"))
    if len(erased) > shown:
        print(f"    ... and {len(erased) - shown} more (--format json lists them all)")


def _checkpoint_note(cps: Optional[dict[str, Any]]) -> str:
    if not cps:
        return ""
    last = cps.get("last")
    note = f", {cps['checkpoints']} checkpoints"
    if last:
        note += f", last #{last['number']} at size {last['size']}"
    if cps.get("key_id"):
        note += f", key {cps['key_id']}"
    if cps.get("from_checkpoint"):
        note += f", from checkpoint {cps['from_checkpoint']}"
    return note


