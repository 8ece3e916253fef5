"""The store-reading commands, which need nothing but ``pip install aitrail``
with ``--url`` (and the collector extra for ``--data-dir`` / ``--clickhouse``):
query, timeline, export, verify, prove, verify-proof, keygen, summary."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from aitrail.cli.base import (
    EXIT_FAILED,
    EXIT_OK,
    UsageError,
    add_filters,
    add_target,
    backend,
    filter_params,
)
from aitrail.cli.output import describe_event, print_table, print_verify, safe
from aitrail.record.csv_format import csv_lines
from aitrail.verify.bundle import BundleError, archive_bundles, is_archive, verify_bundle
from aitrail.verify.checkpoint import CheckpointError, key_id, load_public_key, write_keypair


def cmd_query(args: argparse.Namespace) -> int:
    params = dict(filter_params(args), limit=str(args.limit), offset=str(args.offset),
                  order=args.order)
    result = backend(args).search(params)
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
    events = backend(args).timeline(args.task_id)
    if args.format == "json":
        json.dump(events, sys.stdout, indent=2, ensure_ascii=False)
        sys.stdout.write("\n")
        return EXIT_OK
    print(f"Task {safe(args.task_id)}: {len(events)} events")
    for ev in events:
        print()
        print("\n".join(describe_event(ev)))
    return EXIT_OK


def cmd_export(args: argparse.Namespace) -> int:
    chunks = backend(args).export_csv(filter_params(args))
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
    pinned = None
    if args.since_checkpoint:
        try:
            with open(args.since_checkpoint, encoding="utf-8", newline="") as fh:
                pinned = fh.read()
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError(f"--since-checkpoint: {exc}") from None
    report = backend(args).verify(from_checkpoint=args.from_checkpoint,
                                  public_key=args.public_key, anchor=args.anchor,
                                  since_checkpoint=pinned)
    if args.public_key:
        _check_key_id(report, args.public_key)
    if args.format == "json":
        json.dump(report, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print_verify(report)
    return EXIT_OK if report["ok"] else EXIT_FAILED


def _check_key_id(report: dict[str, Any], public_key_path: str) -> None:
    """A collector verified with its own key: it must be the key the user trusts."""
    try:
        want = key_id(load_public_key(public_key_path))
    except CheckpointError as exc:
        raise UsageError(f"--public-key: {exc}") from None
    for chain in report["chains"]:
        got = (chain.get("checkpoints") or {}).get("key_id")
        if got and got != want:
            report["ok"] = False
            report["findings"].append({
                "kind": "checkpoint_bad_signature", "chain_id": chain["chain_id"], "seq": 0,
                "record_id": "", "detail": f"the checkpoints are signed by key {got}, not by "
                f"the given key {want}"})


def cmd_keygen(args: argparse.Namespace) -> int:
    private, public = args.out + ".pem", args.out + ".pub"
    try:
        write_keypair(private, public)
    except OSError as exc:
        raise UsageError(f"{exc}") from None
    print(f"private key {private} (mode 0600: give it to the collector, --signing-key)")
    print(f"public key  {public} (key id {key_id(load_public_key(public))}: give it to "
          "verifiers)")
    return EXIT_OK


def cmd_prove(args: argparse.Namespace) -> int:
    text = backend(args).prove(args.record_id)
    if args.output:
        with open(args.output, "w", encoding="utf-8") as fh:
            fh.write(text)
        sys.stderr.write(safe(f"proof bundle for {args.record_id} written to {args.output}")
                         + "\n")
    else:
        sys.stdout.write(text)
    return EXIT_OK


def cmd_verify_proof(args: argparse.Namespace) -> int:
    """One bundle (``aitrail prove``), or a proof archive of several (a ZIP of bundles,
    as the console's task download: aitrail.verify.bundle.archive_bundles); every
    bundle must verify for exit 0."""
    try:
        key = load_public_key(args.public_key)
    except (CheckpointError, OSError) as exc:
        raise UsageError(f"--public-key: {exc}") from None
    try:
        with open(args.bundle, "rb") as fh:
            data = fh.read()
    except OSError as exc:
        raise UsageError(f"{args.bundle}: {exc}") from None
    if is_archive(data):
        try:
            members = archive_bundles(data)
        except BundleError as exc:
            print(safe(f"FAILED: {args.bundle}: {exc}"))
            return EXIT_FAILED
    else:
        try:
            members = [(args.bundle, data.decode("utf-8"))]
        except UnicodeDecodeError as exc:
            raise UsageError(f"{args.bundle}: {exc}") from None
    failed = 0
    for name, text in members:
        try:
            bundle = verify_bundle(text, key)
        except BundleError as exc:
            failed += 1
            print(safe(f"FAILED: {name}: {exc}"))
            continue
        print(safe(f"OK: record {bundle['record_id']} is record {bundle['seq']} of chain "
                   f"{bundle['chain_id']}, included in signed checkpoint of size "
                   f"{bundle['tree_size']}"))
    if len(members) > 1:
        print(safe(f"{'FAILED' if failed else 'OK'}: {len(members) - failed} of "
                   f"{len(members)} bundles in {args.bundle} verified"))
    return EXIT_FAILED if failed else EXIT_OK


def cmd_summary(args: argparse.Namespace) -> int:
    json.dump(backend(args).summary(), sys.stdout, indent=2)
    sys.stdout.write("\n")
    return EXIT_OK


def register(sub: Any) -> None:
    """Add the store-reading commands to the ``aitrail`` parser's subparsers."""
    p = sub.add_parser("query", help="search records")
    add_target(p)
    add_filters(p)
    p.add_argument("--limit", type=int, default=100)
    p.add_argument("--offset", type=int, default=0)
    p.add_argument("--order", choices=("asc", "desc"), default="asc", help="by time")
    p.add_argument("--format", choices=("table", "csv", "json"), default="table")
    p.set_defaults(func=cmd_query)

    p = sub.add_parser("timeline", help="every event of one task, in order")
    p.add_argument("task_id")
    add_target(p)
    p.add_argument("--format", choices=("text", "json"), default="text")
    p.set_defaults(func=cmd_timeline)

    p = sub.add_parser("export", help="export all matching records (CSV with a header row)")
    add_target(p)
    add_filters(p)
    p.add_argument("--format", choices=("csv",), default="csv")
    p.add_argument("-o", "--output", help="file to write (default stdout)")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("verify", help="recompute every hash, the sequence of every chain, and "
                       "check every signed checkpoint against the records and the anchor")
    add_target(p)
    p.add_argument("--format", choices=("text", "json"), default="text")
    p.add_argument("--from-checkpoint", type=int, metavar="N",
                   help="verify from checkpoint N on (records before it may have been dropped "
                        "by retention)")
    p.add_argument("--public-key", metavar="PEM",
                   help="the checkpoint signing key to trust (default, with --data-dir: "
                        "<dir>/signing-key.pub)")
    p.add_argument("--anchor", metavar="DIR|s3://BUCKET/PREFIX",
                   help="the anchor store to compare with (default, with --data-dir: <dir>/anchor)")
    p.add_argument("--since-checkpoint", metavar="FILE",
                   help="a signed checkpoint you kept (its text, e.g. from /api/v1/checkpoints): "
                        "any later history not consistent with it, truncation included, is a "
                        "finding")
    p.set_defaults(func=cmd_verify)

    p = sub.add_parser("keygen", help="make an Ed25519 key pair for signing checkpoints")
    p.add_argument("--out", default="aitrail-signing-key",
                   help="path prefix: writes PREFIX.pem (private) and PREFIX.pub (public)")
    p.set_defaults(func=cmd_keygen)

    p = sub.add_parser("prove", help="write a self-contained proof bundle for one record")
    p.add_argument("record_id")
    add_target(p)
    p.add_argument("-o", "--output", help="file to write (default stdout)")
    p.set_defaults(func=cmd_prove)

    p = sub.add_parser("verify-proof", help="check a proof bundle offline (exit 0 valid, 1 not)")
    p.add_argument("bundle", help="the bundle file written by `aitrail prove`, or a proof "
                   "archive (a ZIP of bundles, the console's task download)")
    p.add_argument("--public-key", required=True, metavar="PEM",
                   help="the collector's checkpoint public key")
    p.set_defaults(func=cmd_verify_proof)

    p = sub.add_parser("summary", help="records per type, override rate, chain heads (JSON)")
    add_target(p)
    p.set_defaults(func=cmd_summary)
