"""Caller-thread cost of the SDK, against two baselines measured in the same run: a
bare OpenTelemetry span and Langfuse's ``@observe()`` decorator.

Every call is timed on its own with perf_counter_ns; the SDK is configured
against a real collector subprocess, so the background worker really builds,
redacts and sends records (competing with the caller for the GIL, as it would
in an application).

Langfuse (``pip install "langfuse>=5"``, in the ``bench`` extra) runs as
configured by default except that its span exporter throws the spans away and
its base URL is a closed loopback port, so nothing leaves the machine:
``@observe()`` still does its normal work on the caller's thread (an OTel span
through Langfuse's client, input and output serialised into span attributes).
Without langfuse installed the Langfuse case is skipped.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from typing import Callable, Optional

from _common import CollectorProcess, free_port, machine_line, percentile, print_table
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

import aitrail


class DiscardExporter(SpanExporter):
    """Counts the spans it is given and keeps the last one, then throws them away."""

    def __init__(self) -> None:
        self.exported = 0
        self.last = None

    def export(self, spans) -> SpanExportResult:
        self.exported += len(spans)
        if spans:
            self.last = spans[-1]
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass


ROUNDS = 5

# Targets of issue 6 for case a (small prompt, median).
TARGET_US = 10.0
TARGET_VS_OTEL = 0.5
TARGET_VS_LANGFUSE = 1 / 15

OTEL = "BASELINE otel span (BatchSpanProcessor, 1 attr)"
LANGFUSE = "BASELINE langfuse @observe() (input+output)"


def timed(fn: Callable[[], object], n: int) -> list[int]:
    """Nanoseconds of each of n calls of fn."""
    clock = time.perf_counter_ns
    out = [0] * n
    for i in range(n):
        t0 = clock()
        fn()
        out[i] = clock() - t0
    return out


def langfuse_setup(trivial: Callable[[str], str]):
    """(decorated function, its exporter, langfuse version), or None without langfuse."""
    try:
        import langfuse
        from langfuse import Langfuse, observe
    except ImportError:
        return None
    exporter = DiscardExporter()
    # A closed port: should anything but the exporter try to send, it fails on
    # this machine instead of reaching out.
    Langfuse(public_key="pk-lf-bench", secret_key="sk-lf-bench",
             base_url=f"http://127.0.0.1:{free_port()}", span_exporter=exporter)

    @observe()
    def classify(prompt: str) -> str:
        return trivial(prompt)

    return classify, exporter, getattr(langfuse, "__version__", "?")


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

        lf = langfuse_setup(trivial)

        small = "Customer says the invoice total is wrong, please classify."
        big = ("Ticket body: the customer reports a duplicated charge on the last invoice. "
               * 60)[:4096]
        cases: list[tuple[str, Callable[[], object], bool]] = [
            ("bare call, no instrumentation", lambda: trivial(small), False),
            (OTEL, lambda: otel_span(small), False),
        ]
        if lf is not None:
            lf_classify = lf[0]
            cases.append((LANGFUSE, lambda: lf_classify(small), False))
        cases += [
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

        otel = percentile(results[OTEL], 50)
        langfuse: Optional[float] = percentile(results[LANGFUSE], 50) if lf else None
        rows = []
        for name, ns in results.items():
            med = percentile(ns, 50)
            rows.append((name, f"{med / 1000:.2f}", f"{percentile(ns, 99) / 1000:.2f}",
                         f"{med / otel:.3f}x",
                         f"{med / langfuse:.4f}x (1/{langfuse / med:.0f})" if langfuse else "-"))
        print(f"bench_sdk: {per_round * ROUNDS} timed calls per case in {ROUNDS} rounds, "
              f"after {warmup} warm-up calls; {machine_line()}"
              + (f"; langfuse {lf[2]}" if lf else "; langfuse not installed, case skipped"))
        print_table("Caller-thread cost per call", ("case", "median us", "p99 us",
                                                    "median / otel span",
                                                    "median / langfuse @observe"), rows)

        a = percentile(results["a. model_call, small prompt"], 50)
        print(f"\nissue-6 targets, case a (median {a / 1000:.2f} us):")
        print(f"  <= {TARGET_US:g} us: {'met' if a / 1000 <= TARGET_US else 'NOT met'}")
        print(f"  <= {TARGET_VS_OTEL:g}x otel span: {a / otel:.3f}x, "
              f"{'met' if a / otel <= TARGET_VS_OTEL else 'NOT met'}")
        if langfuse:
            print(f"  <= 1/15 langfuse @observe: 1/{langfuse / a:.1f}, "
                  f"{'met' if a / langfuse <= TARGET_VS_LANGFUSE else 'NOT met'}")

        ok = aitrail.flush(60)
        stats = aitrail.stats()
        print(f"\naitrail.flush() -> {ok}; aitrail.stats() -> {stats}")
        expected = sum(emits for _, _, emits in cases) * ROUNDS * (per_round + warmup // ROUNDS)
        if stats.get("sent") != expected or stats.get("dropped") or stats.get("rejected"):
            print(f"WARNING: expected {expected} sent, none dropped or rejected")
        if lf is not None:
            from langfuse import get_client
            get_client().flush()
            exporter, last = lf[1], lf[1].last
            attrs = dict(last.attributes or {}) if last is not None else {}
            captured = ("langfuse.observation.input" in attrs
                        and "langfuse.observation.output" in attrs)
            print(f"langfuse: {exporter.exported} spans exported (discarded); last span "
                  f"{'carries' if captured else 'LACKS'} observation input and output")
            get_client().shutdown()
        aitrail.shutdown()
    finally:
        collector.stop()
        tmp.cleanup()


if __name__ == "__main__":
    main()
