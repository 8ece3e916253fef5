"""Caller-thread cost of the SDK, against a bare OpenTelemetry span measured in the same run.

Every call is timed on its own with perf_counter_ns; the SDK is configured
against a real collector subprocess, so the background worker really builds,
redacts and sends records (competing with the caller for the GIL, as it would
in an application).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from typing import Callable

import aitrail
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

from _common import CollectorProcess, machine_line, percentile, print_table


class DiscardExporter(SpanExporter):
    def export(self, spans) -> SpanExportResult:
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass


ROUNDS = 5


def timed(fn: Callable[[], object], n: int) -> list[int]:
    """Nanoseconds of each of n calls of fn."""
    clock = time.perf_counter_ns
    out = [0] * n
    for i in range(n):
        t0 = clock()
        fn()
        out[i] = clock() - t0
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="5k calls per case instead of 20k")
    ap.add_argument("--calls", type=int, default=None)
    args = ap.parse_args()
    n = args.calls or (5_000 if args.quick else 20_000)
    warmup = max(1_000, n // 10)

    tmp = tempfile.TemporaryDirectory(prefix="aitrail-bench-sdk-")
    collector = CollectorProcess(f"{tmp.name}/data")
    try:
        aitrail.configure(endpoint=collector.endpoint, service="bench-sdk",
                          redaction_key="bench-redaction-key")

        def trivial(prompt: str) -> str:
            return "billing"

        @aitrail.model_call(model="gpt-4o", prompt_version="v3")
        def classify(prompt: str) -> str:
            return trivial(prompt)

        provider = TracerProvider()
        provider.add_span_processor(BatchSpanProcessor(DiscardExporter()))
        tracer = provider.get_tracer("bench")

        def otel_span(prompt: str) -> str:
            with tracer.start_as_current_span("x", attributes={"model": "gpt-4o"}):
                return trivial(prompt)

        def review() -> None:
            with aitrail.review(reviewer="alice") as r:
                r.approve(rationale="looks right")

        small = "Customer says the invoice total is wrong, please classify."
        big = ("Ticket body: the customer reports a duplicated charge on the last invoice. "
               * 60)[:4096]
        cases: list[tuple[str, Callable[[], object], bool]] = [
            ("bare call, no instrumentation", lambda: trivial(small), False),
            ("BASELINE otel span (BatchSpanProcessor, 1 attr)", lambda: otel_span(small), False),
            ("a. model_call, small prompt", lambda: classify(small), True),
            ("b. model_call, 4 KB prompt", lambda: classify(big), True),
            ("c. review approve", review, True),
        ]
        # Cases take turns in rounds, so drift of a shared VM hits all of them alike.
        results: dict[str, list[int]] = {name: [] for name, _, _ in cases}
        per_round = n // ROUNDS
        with aitrail.task("T-bench"):
            for _ in range(ROUNDS):
                for name, fn, emits in cases:
                    timed(fn, warmup // ROUNDS)
                    aitrail.flush()  # start each case with an empty queue
                    results[name] += timed(fn, per_round)
        provider.shutdown()
        for ns in results.values():
            ns.sort()

        base = percentile(results[cases[1][0]], 50)
        rows = []
        for name, ns in results.items():
            med = percentile(ns, 50)
            rows.append((name, f"{med / 1000:.2f}", f"{percentile(ns, 99) / 1000:.2f}",
                         f"{med / base:.2f}x"))
        print(f"bench_sdk: {per_round * ROUNDS} timed calls per case in {ROUNDS} rounds, "
              f"after {warmup} warm-up calls; {machine_line()}")
        print_table("Caller-thread cost per call", ("case", "median us", "p99 us",
                                                    "median / otel span"), rows)
        ok = aitrail.flush(60)
        stats = aitrail.stats()
        print(f"\naitrail.flush() -> {ok}; aitrail.stats() -> {stats}")
        expected = sum(emits for _, _, emits in cases) * ROUNDS * (per_round + warmup // ROUNDS)
        if stats.get("sent") != expected or stats.get("dropped") or stats.get("rejected"):
            print(f"WARNING: expected {expected} sent, none dropped or rejected")
        aitrail.shutdown()
    finally:
        collector.stop()
        tmp.cleanup()


if __name__ == "__main__":
    main()
