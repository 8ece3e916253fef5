"""The collector's ``aitrail`` commands: collector, demo, user, apikey, erase.

They reach the ``aitrail`` parser through the entry-point group
``aitrail.commands`` (pyproject.toml): each ``add_*`` function adds one
subcommand. This module imports only the standard library and the SDK's CLI
helpers at import time, so ``aitrail --help`` stays quick; each command imports
what it runs when it runs, after checking that the collector extra is there.
The flags' defaults are read from ``CollectorConfig``: each is written once.
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import sys
from typing import Any

from aitrail.cli.base import (
    COLLECTOR_EXTRA,
    EXIT_FAILED,
    EXIT_OK,
    UsageError,
    add_target,
    backend,
    os_user,
)
from aitrail.cli.output import safe
from aitrail_collector.config import CollectorConfig, Limits

_DEFAULTS = CollectorConfig(dsn="")
_LIMITS = Limits()


_EXTRA_MODULES = ("clickhouse_connect", "chdb", "fastapi", "uvicorn")


def _extra_missing() -> bool:
    return any(importlib.util.find_spec(m) is None for m in _EXTRA_MODULES)


def _need_collector_extra(what: str) -> None:
    if _extra_missing():
        raise UsageError(f"{what} needs the collector extra: {COLLECTOR_EXTRA}")


def _help(text: str, needs_extra: bool = True) -> str:
    """A command's one-line help; says how to get it when the extra is missing."""
    if needs_extra and _extra_missing():
        return f"{text} [needs {COLLECTOR_EXTRA}]"
    return text


# ------------------------------------------------------------------ collector, demo

def _add_server(p: argparse.ArgumentParser) -> None:
    d, lim = _DEFAULTS, _LIMITS
    x = p.add_mutually_exclusive_group()
    x.add_argument("--data-dir", help="embedded store directory (default $AITRAIL_DATA_DIR or "
                                      "./aitrail-data)")
    x.add_argument("--clickhouse", metavar="DSN", help="ClickHouse server DSN, http(s)://host:port")
    p.add_argument("--grpc-listen", default=d.grpc_listen, metavar="HOST:PORT")
    p.add_argument("--http-listen", default=d.http_listen, metavar="HOST:PORT")
    p.add_argument("--chain-id", default=d.chain_id,
                   help="the chain this collector seals (default %(default)s)")
    p.add_argument("--retention-days", type=int, default=d.retention_days,
                   help="drop day partitions older than this (default %(default)s: six years)")
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
    g.add_argument("--checkpoint-latency", type=float, default=d.checkpoint_latency,
                   metavar="SECONDS",
                   help="while records arrive, sign and anchor a checkpoint at most this long "
                        "after acknowledging them: the crash window (default %(default)g)")
    g.add_argument("--checkpoint-interval", type=float, default=d.checkpoint_interval,
                   metavar="SECONDS",
                   help="at most one checkpoint on demand (proofs of fresh records) this often; "
                        "other requests wait for the cadence (default %(default)g)")
    g.add_argument("--checkpoint-max-quiet", type=float, default=d.checkpoint_max_quiet,
                   metavar="SECONDS", help="and at least this often when none did "
                                           "(default %(default)g)")
    g.add_argument("--production", action="store_true",
                   help="refuse to start unless --signing-key is outside the data directory "
                        "and --anchor is an independent store (s3://... or a directory outside it)")
    g = p.add_argument_group("security")
    g.add_argument("--api-keys", metavar="FILE", help="require an API key from this keys file "
                   "(see `aitrail apikey`); a key may only write records of its own service")
    g.add_argument("--tls-cert", metavar="PEM", help="serve gRPC over TLS with this certificate")
    g.add_argument("--tls-key", metavar="PEM", help="and this private key")
    g.add_argument("--tls-client-ca", metavar="PEM",
                   help="require client certificates signed by this CA (mutual TLS)")
    g.add_argument("--http-tls-cert", metavar="PEM",
                   help="serve the console and the JSON API over https with this certificate")
    g.add_argument("--http-tls-key", metavar="PEM", help="and this private key")
    g.add_argument("--trusted-proxies", metavar="ADDR[,ADDR...]", default="",
                   help="reverse proxies in front of the HTTP side (addresses or networks); "
                        "their X-Forwarded-For names the client, and they are never trusted "
                        "as callers on this machine (default: none)")
    g = p.add_argument_group(
        "OTLP ingest",
        "OpenTelemetry exporters may send traces here: OTLP/gRPC on --grpc-listen "
        "(TraceService/Export), OTLP/HTTP at POST /v1/traces on --http-listen (protobuf or "
        "JSON, gzip or not), with the same API keys (authorization: Bearer ait_...), TLS "
        "and limits as the native service. GenAI spans become sealed records; other spans "
        "are counted (partial_success, /healthz) and not stored. Span content is "
        "redacted before it is sealed, under the key from --redaction-key-file, else "
        "$AITRAIL_REDACTION_KEY (the SDK's variable); with neither, under a random key "
        "for this process, with a warning: no raw PII is sealed either way, but then "
        "redaction tokens match only until a restart and never the SDK's.")
    g.add_argument("--redaction-key-file", metavar="FILE",
                   help="the redaction key (the file's text, without its line end: give it "
                        "the SDK's AITRAIL_REDACTION_KEY to get the same tokens)")
    g.add_argument("--redaction-policy", metavar="FIELD=ACTION[,FIELD=ACTION...]", default="",
                   help="per-field redaction actions, as the SDK's redaction_policy: scan, "
                        "hash, drop or keep for input, output, error_message, "
                        "attributes.KEY, ... (default: scan free text, keep identifiers)")
    g.add_argument("--otlp-task-id-keys", metavar="KEY[,KEY...]",
                   default=",".join(d.otlp_task_id_keys),
                   help="the span attributes (or baggage) that give a record's task id, "
                        "first one set wins (default %(default)s)")
    g = p.add_argument_group("limits (hostile input and overload)")
    g.add_argument("--max-message-bytes", type=int, default=d.max_message_bytes,
                   help="largest gRPC or OTLP/HTTP request accepted, as sent and as "
                        "decompressed (default 64 MiB)")
    g.add_argument("--max-records-per-batch", type=int, default=d.max_records_per_batch)
    g.add_argument("--max-record-bytes", type=int, default=lim.max_record_bytes)
    g.add_argument("--max-text-chars", type=int, default=lim.max_text_chars,
                   help="longest input, output, rationale, ... (default 1 Mi characters)")
    g.add_argument("--max-attributes", type=int, default=lim.max_attributes)
    g.add_argument("--max-clock-skew", type=int, default=lim.future_skew_s, metavar="SECONDS",
                   help="how far in the future a record's start time may be (default %(default)s)")
    g.add_argument("--max-record-age-days", type=float, default=lim.max_age_s / 86400,
                   help="older records are refused rather than creating old partitions")
    g.add_argument("--max-pending-records", type=int, default=d.max_pending_records,
                   help="past this many records waiting to be sealed, answer RESOURCE_EXHAUSTED")
    g.add_argument("--max-pending-bytes", type=int, default=d.max_pending_bytes,
                   help="likewise past this many request bytes (default 256 MiB)")
    g.add_argument("--serial-commit", action="store_true",
                   help="store each group of requests before sealing the next (by default "
                        "the next group is sealed while one is stored; this is the "
                        "baseline bench/bench_ingest.py measures that against)")
    g = p.add_argument_group("compatibility")
    g.add_argument("--envelope-version", type=int, choices=(1, 2, 3), default=d.envelope_version,
                   help="seal new records under this canonical encoding (default %(default)s; "
                        "1 only for verifiers that predate v2: it seals free text and no "
                        "principal in the envelope; 1 and 2 refuse evaluation records and "
                        "model response ids, which need v3)")


def config_from_args(args: argparse.Namespace) -> CollectorConfig:
    """The collector's configuration from its flags; ConfigError names a bad one."""
    from aitrail_collector.config import ConfigError, DataDir, TlsFiles, dsn_for
    dsn = dsn_for(data_dir=args.data_dir, clickhouse=args.clickhouse)
    data_dir = DataDir.of_dsn(dsn)
    if data_dir is not None:
        held = data_dir.running_collector()
        if held:
            raise ConfigError(f"{data_dir.root} is already held by a running collector "
                              f"(pid {held['pid']}, {held.get('url')})")
    if bool(args.tls_cert) != bool(args.tls_key):
        raise ConfigError("--tls-cert and --tls-key go together")
    if args.tls_client_ca and not args.tls_cert:
        raise ConfigError("--tls-client-ca (mutual TLS) needs --tls-cert and --tls-key")
    if bool(args.http_tls_cert) != bool(args.http_tls_key):
        raise ConfigError("--http-tls-cert and --http-tls-key go together")
    limits = Limits(max_record_bytes=args.max_record_bytes, max_text_chars=args.max_text_chars,
                    max_attributes=args.max_attributes, future_skew_s=args.max_clock_skew,
                    max_age_s=int(args.max_record_age_days * 86400))
    config = CollectorConfig(
        dsn=dsn, chain_id=args.chain_id, grpc_listen=args.grpc_listen,
        http_listen=args.http_listen or None, retention_days=args.retention_days,
        limits=limits, max_message_bytes=args.max_message_bytes,
        max_records_per_batch=args.max_records_per_batch,
        max_pending_records=args.max_pending_records,
        max_pending_bytes=args.max_pending_bytes, api_keys=args.api_keys,
        signing_key=args.signing_key, anchor=args.anchor,
        checkpoint_interval=args.checkpoint_interval,
        checkpoint_latency=args.checkpoint_latency,
        checkpoint_max_quiet=args.checkpoint_max_quiet, users=args.users,
        envelope_version=args.envelope_version, pipelined_commit=not args.serial_commit,
        production=args.production, demo=args.command == "demo",
        tls=TlsFiles(args.tls_cert, args.tls_key, args.tls_client_ca or "")
        if args.tls_cert else None,
        http_tls=TlsFiles(args.http_tls_cert, args.http_tls_key) if args.http_tls_cert else None,
        trusted_proxies=tuple(p.strip() for p in args.trusted_proxies.split(",") if p.strip()),
        redaction_key_file=args.redaction_key_file,
        redaction_policy=_redaction_policy(args.redaction_policy),
        otlp_task_id_keys=tuple(k.strip() for k in args.otlp_task_id_keys.split(",")
                                if k.strip()))
    config.validate()
    return config


def _redaction_policy(text: str) -> tuple[tuple[str, str], ...]:
    from aitrail_collector.config import ConfigError
    policy = []
    for item in filter(None, (i.strip() for i in text.split(","))):
        name, eq, action = item.partition("=")
        if not eq or not name.strip():
            raise ConfigError(f"--redaction-policy {item!r}: expected FIELD=ACTION")
        policy.append((name.strip(), action.strip()))
    return tuple(policy)


def start_from_args(args: argparse.Namespace) -> Any:
    """A started ``Collector``; a configuration it refuses exits 2 with the reason."""
    from aitrail.errors import AitrailError
    from aitrail_collector.app import Collector
    try:
        return Collector(config_from_args(args)).start()
    except (AitrailError, OSError) as exc:
        sys.stderr.write(f"aitrail {args.command}: {exc}\n")
        raise SystemExit(2) from None


def cmd_collector(args: argparse.Namespace) -> int:
    _need_collector_extra("the collector")
    from aitrail_collector.app import stop_on_signals
    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    stop = stop_on_signals()
    collector = start_from_args(args)
    where = collector.data_dir or collector.store.dsn
    print(f"aitrail collector: chain {collector.config.chain_id} (head seq "
          f"{collector.ledger.head_seq}), store {where}", flush=True)
    print(f"  gRPC ingest  {collector.grpc_endpoint}", flush=True)
    if collector.url:
        print(f"  HTTP API     {collector.url}   (OpenAPI: {collector.url}/docs)", flush=True)
    collector.serve_forever(stop)
    return EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    _need_collector_extra("the demo")
    if args.tasks < 1:
        raise UsageError("--tasks must be at least 1")
    from aitrail_collector.demo.run import run_demo
    code: int = run_demo(start_from_args(args), args)
    return code


def add_collector(sub: Any) -> None:
    p = sub.add_parser("collector", help=_help("run the collector (gRPC ingest + HTTP query "
                                               "API)"))
    _add_server(p)
    p.set_defaults(func=cmd_collector)


def add_demo(sub: Any) -> None:
    p = sub.add_parser("demo", help=_help("run a collector and a realistic support-ticket "
                                          "triage scenario"))
    _add_server(p)
    p.add_argument("--tasks", type=int, default=240, help="number of tickets (default 240)")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--no-serve", action="store_true", help="exit after the summary instead of "
                                                           "serving until Ctrl-C")
    p.set_defaults(func=cmd_demo)


# ------------------------------------------------------------------ admin actions

def _users_path(args: argparse.Namespace) -> str:
    from aitrail_collector.config import DataDir, default_data_dir
    return str(args.users or DataDir(args.data_dir or default_data_dir()).users)


def _seal_later(args: argparse.Namespace, what: str, target: str, **details: Any) -> None:
    """Queue an admin action for the collector to seal (ledger/admin_log.py): within
    seconds when one runs on this users (or keys) file, else at its next start."""
    from aitrail_collector.ledger import admin_log
    path = admin_log.queue_path(args.keys_file if args.command == "apikey"
                                else _users_path(args))
    try:
        admin_log.enqueue(path, admin_log.action(os_user(), "local", what, target, details,
                                                 via="cli"))
    except OSError as exc:
        sys.stderr.write(f"aitrail {args.command}: done, but could not queue the change for "
                         f"sealing in {path}: {exc}\n")




# ------------------------------------------------------------------ apikey

def cmd_apikey(args: argparse.Namespace) -> int:
    from aitrail_collector.ingest import apikeys
    try:
        if args.action == "create":
            if not args.service:
                raise UsageError("create needs --service")
            key = apikeys.create_key(args.keys_file, args.service, args.task_prefix or ())
            key_id = key[len(apikeys.PREFIX):].split("_", 1)[0]
            print(key)
            sys.stderr.write("Store this key now: only its hash is kept.\n")
            _seal_later(args, "apikey_created", f"apikey:{key_id}", service=args.service)
        elif args.action == "revoke":
            if not args.key_id:
                raise UsageError("revoke needs the key's id (see `aitrail apikey list`)")
            apikeys.revoke_key(args.keys_file, args.key_id)
            print(safe(f"revoked {args.key_id}"))
            _seal_later(args, "apikey_revoked", f"apikey:{args.key_id}")
        else:
            for k in apikeys.load_keys(args.keys_file).values():
                scope = (f"  tasks {', '.join(k.task_prefixes)}*" if k.task_prefixes else "")
                print(safe(f"{k.key_id}  {k.service:<24} created {k.created}{scope}"
                           + ("  REVOKED" if k.revoked else "")))
    except apikeys.KeysFileError as exc:
        raise UsageError(str(exc)) from None
    return EXIT_OK


def add_apikey(sub: Any) -> None:
    p = sub.add_parser("apikey", help="create, revoke and list ingest API keys")
    p.add_argument("action", choices=("create", "revoke", "list"))
    p.add_argument("key_id", nargs="?", help="with revoke: the key's id")
    p.add_argument("--keys-file", required=True, help="the collector's --api-keys file; "
                   "create and revoke are sealed as admin actions by the collector using it")
    p.add_argument("--service", help="with create: the service the key may write as")
    p.add_argument("--task-prefix", action="append", metavar="PREFIX",
                   help="with create: the key may only write records whose task id starts "
                        "with PREFIX (repeatable; default: any task)")
    p.set_defaults(func=cmd_apikey)


# ------------------------------------------------------------------ user

_NEEDS = {"add": "USERNAME", "passwd": "USERNAME", "role": "USERNAME", "disable": "USERNAME",
          "enable": "USERNAME", "remove": "USERNAME", "token-create": "NAME",
          "token-revoke": "the token's ID (see `aitrail user tokens`)"}


def _check_user_args(args: argparse.Namespace) -> None:
    if args.action in _NEEDS and not args.target:
        raise UsageError(f"{args.action} needs {_NEEDS[args.action]}")
    if args.action == "role" and not args.value:
        raise UsageError("role needs USERNAME ROLE")
    if args.action != "role" and args.value:
        raise UsageError(f"{args.action} takes one argument, not {args.value!r}")
    if args.action in ("add", "token-create") and not args.role:
        raise UsageError(f"{args.action} needs --role (auditor, analyst or admin)")
    if args.action == "token-create" and not args.owner:
        raise UsageError("token-create needs --owner (the existing console user the token "
                         "acts for)")


def cmd_user(args: argparse.Namespace) -> int:
    _need_collector_extra("managing console users")
    from aitrail_collector.web.auth.accounts import AccountError, Accounts
    path = _users_path(args)
    _check_user_args(args)
    try:
        _user_action(Accounts(path), args, path)
    except AccountError as exc:
        raise UsageError(str(exc)) from None
    return EXIT_OK


def _user_action(accounts: Any, args: argparse.Namespace, path: str) -> None:
    # Names and owners come from the users file: shown escaped (aitrail.cli.output.safe).
    name, a = args.target, args.action
    if a == "add":
        accounts.add_user(name, _new_password(args), args.role)
        print(safe(f"added {name} ({args.role}) to {path}"))
        _seal_later(args, "user_added", f"user:{name}", role=args.role)
    elif a == "passwd":
        accounts.set_password(name, _new_password(args))
        print(safe(f"changed the password of {name}; their console sessions end"))
        _seal_later(args, "password_changed", f"user:{name}")
    elif a == "role":
        accounts.set_role(name, args.value)
        print(safe(f"{name} is now {args.value}"))
        _seal_later(args, "role_changed", f"user:{name}", role=args.value)
    elif a in ("disable", "enable", "remove"):
        revoked = getattr(accounts, f"{a}_user")(name)
        print(safe(f"{a}d {name}" + (f"; revoked their token(s) {', '.join(revoked)}"
                                     if revoked else "")))
        _seal_later(args, {"disable": "user_disabled", "enable": "user_enabled",
                           "remove": "user_removed"}[a], f"user:{name}",
                    **({"tokens_revoked": ",".join(revoked)} if revoked else {}))
    elif a == "list":
        for u in accounts.users():
            print(safe(f"{u['username']:<24} {u['role']:<8} created {u['created']}")
                  + ("  DISABLED" if u["disabled"] else ""))
    elif a == "token-create":
        days = {} if args.expires_days is None else {"expires_days": args.expires_days}
        token_id, secret = accounts.create_token(name, args.role, args.owner, **days)
        expires = next(t["expires"] for t in accounts.tokens() if t["token_id"] == token_id)
        print(secret)
        sys.stderr.write(safe(f"Token {token_id} ({args.role}, for {args.owner}, expires "
                              f"{expires}): store it now, only its hash is kept.") + "\n")
        _seal_later(args, "token_created", f"token:{token_id}", name=name, role=args.role,
                    owner=args.owner, expires=expires)
    elif a == "token-revoke":
        accounts.revoke_token(name)
        print(safe(f"revoked token {name}"))
        _seal_later(args, "token_revoked", f"token:{name}")
    else:
        for t in accounts.tokens():
            state = ("  REVOKED" if t["revoked"] else "  EXPIRED" if t["expired"] else
                     "  OWNER DISABLED" if not t["owner_active"] else "")
            print(safe(f"{t['token_id']}  {t['name']:<24} {t['role']:<8} owner {t['owner']} "
                       f"created {t['created']} expires {t['expires']}{state}"))


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


def add_user(sub: Any) -> None:
    p = sub.add_parser("user", help=_help("manage console users (roles, passwords) and JSON "
                                          "API tokens"))
    p.add_argument("action", choices=("add", "passwd", "role", "disable", "enable", "remove",
                                      "list", "token-create", "token-revoke", "tokens"))
    p.add_argument("target", nargs="?", help="USERNAME; with token-create the token's NAME; "
                   "with token-revoke its ID")
    p.add_argument("value", nargs="?", help="with role: the new ROLE")
    p.add_argument("--role", help="with add and token-create: auditor, analyst or admin")
    p.add_argument("--password-stdin", action="store_true",
                   help="with add and passwd: read the password from the first line of stdin")
    p.add_argument("--owner", help="with token-create (required): the existing, enabled "
                   "console user the token acts for; it is refused once they are disabled or "
                   "removed")
    p.add_argument("--expires-days", type=int, metavar="N",
                   help="with token-create: the token expires after N days (default 90)")
    p.add_argument("--users", metavar="FILE",
                   help="the users file (default <data dir>/console-users.json)")
    p.add_argument("--data-dir", help="default $AITRAIL_DATA_DIR, else ./aitrail-data")
    p.set_defaults(func=cmd_user)


# ------------------------------------------------------------------ erase

def cmd_erase(args: argparse.Namespace) -> int:
    from aitrail.cli.remote import NothingToErase
    try:
        result = backend(args).erase(task=args.task, record_id=args.record,
                                     reason=args.reason, actor=args.actor or os_user())
    except NothingToErase as exc:
        sys.stderr.write(f"aitrail erase: {safe(exc)}\n")
        return EXIT_FAILED
    if args.format == "json":
        import json
        json.dump(result, sys.stdout, indent=2, ensure_ascii=False)
        sys.stdout.write("\n")
        return EXIT_OK
    _print_erasure(result)
    return EXIT_OK


def _print_erasure(result: dict) -> None:
    # Every text from the ledger (the target names a task id) is shown escaped.
    if result["erased"] or not result["completed"]:
        print(f"Erased {int(result['payloads'])} payload(s) of {int(result['records'])} "
              f"record(s) of {safe(result['target'])}.")
    for red in result["redactions"]:
        print(safe(f"  sealed redaction record {red['record_id']} (chain {red['chain_id']}, "
                   f"seq {red['seq']})"))
    for e in result["erased"]:
        changed = f"  (did not match its commitment: {', '.join(e['modified'])})" \
            if e.get("modified") else ""
        print(safe(f"  record {e['record_id']} (seq {e['seq']}): {', '.join(e['payloads'])}"
                   f"{changed}"))
    if result["completed"]:
        print(f"  completed the earlier erasure of {len(result['completed'])} record(s)")
    if result.get("inactive_parts_left"):
        sys.stderr.write(f"aitrail erase: {result['inactive_parts_left']} replaced data part(s) "
                         "were still in use and remain on disk until the engine removes them\n")


def add_erase(sub: Any) -> None:
    p = sub.add_parser("erase", help="erase the payloads of a task or record (GDPR Art. 17) and "
                       "seal a redaction record; the chain still verifies")
    x = p.add_mutually_exclusive_group(required=True)
    x.add_argument("--task", help="every record of this task")
    x.add_argument("--record", metavar="RECORD_ID", help="this one record")
    p.add_argument("--reason", required=True, help="why (sealed in the redaction record)")
    p.add_argument("--actor", help="who asked for the erasure (default: your login name)")
    add_target(p)
    p.add_argument("--format", choices=("text", "json"), default="text")
    p.set_defaults(func=cmd_erase)
