"""How the CLI prints what it read: tables, a task's timeline as a person reads it,
and verification reports (the verdict line built from the report, never from
ledger text)."""

from __future__ import annotations

import sys
import textwrap
from typing import Any, Callable, Optional, Sequence, TextIO

from aitrail.record import event_types
from aitrail.verify.trust_root import verdict_ok

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
        return rec.get("decision") or rec.get("resolution_outcome") or ""
    value = rec.get(col)
    if col == "confidence":
        return "" if value is None else f"{value:.2f}"
    return "" if value is None else str(value)


def print_table(records: Sequence[dict[str, Any]], out: TextIO = sys.stdout) -> None:
    def fit(text: str, width: int) -> str:
        return text if len(text) <= width else text[: width - 1] + "…"
    out.write("  ".join(name.upper().ljust(w) for name, w in TABLE_COLUMNS).rstrip() + "\n")
    for rec in records:
        out.write("  ".join(fit(_cell(rec, name), w).ljust(w)
                            for name, w in TABLE_COLUMNS).rstrip() + "\n")


def _indent(label: str, text: str, width: int = 100) -> list[str]:
    lines = []
    for i, para in enumerate(text.splitlines() or [""]):
        wrapped = textwrap.wrap(para, width - 14) or [""]
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
                                            "review": _review_head}
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
                body += _indent((detail.label or field.label) + ":", ev[field.key])
        body += _AFTER.get(kind, _no_lines)(ev)
    if ev.get("attributes"):
        body += _indent("attributes:", ", ".join(f"{k}={v}" for k, v in
                                                 sorted(ev["attributes"].items())))
    ids = [f"{k}={ev[k]}" for k in ("request_id", "trace_id") if ev.get(k)]
    body.append("    " + "  ".join(ids + [f"record={ev['record_id']}"]))
    return [head] + body


def _no_lines(ev: dict[str, Any]) -> list[str]:
    return []


def print_verify(report: dict[str, Any]) -> None:
    chains = ", ".join(f"{c['chain_id']} (head seq {c['head_seq']}"
                       + _checkpoint_note(c.get("checkpoints")) + ")" for c in report["chains"])
    _print_trust_root(report.get("trust_root"))
    if report["ok"]:
        print(f"{verdict_ok(report)}: {report['records']} records in "
              f"{len(report['chains'])} chain(s) verified "
              f"[{chains or 'empty ledger'}] in {report['seconds']} s")
    else:
        print(f"FAILED: {len(report['findings'])} finding(s) in {report['records']} records "
              f"[{chains}]")
        for f in report["findings"]:
            print(f"  {f['kind']:<12} chain={f['chain_id']} seq={f['seq']} "
                  f"record={f['record_id'] or '-'}: {f['detail']}")
    for c in report["chains"]:
        for period in (c.get("checkpoints") or {}).get("periods_without_checkpoint", []):
            print(f"  no checkpoint for {period['hours']} h after checkpoint {period['after']} "
                  f"of chain {c['chain_id']}: nothing proves what was logged in that period")
    for warning in report.get("warnings", []):
        print(f"  note: {warning}")
    _print_erased(report.get("erased") or [])


def _print_trust_root(root: Optional[dict[str, Any]]) -> None:
    """Which key and anchor the verification trusted, and where each came from."""
    if not isinstance(root, dict):
        return
    key, anchor, pinned = root.get("public_key"), root.get("anchor"), root.get("pinned")
    print("trust root:")
    if key:
        print(f"  public key  {key.get('key_id')} from {key.get('path') or '-'} "
              f"({key.get('source')})")
    else:
        print("  public key  none: signatures not checked")
    if anchor:
        print(f"  anchor      {anchor.get('describe') or anchor.get('location')} "
              f"({anchor.get('source')})")
    else:
        print("  anchor      none")
    if pinned:
        print(f"  pinned      checkpoint {pinned.get('number')} of chain {pinned.get('chain_id')}"
              f" at size {pinned.get('size')}")


def _print_erased(erased: Sequence[dict[str, Any]], shown: int = 20) -> None:
    """Erased payloads are not failures: each is named by a sealed redaction record."""
    if not erased:
        return
    n = sum(len(e["payloads"]) for e in erased)
    print(f"  {n} payload(s) of {len(erased)} record(s) erased, each named by a sealed "
          "redaction record:")
    for e in erased[:shown]:
        print(f"    record {e['record_id']} (chain {e['chain_id']}, seq {e['seq']}): "
              f"{', '.join(e['payloads'])}; redaction {e['redaction_id']} (seq "
              f"{e['redaction_seq']}) by {e['actor']}: {e['reason']}")
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


