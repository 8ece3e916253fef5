"""Generate a large, properly sealed store for the query and storage benchmarks.

The records follow the demo's support-ticket triage (``aitrail demo``), at scale:
tasks spread evenly over ``--days`` days ending when the store is generated,
``--reviewers`` reviewers (2% of them seniors who take escalations), and per task
roughly::

    task_created, model_call (classify; 3% retried after a timeout),
    model_call (draft a reply, 25%), data_access (23%), review,
    escalation + senior review (~25%), resolution          -> ~5.0 records/task

Every row is real: envelopes of the current version (v2) built with
``aitrail.verify.envelope.empty_envelope()``, delivered by one API key (the
sealed principal), sealed in receive order by ``aitrail.verify.chain.Sealer``
(real seq / prev / leaf / chain hashes), payloads with a random salt and their
commitment in the envelope (v2's free text -- escalation reason, final decision,
error message -- is a payload, as the collector's ``split_record`` makes it),
rows laid out by the collector's own ``stored_row`` (schema.ENVELOPE_COLUMNS) and
inserted column-oriented in batches of ``--batch`` rows into tables made by
``Store.ensure_schema()`` (the product DDL). Free text is redacted the way the SDK
would (``[EMAIL:...]`` tokens).

The store is cached: ``bench/out/store-<records>/`` holds the chDB directory
(``data/``) and ``meta.json``. A run finds an existing store with the right
record count and reuses it; ``--force`` regenerates.

    .venv/bin/python bench/gen_store.py              # 10M records (~15-25 min here)
    .venv/bin/python bench/gen_store.py --quick      # 1M records
    .venv/bin/python bench/gen_store.py --records 200000
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import random
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from _common import ROOT, machine_line

from aitrail.verify.chain import Sealer
from aitrail.verify.envelope import empty_envelope
from aitrail.verify.hashes import commitment
from aitrail_collector.demo import scenario as demo
from aitrail_collector.ledger.group_commit import stored_row
from aitrail_collector.store.client import Store
from aitrail_collector.store.schema import DB, ENVELOPE_COLUMNS, PAYLOAD_COLUMNS

OUT = ROOT / "bench" / "out"
CHAIN = "main"
SEC = 1_000_000_000
DAY = 86_400 * SEC
RECORDS_PER_TASK = 5.0  # the mix below averages ~5.0


def store_dir(records: int) -> Path:
    return OUT / f"store-{records}"


def read_meta(records: int) -> dict | None:
    path = store_dir(records) / "meta.json"
    return json.loads(path.read_text()) if path.exists() else None


# ---------------------------------------------------------------- the records

class Gen:
    """Builds the tasks' events (envelope dict + payload list) in time order."""

    def __init__(self, seed: int, tasks: int, reviewers: int, days: int, end_ns: int):
        self.rng = random.Random(seed)
        self.tasks, self.days = tasks, days
        self.start_ns = end_ns - days * DAY
        self.step = days * DAY // tasks
        n_senior = max(1, reviewers // 50)
        self.seniors = [f"rev-{k:05d}" for k in range(n_senior)]
        self.reviewers = [f"rev-{k:05d}" for k in range(n_senior, reviewers)]
        self.hosts = [f"triage-{self.rng.getrandbits(20):05x}-{k}" for k in range(12)]
        self.variants = demo.VARIANTS
        self.customers = [self._customer() for _ in range(50_000)]
        self.base = empty_envelope()
        # One API key delivers every record (what the collector seals as the principal).
        self.base.update(chain_id=CHAIN, service=demo.SERVICE, environment="production",
                         sdk_version="0.1.0", principal_kind="apikey",
                         principal_id=f"{self.rng.getrandbits(64):016x}")
        self.counts: dict[str, int] = {}

    # -- helpers
    def _tok(self, kind: str) -> str:
        return f"[{kind}:{self.rng.getrandbits(48):012x}]"

    def _customer(self) -> dict[str, str]:
        f = demo._customer_fields(self.rng)
        # What the SDK's default redaction leaves of the PII in free text.
        for key, kind in (("email", "EMAIL"), ("phone", "PHONE"), ("card", "CARD"),
                          ("ssn", "SSN")):
            f[key] = self._tok(kind)
        f["customer_id"] = f"C-{self.rng.randint(100000, 999999)}"
        return f

    def _uuid7(self, ns: int) -> str:
        value = ((ns // 1_000_000) << 80) | (0x7 << 76) | (self.rng.getrandbits(12) << 64) \
            | (0b10 << 62) | self.rng.getrandbits(62)
        h = f"{value:032x}"
        return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"

    def _env(self, kind: str, task: dict, start: int, end: int, parent: str) -> dict[str, Any]:
        env = self.base.copy()
        env.update(record_id=self._uuid7(start), event_type=kind, task_id=task["id"],
                   request_id=task["request_id"], trace_id=task["trace_id"],
                   span_id=f"{self.rng.getrandbits(64) | 1:016x}", parent_span_id=parent,
                   start_time=start, end_time=end,
                   # the collector receives a record shortly after it ends
                   received_time=end + self.rng.randint(5_000_000, 900_000_000),
                   service_version=task["service_version"], host=task["host"],
                   parameters={}, attributes={}, commitments={})
        self.counts[kind] = self.counts.get(kind, 0) + 1
        return env

    # -- one task
    def task(self, n: int) -> list[tuple[dict[str, Any], list[tuple[str, str]]]]:
        rng = self.rng
        t0 = self.start_ns + n * self.step + rng.randrange(self.step)
        cust = rng.choice(self.customers)
        category = rng.choice(demo.CATEGORIES)
        fields = dict(cust, order=f"ORD-{rng.randint(10000, 99999)}",
                      amount=f"${rng.randint(9, 480)}.00", date=f"March {rng.randint(1, 28)}")
        tier = rng.choices(("free", "pro", "enterprise"), (0.5, 0.35, 0.15))[0]
        channel = rng.choice(demo.CHANNELS)
        text = rng.choice(demo.TICKETS[category]).format(**fields)
        task = {"id": f"T-{n + 1:08d}", "request_id": f"req-{rng.getrandbits(48):012x}",
                "trace_id": f"{rng.getrandbits(128):032x}", "host": rng.choice(self.hosts),
                "service_version": "2.7.0" if t0 < self.start_ns + self.days * DAY // 2
                else "2.8.0"}
        root = f"{rng.getrandbits(64) | 1:016x}"
        out: list[tuple[dict[str, Any], list[tuple[str, str]]]] = []

        env = self._env("task_created", task, t0, t0, root)
        env["attributes"] = {"channel": channel, "customer_tier": tier, "language": "en",
                             "queue": "support-en"}
        out.append((env, []))

        # model call: classify (+ a retry after a timeout)
        variant = rng.choice(self.variants)
        wrong = rng.random() < variant.wrong_category_rate
        bad = not wrong and rng.random() < variant.bad_reply_rate
        cat = demo.CONFUSED_WITH[category] if wrong else category
        prio = f"P{max(1, demo.BASE_PRIORITY[cat] - (tier == 'enterprise'))}"
        reply = (demo.BAD_REPLY if bad else demo.GOOD_REPLIES[cat]).format(**fields)
        output = demo.triage_json(cat, prio, reply)
        prompt = demo.PROMPTS[variant.prompt_version].format(
            channel=channel, tier=tier, ticket_id=task["id"], text=text)
        streamed = channel == "chat" and rng.random() < 0.25
        conf = None if streamed else round(rng.uniform(0.38, 0.80) if wrong
                                           else rng.uniform(0.55, 0.98), 3)
        t = t0 + rng.randint(50, 2000) * 1_000_000
        if not streamed and rng.random() < 0.03:
            end = t + 30 * SEC
            env = self._model_env(task, t, end, root, variant, prompt)
            env.update(error_type="TimeoutError")
            out.append((env, [("error_message", "model endpoint did not answer within 30 s"),
                              ("input", prompt)]))
            t = end + rng.randint(10, 500) * 1_000_000
        end = t + rng.randint(400, 4000) * 1_000_000
        env = self._model_env(task, t, end, root, variant, prompt)
        env.update(confidence=conf, input_tokens=len(prompt) // 4 + 1,
                   output_tokens=len(output) // 4 + 1, streamed=int(streamed))
        payloads = [("input", prompt), ("output", output)]
        if conf is not None:
            payloads.append(("logprobs", json.dumps(
                [['{"category": "', -0.0004], [cat, round(-1 + conf, 6)],
                 ['", "priority": "', -0.0011], [prio, round(-0.5 + conf / 3, 6)]])))
        out.append((env, payloads))
        t = end

        if rng.random() < 0.25:  # a second call drafts a longer reply
            summary_prompt = (f"Summarise ticket {task['id']} for the reviewer in two sentences."
                              f"\n\n{text}\n\nProposed reply:\n{reply}\n")
            summary = (f"Customer ({tier}, via {channel}) reports a {category} issue"
                       f" about {fields['order']} ({fields['amount']}). The draft reply "
                       f"{'promises a refund' if bad else 'follows policy'}.")
            start = t + rng.randint(5, 300) * 1_000_000
            end = start + rng.randint(300, 2500) * 1_000_000
            env = self._model_env(task, start, end, root, self.variants[1], summary_prompt)
            env.update(prompt_template_id="summary", confidence=None,
                       input_tokens=len(summary_prompt) // 4 + 1,
                       output_tokens=len(summary) // 4 + 1)
            out.append((env, [("input", summary_prompt), ("output", summary)]))
            t = end

        # first review, after a wait in the queue
        reviewer = rng.choice(self.reviewers)
        t += rng.randint(60, 6 * 3600) * SEC
        if category in demo.ACCOUNT_CATEGORIES and rng.random() < 0.35:
            env = self._env("data_access", task, t, t + 40_000_000, root)
            env.update(actor=reviewer, resource=f"crm://customers/{cust['customer_id']}",
                       purpose="verify account ownership")
            out.append((env, []))
            t += rng.randint(5, 120) * SEC
        right = not wrong and not bad
        if right:
            first = "approve" if rng.random() < 0.95 else "modify"
        else:
            first = "modify" if rng.random() < 0.65 else "reject"
        t = self._review(out, task, t, root, reviewer, first, category, cat, bad, right,
                         output, fields, tier, senior=False)
        final = first
        if first == "reject" or (conf is not None and conf < demo.LOW_CONFIDENCE):
            senior = rng.choice(self.seniors)
            env = self._env("escalation", task, t, t, root)
            env.update(escalation_from=reviewer, escalation_to=senior)
            out.append((env, [("escalation_reason", demo._escalation_reason(first, conf))]))
            t += rng.randint(600, 4 * 3600) * SEC
            final = ("approve" if right else
                     "reject" if first == "reject" and rng.random() < 0.25 else "modify")
            t = self._review(out, task, t, root, senior, final, category, cat, bad, right,
                             output, fields, tier, senior=True)
        outcome, what = {"approve": ("reply_sent", "sent the model's reply"),
                         "modify": ("reply_sent_after_edit", "sent the reviewer's corrected reply"),
                         "reject": ("handled_manually", "routed to the manual reply queue")}[final]
        t += rng.randint(200, 3000) * 1_000_000
        env = self._env("resolution", task, t, t, root)
        p = f"P{max(1, demo.BASE_PRIORITY[category] - (tier == 'enterprise'))}"
        env.update(resolution_outcome=outcome)
        out.append((env, [("final_decision", f"category={category} priority={p}; {what}")]))
        return out

    def _model_env(self, task, start, end, root, variant, prompt) -> dict[str, Any]:
        env = self._env("model_call", task, start, end, f"{self.rng.getrandbits(64) | 1:016x}")
        env.update(provider=variant.provider, model=variant.model,
                   model_version=variant.model_version, prompt_template_id="triage",
                   prompt_version=variant.prompt_version,
                   parameters={"temperature": str(variant.temperature), "max_tokens": "400"})
        return env

    def _review(self, out, task, t, root, reviewer, decision, category, cat, bad, right,
                output, fields, tier, senior) -> int:
        rng = self.rng
        low, high = {"approve": (20, 90), "reject": (30, 180), "modify": (60, 360)}[decision]
        if senior:
            low, high = 120, 600
        spent = rng.randint(low, high) * 1000
        env = self._env("review", task, t, t + spent * 1_000_000, root)
        if cat != category:
            code, pol, why = ("wrong_category", "POL-TRIAGE-4.2",
                              f"This is a {category} ticket, not {cat}.")
        elif bad:
            code, pol, why = ("unsupported_promise", "POL-COMMS-2.1",
                              "The reply promises a refund and a discount nobody approved.")
        elif decision == "modify":
            code, pol, why = ("reply_tone", "POL-COMMS-1.3",
                              "Made the reply warmer and added the next step.")
        else:
            code, pol, why = "correct", "POL-TRIAGE-4.2", ""
        env.update(reviewer_id=reviewer, decision=decision, time_spent_ms=spent,
                   reason_code=code, policy_ref=pol)
        payloads = [("rationale", why)] if why else []
        if decision == "modify":
            reply = demo.GOOD_REPLIES[category].format(**fields)
            if right:
                reply += " We are sorry for the trouble, and thank you for your patience."
            p = f"P{max(1, demo.BASE_PRIORITY[category] - (tier == 'enterprise'))}"
            modified = demo.triage_json(category, p, reply)
            a, b = output.splitlines(), modified.splitlines()
            diff = ["--- model output", "+++ reviewer output", f"@@ -1,{len(a)} +1,{len(b)} @@"]
            for x, y in zip(a, b):
                diff += [" " + x] if x == y else ["-" + x, "+" + y]
            payloads += [("modified_output", modified), ("diff", "\n".join(diff))]
        out.append((env, payloads))
        return t + spent * 1_000_000


def sealed_batches(gen: Gen, records: int, batch: int
                   ) -> Iterator[tuple[list[list], list[list], int]]:
    """Column-oriented (envelope columns, payload columns, n) batches, sealed in
    receive order. Tasks are generated in start order; an event is released once
    no later task can receive anything earlier (the watermark)."""
    sealer = Sealer(CHAIN)
    urandom, pending, emitted, n = os.urandom, [], 0, 0
    env_rows: list[list] = []
    pay_rows: list[tuple] = []
    while emitted < records:
        chunk_end = n + 2_000
        while n < chunk_end:
            for env, payloads in gen.task(n):
                pending.append((env["received_time"], env, payloads))
            n += 1
        watermark = gen.start_ns + n * gen.step
        pending.sort(key=lambda x: x[0])
        cut = next((i for i, p in enumerate(pending) if p[0] > watermark), len(pending))
        ready, pending = pending[:cut], pending[cut:]
        for _, env, payloads in ready:
            if emitted >= records:
                break
            commitments = env["commitments"]
            for name, content in payloads:
                salt = urandom(16)
                digest = commitment(salt, content)
                commitments[name] = digest
                pay_rows.append((CHAIN, env["record_id"], name, env["start_time"], salt.hex(),
                                 content, digest))
            link = sealer.seal(env)
            env_rows.append(stored_row(link.seq, env, link.prev_hash, link.leaf_hash,
                                       link.chain_hash))
            emitted += 1
            if len(env_rows) >= batch:
                yield list(map(list, zip(*env_rows))), list(map(list, zip(*pay_rows))), n
                env_rows, pay_rows = [], []
    if env_rows:
        yield list(map(list, zip(*env_rows))), list(map(list, zip(*pay_rows))) if pay_rows \
            else [], n


def _produce(gen: Gen, records: int, batch: int, queue) -> None:
    for item in sealed_batches(gen, records, batch):
        queue.put(item)
    queue.put(None)


def generate(records: int, reviewers: int, days: int, seed: int, batch: int,
             force: bool = False) -> dict:
    """Build (or reuse) the store for `records`; returns its meta."""
    target = store_dir(records)
    meta = read_meta(records)
    if meta and meta.get("complete") and not force:
        return meta
    if target.exists():
        shutil.rmtree(target)
    # Owner-only, as the collector keeps a data directory (verify notes anything looser).
    os.umask(0o077)
    target.mkdir(parents=True)
    end_ns = time.time_ns()
    tasks = int(records / RECORDS_PER_TASK)
    gen = Gen(seed, tasks, reviewers, days, end_ns)
    # Generating and sealing (Python) runs in a child process, inserting here, so the
    # two overlap on two cores. Forked before chDB is opened in this process.
    queue: mp.Queue = mp.get_context("fork").Queue(maxsize=2)
    producer = mp.get_context("fork").Process(target=_produce, args=(gen, records, batch, queue),
                                              daemon=True)
    producer.start()
    store = Store(f"chdb://{target / 'data'}")
    store.ensure_schema()
    c = store.client
    t0 = time.perf_counter()
    done, last_print, insert_s = 0, t0, 0.0
    while True:
        item = queue.get()
        if item is None:
            break
        env_cols, pay_cols, n_tasks = item
        t1 = time.perf_counter()
        if pay_cols:
            c.insert(f"{DB}.payloads", pay_cols, column_names=PAYLOAD_COLUMNS,
                     column_oriented=True)
        c.insert(f"{DB}.envelopes", env_cols, column_names=ENVELOPE_COLUMNS,
                 column_oriented=True)
        insert_s += time.perf_counter() - t1
        done += len(env_cols[0])
        now = time.perf_counter()
        if now - last_print > 30 or done >= records:
            last_print = now
            print(f"  {done:>11,} records, {n_tasks:,} tasks, {now - t0:6.0f} s "
                  f"({done / (now - t0):,.0f} rec/s; insert {insert_s:.0f} s)", flush=True)
    producer.join()
    if producer.exitcode:
        sys.exit(f"the generating process failed (exit {producer.exitcode})")
    gen_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    for table in ("envelopes", "payloads"):
        c.command(f"OPTIMIZE TABLE {DB}.{table} FINAL")
    optimize_s = time.perf_counter() - t1
    count = int(store.query(f"SELECT count() FROM {DB}.envelopes").result_rows[0][0])
    assert count == records, (count, records)
    head = store.head(CHAIN)
    by_type = dict(store.query(f"SELECT event_type, count() FROM {DB}.envelopes"
                               " GROUP BY event_type ORDER BY event_type").result_rows)
    n_tasks = int(store.query(f"SELECT uniqExact(task_id) FROM {DB}.envelopes").result_rows[0][0])
    rev = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], check=False,
                         capture_output=True, text=True).stdout.strip()
    meta = {"records": records, "tasks": n_tasks, "reviewers": reviewers, "days": days,
            "seed": seed, "start_ns": gen.start_ns, "end_ns": end_ns, "chain": CHAIN,
            "head_seq": head[0], "by_type": by_type,
            "generate_s": round(gen_s, 1), "insert_s": round(insert_s, 1),
            "optimize_s": round(optimize_s, 1), "git": rev, "complete": True,
            "generated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    store.close()
    (target / "meta.json").write_text(json.dumps(meta, indent=1))
    for path, _, files in os.walk(target):  # the engine makes some files 0644 itself
        for name in [".", *files]:
            full = os.path.join(path, name)
            os.chmod(full, os.stat(full).st_mode & 0o700)
    return meta


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=int, default=10_000_000)
    ap.add_argument("--quick", action="store_true", help="1M records")
    ap.add_argument("--reviewers", type=int, default=5_000)
    ap.add_argument("--days", type=int, default=90)
    ap.add_argument("--seed", type=int, default=6)
    ap.add_argument("--batch", type=int, default=100_000, help="rows per insert")
    ap.add_argument("--force", action="store_true", help="regenerate even if cached")
    args = ap.parse_args()
    records = 1_000_000 if args.quick else args.records
    print(f"gen_store: {records:,} records -> {store_dir(records)}; {machine_line()}",
          flush=True)
    meta = generate(records, args.reviewers, args.days, args.seed, args.batch, args.force)
    print(json.dumps(meta, indent=1))


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    main()
