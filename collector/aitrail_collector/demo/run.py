"""``aitrail demo``: a collector plus the triage bot of ``scenario``, in one process.

Everything goes the way it would in production: the bot is instrumented with
``aitrail`` and OpenTelemetry, its records travel over gRPC to a collector
started in this process, and the summary is read back from the sealed ledger
(and verified) rather than from the bot's own counters.
"""

from __future__ import annotations

import argparse
import os
import random
import shlex
import time
from typing import Optional, Sequence

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import Tracer

import aitrail
from aitrail_collector.app import Collector, stop_on_signals
from aitrail_collector.audit.verify import verify_store
from aitrail_collector.demo.scenario import (
    DEMO_REDACTION_KEY,
    PROMPT_TEMPLATE_ID,
    SERVICE,
    SERVICE_VERSION,
    VARIANTS,
    Outcome,
    Ticket,
    _model_functions,
    handle_ticket,
    make_tickets,
)
from aitrail_collector.store import dashboards
from aitrail_collector.store import queries as query
from aitrail_collector.store.client import Store

# ------------------------------------------------------------------ running it

def _next_ticket_number(store: Store) -> int:
    # Continue numbering after earlier runs in the same store, so a ticket id
    # never names two different tickets.
    return query.highest_task_number(store, "T-") + 1


def _tracer() -> tuple[TracerProvider, Tracer]:
    # A local provider rather than the global one: the global can be set only
    # once per process. No exporter: the spans exist to give records trace ids.
    provider = TracerProvider(resource=Resource.create({"service.name": SERVICE,
                                                        "service.version": SERVICE_VERSION}))
    return provider, provider.get_tracer("aitrail.demo")


def run_scenario(tickets: Sequence[Ticket], rng: random.Random) -> list[Outcome]:
    provider, tracer = _tracer()
    models = {v.prompt_version: _model_functions(v) for v in VARIANTS}
    try:
        return [handle_ticket(t, rng, tracer, models) for t in tickets]
    finally:
        provider.shutdown()


def _delivery_problems(flushed: bool) -> list[str]:
    stats = aitrail.stats()
    problems = [f"{stats[k]} record(s) {k}" for k in ("dropped", "rejected", "pending")
                if stats.get(k)]
    if not flushed:
        problems.append("flush timed out")
    return problems


# ------------------------------------------------------------------ printing

def _print_summary(collector: Collector, summary: dict, report: dict, earlier: int) -> None:
    print("\nLedger summary (read back from the store)")
    if earlier:
        print(f"  (the store already held {earlier} records from earlier runs; "
              "the totals include them)")
    print("  Records by event type")
    for kind, n in summary["by_type"].items():
        print(f"    {kind:<18} {n:>6}")
    print(f"    {'total':<18} {summary['records']:>6}")
    print("  Reviews by decision")
    for decision, n in summary["reviews"].items():
        if n or decision != "none":
            print(f"    {decision:<18} {n:>6}")
    rate = summary["override_rate"]
    print(f"  Override rate        {_pct(rate)}   (reject + modify) / decided reviews")
    for v in dashboards.override_by_variant(collector.store):
        print(f"    {v['model']} {v['model_version']}, prompt {PROMPT_TEMPLATE_ID}@"
              f"{v['prompt_version']}:  {_pct(v['override_rate'])} of {v['decided']} reviews")
    _print_verification(report)
    for chain in summary["chains"]:
        seq, head_hash = collector.store.head(chain["chain_id"])
        print(f"  Chain head           {chain['chain_id']}  seq {seq}  {head_hash.hex()}")


def _pct(rate: Optional[float]) -> str:
    return "n/a" if rate is None else f"{rate * 100:.1f}%"


def _print_verification(report: dict) -> None:
    if report["ok"]:
        cps = sum((c.get("checkpoints") or {}).get("checkpoints", 0) for c in report["chains"])
        print(f"  Verification         OK: {report['records']} records in "
              f"{len(report['chains'])} chain(s), every hash recomputed, {cps} signed "
              f"checkpoint(s) checked against the records and the anchor "
              f"({report['seconds']} s)")
        return
    print(f"  Verification         FAILED: {len(report['findings'])} finding(s) in "
          f"{report['records']} records")
    for f in report["findings"][:10]:
        print(f"    {f['kind']} seq={f['seq']}: {f['detail']}")


def _target_flags(collector: Collector) -> str:
    if collector.data_dir:
        return f"--data-dir {shlex.quote(collector.data_dir)}"
    return f"--clickhouse {shlex.quote(collector.store.dsn)}"


def _print_commands(collector: Collector, example: Outcome, serving: bool) -> None:
    what = " -> ".join(example.decisions) + (", escalated" if example.escalated else "")
    print(f"\nLook at what it wrote; ticket {example.ticket_id} is a good start ({what}).")
    print("(Inside this repository the command is .venv/bin/aitrail.)")
    targets = []
    if serving and collector.url:
        targets.append(("while the collector runs:", f"--url {collector.url}"))
    label = "any time (a running collector answers for its store):" if serving \
        else "the collector has stopped; read the store directly:"
    targets.append((label, _target_flags(collector)))
    task = example.ticket_id
    first = query.search(collector.store, query.Filters(task=task, limit=1), payloads=False)
    record_id = first[0]["record_id"] if first else "RECORD_ID"
    for label, flags in targets:
        print(f"  {label}")
        print(f"    aitrail query --task {task} {flags}")
        print(f"    aitrail timeline {task} {flags}")
        print(f"    aitrail query --type review --reviewer rev-grace {flags}")
        print(f"    aitrail export --since 1d -o audit.csv {flags}")
        print(f"    aitrail verify {flags}")
        print(f"    aitrail summary {flags}")
        print(f"    aitrail prove {record_id} -o proof.json {flags}")
    if collector.data_dir:
        pub = shlex.quote(os.path.join(collector.data_dir, "signing-key.pub"))
        print("  and, anywhere, with nothing but the bundle and the public key:")
        print(f"    aitrail verify-proof proof.json --public-key {pub}")


def _example_ticket(outcomes: Sequence[Outcome]) -> Outcome:
    # An escalated, corrected ticket with PII makes the most instructive timeline.
    for predicate in (lambda o: o.escalated and "modify" in o.decisions and o.has_pii,
                      lambda o: o.escalated, lambda o: True):
        for o in outcomes:
            if predicate(o):
                return o
    raise ValueError("no tickets")


# ------------------------------------------------------------------ entry point

def run_demo(collector: Collector, args: argparse.Namespace) -> int:
    """Run the scenario against ``collector`` (started by the ``demo`` command), print
    what the ledger holds, then serve until a signal unless ``--no-serve``."""
    try:
        return _run(collector, args)
    except BaseException:
        # Ctrl-C or a bug mid-scenario: release the store for the next run.
        aitrail.shutdown(timeout=1.0)
        collector.stop(grace=1.0)
        raise


def _run(collector: Collector, args: argparse.Namespace) -> int:
    print(f"aitrail demo: a support-ticket triage bot, {args.tasks} tickets (seed {args.seed})")
    print(f"  data directory  {collector.data_dir or collector.store.dsn}")
    print(f"  gRPC ingest     {collector.grpc_endpoint}")
    if collector.url:
        print(f"  console         {collector.url}/   (open it in a browser)")
        print(f"  HTTP API        {collector.url}/api/v1   (OpenAPI: {collector.url}/docs)")
    earlier = collector.ledger.head_seq
    aitrail.configure(endpoint=collector.grpc_endpoint, service=SERVICE,
                      service_version=SERVICE_VERSION, environment="demo",
                      redaction_key=DEMO_REDACTION_KEY)
    rng = random.Random(args.seed)
    tickets = make_tickets(args.tasks, rng, _next_ticket_number(collector.store))
    print(f"\nTriaging tickets {tickets[0].ticket_id}..{tickets[-1].ticket_id} ...", end="",
          flush=True)
    started = time.perf_counter()
    outcomes = run_scenario(tickets, rng)
    problems = _delivery_problems(aitrail.flush(timeout=60))
    sent = aitrail.stats().get("sent", 0)
    aitrail.shutdown()
    print(f" done in {time.perf_counter() - started:.1f} s ({sent} records sent over gRPC)")
    for problem in problems:
        print(f"WARNING: {problem}; the ledger is missing records from this run")
    signed = collector.checkpointer.issue(force=True)  # sign what this run wrote
    report = verify_store(collector.store, trust=collector.trust())
    _print_summary(collector, query.summary(collector.store), report, earlier)
    cp = signed.checkpoint
    print(f"  Signed checkpoint    #{cp.number} of chain {cp.origin}: {cp.size} records, key "
          f"{cp.key_id}, copy in {collector.anchor.describe()}")
    _print_commands(collector, _example_ticket(outcomes), serving=not args.no_serve)
    code = 0 if report["ok"] and not problems else 1
    if args.no_serve:
        collector.stop()
        return code
    if collector.url:
        who = ("sign in with an account made by `aitrail user add`"
               if collector.accounts.has_users() else
               "no account exists yet, so this machine is served without sign-in; "
               "`aitrail user add NAME --role admin` turns sign-in on")
        print(f"\nThe console is at {collector.url}/ ({who}).")
    stop = stop_on_signals()  # before saying so: a signal from here on stops it cleanly
    print("\nCollector running; press Ctrl-C to stop.", flush=True)
    collector.serve_forever(stop)
    last = collector.checkpointer.last
    if last is not None:
        print(f"Collector stopped; closing checkpoint #{last.checkpoint.number} covers "
              f"{last.checkpoint.size} records.", flush=True)
    return code
