"""Soak: steady SDK load against a real collector; is memory bounded, is nothing lost?

1. A collector subprocess (``aitrail collector``, embedded chDB store, gRPC on
   loopback) and an SDK client subprocess (``delivery="durable"``, its spool in
   the temp dir) that emits model_call + review records at a steady rate for
   ``--seconds``, then flushes (spool included) and reports what it emitted.
2. Every ``--sample-every`` seconds the RSS of both processes is read from
   ``/proc/<pid>/status`` (VmRSS), with the client's delivery counters.
3. At the end the collector is stopped, ``aitrail verify`` runs on its store,
   and emitted must equal stored exactly.

Verdict per process: "bounded" when RSS growth over the second half of the
load phase is under ``--max-growth`` percent. Growth is the median of the last
three samples of that half over the median of its first three (a single-sample
spike, a GC or a merge, neither makes nor hides a trend); the peak and the
least-squares slope (MiB/min) are printed too.

The last line of output is one JSON object with every figure; the exit status
is 0 only when the client finished and flushed, emitted == stored, verify
passed, and both processes stayed bounded.

    .venv/bin/python bench/soak.py [--seconds 70] [--rate 2000] [--sample-every 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any, Optional

from _common import VENV_BIN, CollectorProcess, machine_line, print_table

HERE = os.path.dirname(os.path.abspath(__file__))


def rss_kb(pid: int) -> Optional[int]:
    """VmRSS of a live process in KiB, or None when it is gone."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


# ---------------------------------------------------------------- the SDK client process

TICKETS = ["My invoice total is wrong, I was charged twice for the March order.",
           "The parcel arrived damaged; I'd like a replacement or a refund please.",
           "How do I change the card on my subscription? The old one expired.",
           "Cancel my plan at the end of this billing period, thanks.",
           "Support: login fails with 'account locked' since yesterday evening."]
LABELS = ["billing", "shipping", "account", "cancellation", "technical"]


def client_main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="soak.py _client")
    ap.add_argument("--endpoint", required=True)
    ap.add_argument("--spool-dir", required=True)
    ap.add_argument("--seconds", type=float, required=True)
    ap.add_argument("--rate", type=float, required=True)
    ap.add_argument("--style", choices=("decorator", "context"), required=True)
    ap.add_argument("--progress-every", type=float, default=1.0)
    ap.add_argument("--flush-timeout", type=float, default=120.0)
    ap.add_argument("--first", type=int, default=0, help="number of the first task")
    args = ap.parse_args(argv)

    import aitrail
    aitrail.configure(endpoint=args.endpoint, service="soak", environment="soak",
                      delivery="durable", spool_dir=args.spool_dir,
                      redaction_key="soak-redaction-key")

    @aitrail.model_call(model="gpt-4o", model_version="2024-08-06", provider="openai",
                        prompt_template_id="triage", prompt_version="v4")
    def classify(ticket: str, n: int) -> str:
        label = LABELS[n % len(LABELS)]
        aitrail.current_call().record_output(label, confidence=0.5 + (n % 50) / 100,
                                             usage={"input_tokens": 40, "output_tokens": 1})
        return label

    def classify_cm(ticket: str, n: int) -> str:
        label = LABELS[n % len(LABELS)]
        with aitrail.model_call(model="gpt-4o", model_version="2024-08-06", provider="openai",
                                prompt_template_id="triage", prompt_version="v4") as call:
            call.record_input(ticket)
            call.record_output(label, confidence=0.5 + (n % 50) / 100,
                               usage={"input_tokens": 40, "output_tokens": 1})
        return label

    model = classify if args.style == "decorator" else classify_cm

    def pair(n: int) -> None:
        """One ticket: a model call, then a human review of its answer."""
        with aitrail.task(f"T-{n:08d}", request_id=f"req-{n:08d}"):
            label = model(TICKETS[n % len(TICKETS)] + f" (customer {n % 997})", n)
            with aitrail.review(reviewer=f"agent-{n % 13}", time_spent_ms=1000 + n % 5000) as r:
                if n % 10 == 0:
                    r.modify(output="refunds", rationale=aitrail.Rationale(
                        reason_code="wrong_category", policy_ref="POL-TRIAGE-4.2",
                        text=f"it is a refund request, not {label}"))
                elif n % 10 == 1:
                    r.reject(rationale="not enough context")
                else:
                    r.approve()

    def progress(**extra: Any) -> None:
        sys.stdout.write(json.dumps({"t": round(time.monotonic() - t0, 3), "emitted": emitted,
                                     "due": due, "stats": aitrail.stats(), **extra}) + "\n")
        sys.stdout.flush()

    emitted, due, pairs = 0, 0, args.first
    t0 = time.monotonic()
    end = t0 + args.seconds
    next_progress = t0
    while True:
        now = time.monotonic()
        if now >= end:
            break
        due = int((now - t0) * args.rate)
        # Rounds of at most 20 ms: a client that falls behind (its machine busy) still
        # reports and still stops at its end, instead of catching up forever.
        round_end = min(now + 0.02, end)
        while emitted + 2 <= due:  # pairs - first == emitted / 2
            pair(pairs)
            pairs += 1
            emitted += 2
            if emitted % 64 == 0 and time.monotonic() >= round_end:
                break
        if now >= next_progress:
            progress(phase="load")
            next_progress += args.progress_every
        if emitted + 2 > due:
            time.sleep(0.002)
    due = int(args.seconds * args.rate)
    load_seconds = time.monotonic() - t0
    progress(phase="flush")
    t1 = time.monotonic()
    flushed = aitrail.flush(args.flush_timeout)
    flush_seconds = time.monotonic() - t1
    stats = aitrail.stats()
    aitrail.shutdown()
    progress(phase="done", final=True, flushed=flushed, load_seconds=round(load_seconds, 3),
             flush_seconds=round(flush_seconds, 3), final_stats=stats)
    return 0 if flushed else 3


# ---------------------------------------------------------------- the driver

class ClientOutput(threading.Thread):
    """Reads the client's JSON progress lines; keeps the latest and the final one."""

    def __init__(self, stream) -> None:
        super().__init__(daemon=True)
        self.stream = stream
        self.latest: dict[str, Any] = {}
        self.final: Optional[dict[str, Any]] = None
        self.noise: list[str] = []

    def run(self) -> None:
        for line in self.stream:
            try:
                msg = json.loads(line)
            except ValueError:
                self.noise.append(line.rstrip())
                continue
            self.latest = msg
            if msg.get("final"):
                self.final = msg


def growth(times: list[float], samples: list[int]) -> dict[str, Any]:
    """min / max / growth of one process's RSS over the second half (KiB), and its
    least-squares slope (KiB per minute: informative, a slow steady leak shows here
    long before it reaches the growth limit)."""
    if len(samples) < 2:
        return {"samples": len(samples), "min_kb": None, "max_kb": None, "start_kb": None,
                "end_kb": None, "growth_pct": None, "peak_pct": None, "slope_kb_per_min": None}
    k = min(3, len(samples) // 2) or 1
    start = statistics.median(samples[:k])
    end = statistics.median(samples[-k:])
    slope = statistics.linear_regression(times, samples).slope * 60
    return {"samples": len(samples), "min_kb": min(samples), "max_kb": max(samples),
            "start_kb": start, "end_kb": end,
            "growth_pct": round((end - start) / start * 100, 2),
            "peak_pct": round((max(samples) - start) / start * 100, 2),
            "slope_kb_per_min": round(slope, 1)}


def mb(kb: Optional[float]) -> str:
    return "-" if kb is None else f"{kb / 1024:.1f}"


def run_cli(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([str(VENV_BIN / "aitrail"), *args], capture_output=True, text=True,
                          timeout=timeout)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=70, help="load duration (default 70)")
    ap.add_argument("--rate", type=float, default=2000, help="records per second (default 2000)")
    ap.add_argument("--sample-every", type=float, default=3, help="RSS sample interval, s")
    ap.add_argument("--style", choices=("decorator", "context"), default="decorator",
                    help="model calls through the decorator (default) or "
                         "`with aitrail.model_call(...) as call`")
    ap.add_argument("--max-growth", type=float, default=10.0,
                    help="percent RSS growth over the second half still called bounded")
    ap.add_argument("--flush-timeout", type=float, default=120)
    ap.add_argument("--clients", type=int, default=1,
                    help="SDK client processes sharing --rate (one client holds one request "
                         "in flight: about 6-7k records/s here)")
    args = ap.parse_args()
    if args.clients < 1:
        ap.error("--clients: at least 1")

    tmp = tempfile.TemporaryDirectory(prefix="aitrail-soak-")
    data_dir = f"{tmp.name}/data"
    collector = CollectorProcess(data_dir)
    client_log = open(f"{tmp.name}/client.log", "wb")
    clients = [subprocess.Popen(
        [sys.executable, os.path.join(HERE, "soak.py"), "_client", "--endpoint",
         collector.endpoint, "--spool-dir", f"{tmp.name}/spool-{k}", "--seconds",
         str(args.seconds), "--rate", str(args.rate / args.clients), "--style", args.style,
         "--flush-timeout", str(args.flush_timeout), "--first", str(k * 10_000_000)],
        stdout=subprocess.PIPE, stderr=client_log, text=True) for k in range(args.clients)]
    readers = [ClientOutput(c.stdout) for c in clients]
    for reader in readers:
        reader.start()

    print(f"soak: {args.rate:g} records/s (model_call + review, {args.style} style) for "
          f"{args.seconds:g} s from {args.clients} SDK client(s), durable delivery; RSS every "
          f"{args.sample_every:g} s; {machine_line()}", flush=True)
    samples: list[dict[str, Any]] = []
    problems: list[str] = []
    t0 = time.monotonic()
    deadline = t0 + args.seconds + args.flush_timeout + 60
    next_sample = t0
    def total(key: str) -> int:  # a counter of the clients' latest lines, summed
        return sum(r.latest.get("stats", {}).get(key, 0) for r in readers)
    try:
        while any(c.poll() is None for c in clients):
            now = time.monotonic()
            if now > deadline:
                problems.append("a client did not finish in time; killed")
                break
            if collector.proc.poll() is not None:
                problems.append(f"the collector died (exit {collector.proc.returncode})")
                break
            if now >= next_sample:
                sdk = [kb for kb in (rss_kb(c.pid) for c in clients) if kb is not None]
                samples.append({
                    "t": round(now - t0, 1),
                    "phase": min((r.latest.get("phase", "start") for r in readers),
                                 key=("start", "load", "flush", "done").index),
                    "emitted": sum(r.latest.get("emitted", 0) for r in readers),
                    "sent": total("sent"), "pending": total("pending"),
                    "spool_kb": total("spool_bytes") // 1024,
                    "collector_kb": rss_kb(collector.proc.pid),
                    # The largest client's: each process is held to the bound.
                    "sdk_kb": max(sdk) if sdk else None})
                next_sample += args.sample_every
            time.sleep(0.05)
        for c in clients:
            if c.poll() is None and problems:
                c.kill()
            c.wait(30)
        for reader in readers:
            reader.join(10)
    finally:
        for c in clients:
            if c.poll() is None:
                c.kill()
        client_log.close()
        samples.append({"t": round(time.monotonic() - t0, 1), "phase": "end",
                        "emitted": sum((r.final or r.latest).get("emitted", 0) for r in readers),
                        "sent": sum((r.final or {}).get("final_stats", {}).get("sent", 0)
                                    for r in readers),
                        "pending": 0, "spool_kb": 0,
                        "collector_kb": rss_kb(collector.proc.pid), "sdk_kb": None})
        collector_rc = collector.stop()

    finals = [r.final or {} for r in readers]
    emitted = sum(int(f.get("emitted", r.latest.get("emitted", 0)))
                  for f, r in zip(finals, readers))
    for k, c in enumerate(clients):
        if c.returncode != 0:
            problems.append(f"client {k} exited {c.returncode}")
        if not finals[k].get("flushed"):
            problems.append(f"client {k}'s flush did not complete")
    if collector_rc != 0:
        problems.append(f"the collector exited {collector_rc} on SIGTERM")

    verify = run_cli("verify", "--data-dir", data_dir, "--format", "json")
    try:
        report = json.loads(verify.stdout)
    except ValueError:
        report = {"ok": False, "records": None}
    summary = run_cli("summary", "--data-dir", data_dir)
    try:
        by_type = json.loads(summary.stdout).get("by_type", {})
    except ValueError:
        by_type = {}
    stored = report.get("records")
    verify_ok = verify.returncode == 0 and bool(report.get("ok"))
    if not verify_ok:
        problems.append(f"aitrail verify failed (exit {verify.returncode}): "
                        f"{(verify.stdout + verify.stderr)[-2000:]}")
    if stored != emitted:
        problems.append(f"emitted {emitted} != stored {stored}")

    # ---- report
    print_table("RSS over time (MiB); emitted/sent/pending/spool from the client's counters",
                ("t s", "phase", "emitted", "sent", "pending", "spool KiB", "collector",
                 "SDK client"),
                [(s["t"], s["phase"], s["emitted"], s["sent"], s["pending"], s["spool_kb"],
                  mb(s["collector_kb"]), mb(s["sdk_kb"])) for s in samples])
    half = [s for s in samples if s["phase"] == "load" and s["t"] >= args.seconds / 2]
    figures = {}
    for name, key in (("collector", "collector_kb"), ("sdk", "sdk_kb")):
        points = [(s["t"], s[key]) for s in half if s[key] is not None]
        g = growth([t for t, _ in points], [kb for _, kb in points])
        g["bounded"] = g["growth_pct"] is not None and g["growth_pct"] < args.max_growth
        figures[name] = g
    print_table(f"Second half of the load phase ({len(half)} samples, t >= {args.seconds / 2:g} s)",
                ("process", "min MiB", "max MiB", "start MiB", "end MiB", "growth %", "peak %",
                 "slope MiB/min", "verdict"),
                [(name, mb(g["min_kb"]), mb(g["max_kb"]), mb(g["start_kb"]), mb(g["end_kb"]),
                  g["growth_pct"], g["peak_pct"],
                  "-" if g["slope_kb_per_min"] is None else f"{g['slope_kb_per_min'] / 1024:+.2f}",
                  "bounded" if g["bounded"] else "NOT bounded")
                 for name, g in figures.items()])
    for name, g in figures.items():
        if not g["bounded"]:
            problems.append(f"{name} RSS grew {g['growth_pct']}% over the second half "
                            f"(limit {args.max_growth:g}%)")
    load_s = max((f.get("load_seconds") or args.seconds for f in finals), default=args.seconds)
    achieved = emitted / load_s if load_s else 0
    flushed = all(f.get("flushed") for f in finals)
    stats: dict[str, Any] = {}  # the clients' final counters, summed
    for f in finals:
        for key, value in f.get("final_stats", {}).items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                stats[key] = stats.get(key, 0) + value
    print(f"\nclients: emitted {emitted} records in {load_s:g} s ({achieved:.0f}/s, target "
          f"{args.rate:g}/s); flush {'done' if flushed else 'NOT done'} in "
          f"{max((f.get('flush_seconds', 0) for f in finals), default=0)} s; stats {stats}")
    print(f"store:  {stored} records {by_type}; emitted == stored: {stored == emitted}")
    print(f"verify: {'OK' if verify_ok else 'FAILED'} ({report.get('records')} records, "
          f"{len(report.get('findings', []))} findings, exit {verify.returncode})")
    verdict = "bounded" if all(g["bounded"] for g in figures.values()) else "NOT bounded"
    print(f"verdict: {verdict} (collector {figures['collector']['growth_pct']}%, "
          f"SDK {figures['sdk']['growth_pct']}% over the second half; limit {args.max_growth:g}%)")
    for p in problems:
        print(f"PROBLEM: {p}")
    noise = [line for r in readers for line in r.noise]
    if noise:
        print("client output that was not JSON:\n  " + "\n  ".join(noise[-10:]))
    result = {"ok": not problems, "emitted": emitted, "stored": stored,
              "emitted_equals_stored": stored == emitted, "verify_ok": verify_ok,
              "bounded": verdict == "bounded", "max_growth_pct": args.max_growth,
              "collector": figures["collector"], "sdk": figures["sdk"],
              "seconds": args.seconds, "rate_target": args.rate,
              "rate_achieved": round(achieved, 1), "style": args.style,
              "clients": args.clients, "flushed": flushed,
              "client_exit": next((c.returncode for c in clients if c.returncode), 0),
              "collector_exit": collector_rc, "client_stats": stats, "by_type": by_type,
              "problems": problems}
    print(json.dumps(result), flush=True)
    if problems:
        # Keep what is needed to look into it.
        keep = tempfile.mkdtemp(prefix="aitrail-soak-failed-")
        for name in ("client.log", "collector.log"):
            src = os.path.join(tmp.name, name)
            if os.path.exists(src):
                os.replace(src, os.path.join(keep, name))
        sys.stderr.write(f"soak failed; logs kept in {keep}\n")
    tmp.cleanup()
    return 0 if not problems else 1


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "_client":
        sys.exit(client_main(sys.argv[2:]))
    sys.exit(main())
