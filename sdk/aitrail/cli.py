"""The ``aitrail`` command.

Exit codes: 0 success; 1 verification found problems; 2 usage or connection
errors. Query commands reach a running collector (``--url``) or a store
directly (``--data-dir`` / ``--clickhouse``); pointed at a directory that a
running collector holds, they talk to that collector.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import textwrap
from typing import Any, Optional, Sequence

from aitrail.client import ClientError, HttpBackend
from aitrail.csvfmt import csv_lines

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class UsageError(Exception):
    pass


def _need_collector(what: str) -> None:
    try:
        import aitrail_collector  # noqa: F401
        import clickhouse_connect  # noqa: F401
    except ImportError:
        raise UsageError(f"{what} needs the collector extra: pip install 'aitrail[collector]'") \
            from None


# ------------------------------------------------------------------ targets

def _add_target(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("where the ledger is (default: $AITRAIL_URL, else "
                             "$AITRAIL_DATA_DIR, else ./aitrail-data)")
    x = g.add_mutually_exclusive_group()
    x.add_argument("--url", help="a running collector's HTTP address, e.g. http://127.0.0.1:8327")
    x.add_argument("--data-dir", help="an embedded store directory")
    x.add_argument("--clickhouse", metavar="DSN", help="a ClickHouse DSN (http://host:8123, chdb:///dir)")
    g.add_argument("--token", metavar="TOKEN",
                   help="API token for --url (default $AITRAIL_TOKEN; `aitrail user token-create`)")


def _backend(args: argparse.Namespace):
    url = args.url or (None if (args.data_dir or args.clickhouse) else os.environ.get("AITRAIL_URL"))
    token = getattr(args, "token", None) or os.environ.get("AITRAIL_TOKEN")
    if url:
        return HttpBackend(url, token=token)
    _need_collector("reading a store directly")
    from aitrail_collector.local import LocalBackend
    from aitrail_collector.server import running_collector
    from aitrail_collector.store import default_data_dir, dsn_for
    if args.clickhouse:
        return LocalBackend(dsn_for(clickhouse=args.clickhouse))
    data_dir = os.path.realpath(args.data_dir or default_data_dir())
    if not os.path.isdir(data_dir):
        raise ClientError(f"no store at {data_dir} (run `aitrail demo` first, or pass --url, "
                          "--data-dir or --clickhouse)")
    held = running_collector(data_dir)
    if held and held.get("url"):
        # Whoever can read the store's directory may read the store: the collector
        # leaves a token there (mode 0600) for the CLI, which then acts as "local".
        return HttpBackend(held["url"], token=token or _local_token(data_dir))
    return LocalBackend(dsn_for(data_dir=data_dir))


def _local_token(data_dir: str) -> Optional[str]:
    try:
        with open(os.path.join(data_dir, "local-token"), encoding="utf-8") as fh:
            return fh.read().strip() or None
    except OSError:
        return None


# ------------------------------------------------------------------ formatting

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


def print_table(records: Sequence[dict], out=sys.stdout) -> None:
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


# ------------------------------------------------------------------ commands

def _filter_params(args: argparse.Namespace) -> dict[str, Any]:
    return {"task": args.task, "reviewer": args.reviewer, "request_id": args.request_id,
            "trace_id": args.trace_id, "record_id": args.record_id, "type": args.type or None,
            "since": args.since, "until": args.until}


def cmd_query(args: argparse.Namespace) -> int:
    params = dict(_filter_params(args), limit=str(args.limit), offset=str(args.offset),
                  order=args.order)
    result = _backend(args).search(params)
    if args.format == "csv":
        sys.stdout.writelines(csv_lines(result["records"]))
    elif args.format == "json":
        json.dump(result, sys.stdout, indent=2, ensure_ascii=False)
        sys.stdout.write("\n")
    else:
        print_table(result["records"])
        shown = len(result["records"])
        more = " (use --limit/--offset for more)" if shown < result["total"] else ""
        sys.stderr.write(f"{shown} of {result['total']} matching records{more}\n")
    return EXIT_OK


def cmd_timeline(args: argparse.Namespace) -> int:
    events = _backend(args).timeline(args.task_id)
    if args.format == "json":
        json.dump(events, sys.stdout, indent=2, ensure_ascii=False)
        sys.stdout.write("\n")
        return EXIT_OK
    print(f"Task {args.task_id}: {len(events)} events")
    for ev in events:
        print()
        print("\n".join(describe_event(ev)))
    return EXIT_OK


def cmd_export(args: argparse.Namespace) -> int:
    chunks = _backend(args).export_csv(_filter_params(args))
    if not args.output:
        for chunk in chunks:
            sys.stdout.buffer.write(chunk)
        return EXIT_OK
    # Written aside and renamed when complete: an auditor must never receive a
    # file that was cut short.
    partial = args.output + ".partial"
    try:
        with open(partial, "wb") as out:
            for chunk in chunks:
                out.write(chunk)
        os.replace(partial, args.output)
    finally:
        if os.path.exists(partial):
            os.remove(partial)
    return EXIT_OK


def cmd_verify(args: argparse.Namespace) -> int:
    backend = _backend(args)
    report = backend.verify(from_checkpoint=args.from_checkpoint, public_key=args.public_key,
                            anchor=args.anchor)
    if args.public_key:
        _check_key_id(report, args.public_key)
    if args.format == "json":
        json.dump(report, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        _print_verify(report)
    return EXIT_OK if report["ok"] else EXIT_FAILED


def _check_key_id(report: dict, public_key_path: str) -> None:
    """A collector verified with its own key: it must be the key the user trusts."""
    from aitrail.checkpoint import key_id, load_public_key
    want = key_id(load_public_key(public_key_path))
    for chain in report["chains"]:
        got = (chain.get("checkpoints") or {}).get("key_id")
        if got and got != want:
            report["ok"] = False
            report["findings"].append({
                "kind": "checkpoint_bad_signature", "chain_id": chain["chain_id"], "seq": 0,
                "record_id": "", "detail": f"the checkpoints are signed by key {got}, not by "
                f"the given key {want}"})


def _print_verify(report: dict) -> None:
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


def cmd_keygen(args: argparse.Namespace) -> int:
    from aitrail.checkpoint import key_id, load_public_key, write_keypair
    private, public = args.out + ".pem", args.out + ".pub"
    try:
        write_keypair(private, public)
    except (FileExistsError, OSError) as exc:
        raise UsageError(f"{exc}") from None
    print(f"private key {private} (mode 0600: give it to the collector, --signing-key)")
    print(f"public key  {public} (key id {key_id(load_public_key(public))}: give it to "
          "verifiers)")
    return EXIT_OK


def cmd_prove(args: argparse.Namespace) -> int:
    text = _backend(args).prove(args.record_id)
    if args.output:
        with open(args.output, "w", encoding="utf-8") as fh:
            fh.write(text)
        sys.stderr.write(f"proof bundle for {args.record_id} written to {args.output}\n")
    else:
        sys.stdout.write(text)
    return EXIT_OK


def cmd_verify_proof(args: argparse.Namespace) -> int:
    from aitrail.checkpoint import CheckpointError, load_public_key
    from aitrail.proof import BundleError, verify_bundle
    try:
        key = load_public_key(args.public_key)
    except (CheckpointError, OSError) as exc:
        raise UsageError(f"--public-key: {exc}") from None
    try:
        with open(args.bundle, encoding="utf-8", newline="") as fh:
            text = fh.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"{args.bundle}: {exc}") from None
    try:
        bundle = verify_bundle(text, key)
    except BundleError as exc:
        print(f"FAILED: {args.bundle}: {exc}")
        return EXIT_FAILED
    print(f"OK: record {bundle['record_id']} is record {bundle['seq']} of chain "
          f"{bundle['chain_id']}, included in signed checkpoint of size {bundle['tree_size']}")
    return EXIT_OK


def cmd_erase(args: argparse.Namespace) -> int:
    from aitrail.client import NothingToErase
    try:
        result = _backend(args).erase(task=args.task, record_id=args.record,
                                      reason=args.reason, actor=args.actor or _os_user())
    except NothingToErase as exc:
        sys.stderr.write(f"aitrail erase: {exc}\n")
        return EXIT_FAILED
    if args.format == "json":
        json.dump(result, sys.stdout, indent=2, ensure_ascii=False)
        sys.stdout.write("\n")
        return EXIT_OK
    if result["erased"] or not result["completed"]:
        print(f"Erased {result['payloads']} payload(s) of {result['records']} record(s) of "
              f"{result['target']}.")
    for red in result["redactions"]:
        print(f"  sealed redaction record {red['record_id']} (chain {red['chain_id']}, "
              f"seq {red['seq']})")
    for e in result["erased"]:
        changed = f"  (did not match its commitment: {', '.join(e['modified'])})" \
            if e.get("modified") else ""
        print(f"  record {e['record_id']} (seq {e['seq']}): {', '.join(e['payloads'])}{changed}")
    if result["completed"]:
        print(f"  completed the earlier erasure of {len(result['completed'])} record(s)")
    if result.get("inactive_parts_left"):
        sys.stderr.write(f"aitrail erase: {result['inactive_parts_left']} replaced data part(s) "
                         "were still in use and remain on disk until the engine removes them\n")
    return EXIT_OK


def _os_user() -> str:
    import getpass
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no login name in some containers
        return "unknown"


def cmd_summary(args: argparse.Namespace) -> int:
    json.dump(_backend(args).summary(), sys.stdout, indent=2)
    sys.stdout.write("\n")
    return EXIT_OK


def cmd_apikey(args: argparse.Namespace) -> int:
    _need_collector("managing API keys")
    from aitrail_collector import auth
    if args.action == "create":
        if not args.service:
            raise UsageError("create needs --service")
        key = auth.create_key(args.keys_file, args.service)
        print(key)
        sys.stderr.write("Store this key now: only its hash is kept.\n")
    elif args.action == "revoke":
        if not args.key_id:
            raise UsageError("revoke needs the key's id (see `aitrail apikey list`)")
        try:
            auth.revoke_key(args.keys_file, args.key_id)
        except KeyError as exc:
            raise UsageError(exc.args[0]) from None
        print(f"revoked {args.key_id}")
    else:
        for k in auth.load_keys(args.keys_file).values():
            print(f"{k.key_id}  {k.service:<24} created {k.created}"
                  + ("  REVOKED" if k.revoked else ""))
    return EXIT_OK


def cmd_user(args: argparse.Namespace) -> int:
    _need_collector("managing console users")
    from aitrail_collector.accounts import AccountError, Accounts, users_file
    path = args.users or users_file(args.data_dir)
    needs = {"add": "USERNAME", "passwd": "USERNAME", "role": "USERNAME", "disable": "USERNAME",
             "enable": "USERNAME", "remove": "USERNAME", "token-create": "NAME",
             "token-revoke": "the token's ID (see `aitrail user tokens`)"}
    if args.action in needs and not args.target:
        raise UsageError(f"{args.action} needs {needs[args.action]}")
    if args.action == "role" and not args.value:
        raise UsageError("role needs USERNAME ROLE")
    if args.action != "role" and args.value:
        raise UsageError(f"{args.action} takes one argument, not {args.value!r}")
    if args.action in ("add", "token-create") and not args.role:
        raise UsageError(f"{args.action} needs --role (auditor, analyst or admin)")
    try:
        accounts = Accounts(path)
        name, a = args.target, args.action
        if a == "add":
            accounts.add_user(name, _new_password(args), args.role)
            print(f"added {name} ({args.role}) to {path}")
        elif a == "passwd":
            accounts.set_password(name, _new_password(args))
            print(f"changed the password of {name}; their console sessions end")
        elif a == "role":
            accounts.set_role(name, args.value)
            print(f"{name} is now {args.value}")
        elif a in ("disable", "enable", "remove"):
            getattr(accounts, f"{a}_user")(name)
            print(f"{a}d {name}")
        elif a == "list":
            for u in accounts.users():
                print(f"{u['username']:<24} {u['role']:<8} created {u['created']}"
                      + ("  DISABLED" if u["disabled"] else ""))
        elif a == "token-create":
            token_id, secret = accounts.create_token(name, args.role, args.owner or _os_user())
            print(secret)
            sys.stderr.write(f"Token {token_id} ({args.role}): store it now, only its hash "
                             "is kept.\n")
        elif a == "token-revoke":
            accounts.revoke_token(name)
            print(f"revoked token {name}")
        else:
            for t in accounts.tokens():
                print(f"{t['token_id']}  {t['name']:<24} {t['role']:<8} owner {t['owner']} "
                      f"created {t['created']}" + ("  REVOKED" if t["revoked"] else ""))
    except AccountError as exc:
        raise UsageError(str(exc)) from None
    return EXIT_OK


def _new_password(args: argparse.Namespace) -> str:
    """From the first line of stdin (--password-stdin), else asked twice without echo."""
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    if not sys.stdin.isatty():  # getpass would read the pipe, echoing, with a warning
        raise UsageError("no terminal to ask for the password: use --password-stdin")
    import getpass
    try:
        first = getpass.getpass("New password: ")
        if getpass.getpass("Again: ") != first:
            raise UsageError("the passwords do not match")
    except EOFError:
        raise UsageError("no password given (use --password-stdin, or run in a terminal)") \
            from None
    return first


def cmd_collector(args: argparse.Namespace) -> int:
    _need_collector("the collector")
    from aitrail_collector.main import run_collector
    return run_collector(args)


def cmd_demo(args: argparse.Namespace) -> int:
    _need_collector("the demo")
    from aitrail_collector.demo import run_demo
    return run_demo(args)


def _add_filters(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("filters")
    g.add_argument("--task", help="task id")
    g.add_argument("--reviewer", help="reviewer id (reviews and escalations)")
    g.add_argument("--request-id")
    g.add_argument("--trace-id", help="OpenTelemetry trace id (32 hex digits)")
    g.add_argument("--record-id")
    g.add_argument("--type", action="append", metavar="TYPE",
                   help="event type (repeatable): model_call, review, escalation, ...")
    g.add_argument("--since", help="ISO 8601 date/time, or a span ago: 30m, 24h, 7d")
    g.add_argument("--until", help="ISO 8601 date/time, or a span ago")


def _add_server(p: argparse.ArgumentParser) -> None:
    x = p.add_mutually_exclusive_group()
    x.add_argument("--data-dir", help="embedded store directory (default $AITRAIL_DATA_DIR or "
                                      "./aitrail-data)")
    x.add_argument("--clickhouse", metavar="DSN", help="ClickHouse server DSN, http(s)://host:port")
    p.add_argument("--grpc-listen", default="127.0.0.1:4327", metavar="HOST:PORT")
    p.add_argument("--http-listen", default="127.0.0.1:8327", metavar="HOST:PORT")
    p.add_argument("--chain-id", default="main", help="the chain this collector seals (default main)")
    p.add_argument("--retention-days", type=int, default=None,
                   help="drop day partitions older than this (default 6 years)")
    g = p.add_argument_group("console")
    g.add_argument("--users", metavar="FILE",
                   help="console accounts and API tokens (`aitrail user`; default "
                        "<data dir>/console-users.json). With no account yet, the HTTP API and "
                        "console serve loopback callers only, without sign-in")
    g = p.add_argument_group("checkpoints")
    g.add_argument("--signing-key", metavar="PEM",
                   help="Ed25519 private key for checkpoints (`aitrail keygen`; default: "
                        "<data dir>/signing-key.pem, made on first start)")
    g.add_argument("--anchor", metavar="DIR|s3://BUCKET/PREFIX",
                   help="independent store for every checkpoint (default <data dir>/anchor)")
    g.add_argument("--checkpoint-interval", type=float, default=300, metavar="SECONDS",
                   help="sign a checkpoint this often when records arrived (default 300)")
    g.add_argument("--checkpoint-max-quiet", type=float, default=86400, metavar="SECONDS",
                   help="and at least this often when none did (default 86400)")
    g = p.add_argument_group("security")
    g.add_argument("--api-keys", metavar="FILE", help="require an API key from this keys file "
                   "(see `aitrail apikey`); a key may only write records of its own service")
    g.add_argument("--tls-cert", metavar="PEM", help="serve gRPC over TLS with this certificate")
    g.add_argument("--tls-key", metavar="PEM", help="and this private key")
    g.add_argument("--tls-client-ca", metavar="PEM",
                   help="require client certificates signed by this CA (mutual TLS)")
    g = p.add_argument_group("limits (hostile input and overload)")
    g.add_argument("--max-message-bytes", type=int, default=64 * 1024 * 1024,
                   help="largest gRPC request accepted (default 64 MiB)")
    g.add_argument("--max-records-per-batch", type=int, default=10_000)
    g.add_argument("--max-record-bytes", type=int, default=4 * 1024 * 1024)
    g.add_argument("--max-text-chars", type=int, default=1024 * 1024,
                   help="longest input, output, rationale, ... (default 1 Mi characters)")
    g.add_argument("--max-attributes", type=int, default=64)
    g.add_argument("--max-clock-skew", type=int, default=300, metavar="SECONDS",
                   help="how far in the future a record's start time may be (default 300)")
    g.add_argument("--max-record-age-days", type=float, default=30,
                   help="older records are refused rather than creating old partitions")
    g.add_argument("--max-pending-records", type=int, default=100_000,
                   help="past this many records waiting to be sealed, answer RESOURCE_EXHAUSTED")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="aitrail", description="Tamper-evident audit trail for AI systems.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("collector", help="run the collector (gRPC ingest + HTTP query API)")
    _add_server(p)
    p.set_defaults(func=cmd_collector)

    p = sub.add_parser("demo", help="run a collector and a realistic support-ticket triage scenario")
    _add_server(p)
    p.add_argument("--tasks", type=int, default=240, help="number of tickets (default 240)")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--no-serve", action="store_true", help="exit after the summary instead of "
                                                           "serving until Ctrl-C")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("query", help="search records")
    _add_target(p)
    _add_filters(p)
    p.add_argument("--limit", type=int, default=100)
    p.add_argument("--offset", type=int, default=0)
    p.add_argument("--order", choices=("asc", "desc"), default="asc", help="by time")
    p.add_argument("--format", choices=("table", "csv", "json"), default="table")
    p.set_defaults(func=cmd_query)

    p = sub.add_parser("timeline", help="every event of one task, in order")
    p.add_argument("task_id")
    _add_target(p)
    p.add_argument("--format", choices=("text", "json"), default="text")
    p.set_defaults(func=cmd_timeline)

    p = sub.add_parser("export", help="export all matching records (CSV with a header row)")
    _add_target(p)
    _add_filters(p)
    p.add_argument("--format", choices=("csv",), default="csv")
    p.add_argument("-o", "--output", help="file to write (default stdout)")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("verify", help="recompute every hash, the sequence of every chain, and "
                       "check every signed checkpoint against the records and the anchor")
    _add_target(p)
    p.add_argument("--format", choices=("text", "json"), default="text")
    p.add_argument("--from-checkpoint", type=int, metavar="N",
                   help="verify from checkpoint N on (records before it may have been dropped "
                        "by retention)")
    p.add_argument("--public-key", metavar="PEM",
                   help="the checkpoint signing key to trust (default, with --data-dir: "
                        "<dir>/signing-key.pub)")
    p.add_argument("--anchor", metavar="DIR|s3://BUCKET/PREFIX",
                   help="the anchor store to compare with (default, with --data-dir: <dir>/anchor)")
    p.set_defaults(func=cmd_verify)

    p = sub.add_parser("keygen", help="make an Ed25519 key pair for signing checkpoints")
    p.add_argument("--out", default="aitrail-signing-key",
                   help="path prefix: writes PREFIX.pem (private) and PREFIX.pub (public)")
    p.set_defaults(func=cmd_keygen)

    p = sub.add_parser("prove", help="write a self-contained proof bundle for one record")
    p.add_argument("record_id")
    _add_target(p)
    p.add_argument("-o", "--output", help="file to write (default stdout)")
    p.set_defaults(func=cmd_prove)

    p = sub.add_parser("verify-proof", help="check a proof bundle offline (exit 0 valid, 1 not)")
    p.add_argument("bundle", help="the bundle file written by `aitrail prove`")
    p.add_argument("--public-key", required=True, metavar="PEM",
                   help="the collector's checkpoint public key")
    p.set_defaults(func=cmd_verify_proof)

    p = sub.add_parser("apikey", help="create, revoke and list ingest API keys")
    p.add_argument("action", choices=("create", "revoke", "list"))
    p.add_argument("key_id", nargs="?", help="with revoke: the key's id")
    p.add_argument("--keys-file", required=True, help="the collector's --api-keys file")
    p.add_argument("--service", help="with create: the service the key may write as")
    p.set_defaults(func=cmd_apikey)

    p = sub.add_parser("user", help="manage console users (roles, passwords) and JSON API tokens")
    p.add_argument("action", choices=("add", "passwd", "role", "disable", "enable", "remove",
                                      "list", "token-create", "token-revoke", "tokens"))
    p.add_argument("target", nargs="?", help="USERNAME; with token-create the token's NAME; "
                   "with token-revoke its ID")
    p.add_argument("value", nargs="?", help="with role: the new ROLE")
    p.add_argument("--role", help="with add and token-create: auditor, analyst or admin")
    p.add_argument("--password-stdin", action="store_true",
                   help="with add and passwd: read the password from the first line of stdin")
    p.add_argument("--owner", help="with token-create: who the token is for (default: your "
                   "login name)")
    p.add_argument("--users", metavar="FILE",
                   help="the users file (default <data dir>/console-users.json)")
    p.add_argument("--data-dir", help="default $AITRAIL_DATA_DIR, else ./aitrail-data")
    p.set_defaults(func=cmd_user)

    p = sub.add_parser("erase", help="erase the payloads of a task or record (GDPR Art. 17) and "
                       "seal a redaction record; the chain still verifies")
    x = p.add_mutually_exclusive_group(required=True)
    x.add_argument("--task", help="every record of this task")
    x.add_argument("--record", metavar="RECORD_ID", help="this one record")
    p.add_argument("--reason", required=True, help="why (sealed in the redaction record)")
    p.add_argument("--actor", help="who asked for the erasure (default: your login name)")
    _add_target(p)
    p.add_argument("--format", choices=("text", "json"), default="text")
    p.set_defaults(func=cmd_erase)

    p = sub.add_parser("summary", help="records per type, override rate, chain heads (JSON)")
    _add_target(p)
    p.set_defaults(func=cmd_summary)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (UsageError, ClientError) as exc:
        sys.stderr.write(f"aitrail {args.command}: {exc}\n")
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return EXIT_OK
    except Exception as exc:  # noqa: BLE001 - one clear line unless debugging
        if os.environ.get("AITRAIL_DEBUG"):
            raise
        sys.stderr.write(f"aitrail {args.command}: {type(exc).__name__}: {exc} "
                         "(set AITRAIL_DEBUG=1 for a traceback)\n")
        return EXIT_USAGE


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
