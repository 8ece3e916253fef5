"""How the CLI prints what it read: tables, a task's timeline as a person reads it,
and verification reports (the verdict line built from the report, never from
ledger text)."""

from __future__ import annotations

import sys
import textwrap
from typing import Optional, Sequence, TextIO


TABLE_COLUMNS = (("time", 26), ("event_type", 11), ("task_id", 14), ("who", 12),
                 ("model", 24), ("decision", 8), ("confidence", 10), ("record_id", 36))


def _who(rec: dict) -> str:
    return (rec.get("reviewer_id") or rec.get("escalation_from") and
            f"{rec['escalation_from']}>{rec['escalation_to']}" or rec.get("actor") or "")


def _model(rec: dict) -> str:
    model = rec.get("model") or ""
    if model and rec.get("prompt_version"):
        model += f" @{rec['prompt_version']}"
    return model


def _cell(rec: dict, col: str) -> str:
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


def print_table(records: Sequence[dict], out: TextIO = sys.stdout) -> None:
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


def describe_event(ev: dict) -> list[str]:
    """A person-readable account of one event, for ``aitrail timeline``."""
    kind = ev["event_type"]
    head = f"{ev['time']}  #{ev['seq']:<6} {kind.upper().replace('_', ' ')}"
    body: list[str] = []
    if kind == "model_call":
        head += f"  {ev.get('provider') or ''} {_model(ev)}".rstrip()
        if ev.get("model_version"):
            head += f" (version {ev['model_version']})"
        if ev.get("confidence") is not None:
            head += f"  confidence {ev['confidence']:.2f}"
        for name in ("input", "output"):
            if ev.get(name):
                body += _indent(name + ":", ev[name])
        if ev.get("error_type"):
            body += _indent("error:", f"{ev['error_type']}: {ev.get('error_message', '')}")
    elif kind == "review":
        head += f"  {ev['reviewer_id']} decided {ev['decision'].upper()}"
        head += f" after {ev['time_spent_ms'] / 1000:.1f} s"
        why = ", ".join(x for x in (ev.get("reason_code"), ev.get("policy_ref") and
                                    f"policy {ev['policy_ref']}") if x)
        if why:
            body += _indent("reason:", why)
        if ev.get("rationale"):
            body += _indent("rationale:", ev["rationale"])
        if ev.get("modified_output"):
            body += _indent("new output:", ev["modified_output"])
        if ev.get("diff"):
            body += _indent("diff:", ev["diff"])
    elif kind == "escalation":
        head += f"  {ev['escalation_from']} -> {ev['escalation_to']}"
        if ev.get("escalation_reason"):
            body += _indent("reason:", ev["escalation_reason"])
    elif kind == "resolution":
        head += f"  {ev['resolution_outcome']}"
        if ev.get("final_decision"):
            body += _indent("final:", ev["final_decision"])
    elif kind == "data_access":
        head += f"  {ev['actor']} read {ev['resource']} ({ev['purpose']})"
    elif kind == "redaction":
        head += f"  {ev['actor']} erased payloads of {ev['resource']}"
        body += _indent("reason:", ev["purpose"])
    if ev.get("attributes"):
        body += _indent("attributes:", ", ".join(f"{k}={v}" for k, v in
                                                 sorted(ev["attributes"].items())))
    ids = [f"{k}={ev[k]}" for k in ("request_id", "trace_id") if ev.get(k)]
    body.append("    " + "  ".join(ids + [f"record={ev['record_id']}"]))
    return [head] + body


def print_verify(report: dict) -> None:
    chains = ", ".join(f"{c['chain_id']} (head seq {c['head_seq']}"
                       + _checkpoint_note(c.get("checkpoints")) + ")" for c in report["chains"])
    if report["ok"]:
        print(f"OK: {report['records']} records in {len(report['chains'])} chain(s) verified "
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


def _print_erased(erased: Sequence[dict], shown: int = 20) -> None:
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


def _checkpoint_note(cps: Optional[dict]) -> str:
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


