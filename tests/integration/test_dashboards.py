"""dashboards/: every view, the console's query functions and every Grafana panel,
run by the real engine on a store a real collector filled.

The scenario's override rate is known in advance: 40 decided reviews, 10 reject +
6 modify, so 16 / 40 = 0.4 overall; per model version 8/16, 4/14, 4/9 and one review
of a task without a model call; 4 reviews without a decision that must count
nowhere. Reviews fall on two UTC days a few days back (the collector takes records
up to 30 days old). Every other figure is also worked out here, in plain Python,
from the records as they were sent, following the rules the SQL files document.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections import Counter, defaultdict
from datetime import date, datetime, time, timedelta, timezone

import pytest
from support import PY, ROOT, CollectorProc, engine, make_record, stub

SQL_DIR = ROOT / "dashboards" / "sql"
GRAFANA = ROOT / "dashboards" / "grafana" / "aitrail.json"
VIEWS = sorted(p.stem for p in SQL_DIR.glob("*.sql"))

TODAY = datetime.now(timezone.utc).date()
D1, D2 = TODAY - timedelta(days=3), TODAY - timedelta(days=2)

VARIANTS = {
    "A": ("triage-llm", "2025-01", "triage", "v1"),
    "B": ("triage-llm", "2025-06", "triage", "v2"),
    "C": ("other-llm", "1.0", "triage", "v2"),
}
NO_VARIANT = ("", "", "", "")
DECIDED = ("approve", "reject", "modify")
REVIEWERS = ("rev-ann", "rev-bob", "rev-cho", "rev-dan")


def _ns(day: date, seconds: int) -> int:
    start = datetime.combine(day, time(0), tzinfo=timezone.utc)
    return int(start.timestamp()) * 10**9 + seconds * 10**9


class Scenario:
    """Records for the collector, made the way a raw gRPC client would send them."""

    def __init__(self) -> None:
        self.records: list = []
        self.clock = {D1: 8 * 3600, D2: 8 * 3600}  # seconds into each day
        self.n_reviews = 0

    def tick(self, day: date, seconds: int = 90) -> int:
        self.clock[day] += seconds
        return _ns(day, self.clock[day])

    def add(self, kind: str, task: str, t: int, **fields):
        rec = make_record(kind, task_id=task, start_time_unix_nano=t, **fields)
        self.records.append(rec)
        return rec

    def model_call(self, task: str, t: int, variant: str):
        model, version, template, prompt = VARIANTS[variant]
        return self.add("model_call", task, t, **{
            "model_call.model": model, "model_call.model_version": version,
            "model_call.prompt_template_id": template, "model_call.prompt_version": prompt,
            "model_call.input": "ticket text", "model_call.output": "category: billing"})

    def review(self, task: str, t: int, decision: str, reviewer: str = ""):
        self.n_reviews += 1
        k = self.n_reviews
        reviewer = reviewer or REVIEWERS[k % len(REVIEWERS)]
        # Spread out, with a slow review now and then so p99 differs from p90.
        spent = 600_000 + k if k % 11 == 0 else (k * 7919) % 50_000 + 1_000
        fields = {"review.reviewer_id": reviewer, "review.decision": decision,
                  "review.time_spent_ms": spent}
        if decision == "modify":
            fields["review.modified_output"] = "category: refund"
        return self.add("review", task, t, **fields)

    def escalate(self, task: str, t: int):
        return self.add("escalation", task, t, **{"escalation.from_reviewer": "rev-ann",
                                                  "escalation.to_reviewer": "rev-sam"})

    def resolve(self, task: str, t: int, outcome: str):
        return self.add("resolution", task, t, **{"resolution.outcome": outcome})


def build_scenario() -> Scenario:
    s = Scenario()
    plan = {  # decided reviews per variant, in the order their tasks are made
        "A": ["reject"] * 5 + ["modify"] * 3 + ["approve"] * 8,
        "B": ["reject"] * 2 + ["modify"] * 2 + ["approve"] * 10,
        "C": ["reject"] * 3 + ["modify"] * 1 + ["approve"] * 5,
    }

    # Special tasks first; each takes its reviews off the plan.
    # A retry, then a regeneration after the review: the first review belongs to the
    # latest call before it (A, not C); the second review to the regenerated call (B).
    t = s.tick(D1)
    s.add("task_created", "T-retry", t)
    s.model_call("T-retry", t + 1 * 10**9, "C")
    s.model_call("T-retry", t + 5 * 10**9, "A")
    s.review("T-retry", t + 60 * 10**9, plan["A"].pop(0))  # reject
    s.escalate("T-retry", t + 70 * 10**9)
    s.model_call("T-retry", t + 80 * 10**9, "B")
    s.review("T-retry", t + 90 * 10**9, plan["B"].pop(), reviewer="rev-sam")  # approve
    s.resolve("T-retry", t + 95 * 10**9, "reply_sent")
    s.tick(D1, 100)

    # Model call just before midnight, review just after: counted on the review's day.
    s.model_call("T-midnight", _ns(D2, -30), "B")
    s.review("T-midnight", _ns(D2, 30), plan["B"].pop())  # approve
    s.resolve("T-midnight", _ns(D2, 40), "reply_sent")

    # Every call started after the review (clock skew): the earliest of them (C).
    t = s.tick(D2)
    s.review("T-skew", t, plan["C"].pop())  # approve
    s.model_call("T-skew", t + 10 * 10**9, "C")
    s.model_call("T-skew", t + 20 * 10**9, "A")

    # Two calls with the same start time: the larger record_id wins; make that one B.
    t = s.tick(D2)
    first, second = s.model_call("T-tie", t, "A"), s.model_call("T-tie", t, "A")
    winner = max(first, second, key=lambda r: r.record_id)
    winner.model_call.model_version = VARIANTS["B"][1]
    winner.model_call.prompt_version = VARIANTS["B"][3]
    s.review("T-tie", t + 30 * 10**9, plan["B"].pop())  # approve

    # A task without any model call (a human-only task): kept, with model ''.
    t = s.tick(D1)
    s.review("T-human", t, "approve")
    s.resolve("T-human", t + 10 * 10**9, "reply_sent")

    # A task resolved twice: the latest resolution is its outcome.
    t = s.tick(D2)
    s.model_call("T-reopened", t, "C")
    s.review("T-reopened", t + 30 * 10**9, plan["C"].pop(0))  # reject
    s.escalate("T-reopened", t + 40 * 10**9)
    s.resolve("T-reopened", t + 50 * 10**9, "reply_sent")
    s.resolve("T-reopened", t + 90 * 10**9, "handled_manually")
    s.tick(D2, 100)

    # The ordinary tasks: call, review, and on a reject an escalation, resolved or not.
    outcomes = ("handled_manually", "reply_sent_after_edit", None)
    n = 0
    for variant, decisions in plan.items():
        for decision in decisions:
            n += 1
            day = D2 if n % 3 == 0 else D1
            task = f"T-{variant}-{n:03d}"
            t = s.tick(day)
            s.add("task_created", task, t)
            s.model_call(task, t + 2 * 10**9, variant)
            if n % 5 == 0:
                s.add("data_access", task, t + 3 * 10**9, **{
                    "data_access.actor": "rev-bob", "data_access.resource": "crm://c/1",
                    "data_access.purpose": "verify account"})
            s.review(task, t + 30 * 10**9, decision)
            if decision == "reject":
                s.escalate(task, t + 40 * 10**9)
                outcome = outcomes[n % 3]
            else:
                outcome = "reply_sent" if decision == "approve" else "reply_sent_after_edit"
            if outcome:
                s.resolve(task, t + 60 * 10**9, outcome)

    # Reviews left without a decision: in `undecided`, nowhere else.
    for i, variant in enumerate("ABCA"):
        day = (D1, D2)[i % 2]
        t = s.tick(day)
        s.model_call(f"T-none-{i}", t, variant)
        s.review(f"T-none-{i}", t + 20 * 10**9, "none")
    return s


# ------------------------------------------------------------------ expected figures

def _day(ns: int) -> str:
    return datetime.fromtimestamp(ns // 10**9, timezone.utc).date().isoformat()


def _variant(rec) -> tuple[str, str, str, str]:
    m = rec.model_call
    return (m.model, m.model_version, m.prompt_template_id, m.prompt_version)


def attributed(records) -> list[tuple[str, str, tuple]]:
    """(day, decision, variant) of each decided review, by the documented rule."""
    calls = defaultdict(list)
    for r in records:
        if r.event_type == "model_call" and r.task_id:
            calls[r.task_id].append(r)
    out = []
    for r in records:
        if r.event_type != "review" or r.review.decision not in DECIDED:
            continue
        t = r.start_time_unix_nano
        mine = calls.get(r.task_id, [])
        before = [c for c in mine if c.start_time_unix_nano <= t]
        if before:
            call = max(before, key=lambda c: (c.start_time_unix_nano, c.record_id))
        elif mine:
            call = min(mine, key=lambda c: (c.start_time_unix_nano, _neg(c.record_id)))
        else:
            call = None
        out.append((_day(t), r.review.decision, _variant(call) if call else NO_VARIANT))
    return out


def _neg(record_id: str) -> tuple:
    # Among calls after the review with equal start times the larger id wins too.
    return tuple(-b for b in record_id.encode())


def quantile_exact(values: list[int], q: float) -> int:
    """ClickHouse quantileExact: the value at 0-based position floor(q * n) of the
    sorted values (n - 1 for q >= 1); no interpolation."""
    ordered = sorted(values)
    return ordered[int(q * len(ordered)) if q < 1 else len(ordered) - 1]


def _rate(overrides: int, decided: int):
    return overrides / decided if decided else None


def _counts(rows) -> dict:
    c = Counter(decision for decision in rows)
    decided = c["approve"] + c["reject"] + c["modify"]
    overrides = c["reject"] + c["modify"]
    return {"decided": decided, "overrides": overrides, "approve": c["approve"],
            "reject": c["reject"], "modify": c["modify"],
            "override_rate": _rate(overrides, decided)}


class Expected:
    def __init__(self, records) -> None:
        self.records = records
        self.reviews = [r for r in records if r.event_type == "review"]
        self.decided = [r for r in self.reviews if r.review.decision in DECIDED]
        self.attributed = attributed(records)

    def override_daily(self, days=None) -> list[dict]:
        by_day = defaultdict(list)
        for r in self.reviews:
            by_day[_day(r.start_time_unix_nano)].append(r.review.decision)
        return [{"day": d, **_counts(ds), "undecided": ds.count("none")}
                for d, ds in sorted(by_day.items()) if days is None or d in days]

    def by_variant(self, key, days=None) -> dict:
        groups = defaultdict(list)
        for day, decision, variant in self.attributed:
            if days is None or day in days:
                groups[key(day, variant)].append(decision)
        return {k: _counts(v) for k, v in groups.items()}

    def times(self, days=None) -> dict[str, list[int]]:
        out = defaultdict(list)
        for r in self.decided:
            if days is None or _day(r.start_time_unix_nano) in days:
                out[r.review.reviewer_id].append(r.review.time_spent_ms)
        return out

    def percentiles(self, days=None) -> list[dict]:
        return [{"reviewer_id": who, "reviews": len(v), "p50_ms": quantile_exact(v, 0.5),
                 "p90_ms": quantile_exact(v, 0.9), "p99_ms": quantile_exact(v, 0.99)}
                for who, v in sorted(self.times(days).items())]

    def escalations(self) -> Counter:
        last = {}
        for r in self.records:
            if r.event_type == "resolution":
                key = (r.start_time_unix_nano, r.record_id)
                if r.task_id not in last or key > last[r.task_id][0]:
                    last[r.task_id] = (key, r.resolution.outcome)
        return Counter((_day(r.start_time_unix_nano),
                        last[r.task_id][1] if r.task_id in last else "unresolved")
                       for r in self.records if r.event_type == "escalation")

    def volume(self) -> Counter:
        return Counter((_day(r.start_time_unix_nano), r.event_type) for r in self.records)


# ------------------------------------------------------------------ the store

@pytest.fixture(scope="module")
def filled(tmp_path_factory):
    """A stopped collector's store holding the scenario; returns (data_dir, Expected)."""
    from aitrail.v1 import audit_pb2 as pb
    scenario = build_scenario()
    proc = CollectorProc(tmp_path_factory.mktemp("dash") / "store").start()
    try:
        client = stub(proc.grpc)
        records = scenario.records
        for i in range(0, len(records), 50):
            batch = records[i:i + 50]
            resp = client.Export(pb.ExportRequest(records=batch), timeout=60)
            assert resp.accepted == len(batch), resp.rejected
    finally:
        proc.stop()
    return proc.data_dir, Expected(scenario.records)


def test_scenario_has_the_override_rate_it_was_built_with(filled):
    _, exp = filled
    total = _counts([d for _, d, _ in exp.attributed])
    assert total == {"decided": 40, "overrides": 16, "approve": 24, "reject": 10,
                     "modify": 6, "override_rate": 0.4}
    by_version = exp.by_variant(lambda day, v: v[:2])
    assert {k: (c["decided"], c["overrides"]) for k, c in by_version.items()} == {
        VARIANTS["A"][:2]: (16, 8), VARIANTS["B"][:2]: (14, 4), VARIANTS["C"][:2]: (9, 4),
        ("", ""): (1, 0)}
    assert sum(r.review.decision == "none" for r in exp.reviews) == 4
    assert {day for day, _, _ in exp.attributed} == {D1.isoformat(), D2.isoformat()}


# ------------------------------------------------------------------ the SQL files

def test_every_file_is_one_view_over_envelopes_only():
    assert VIEWS == ["v_attributed_reviews", "v_escalations_daily", "v_override_by_variant",
                     "v_override_daily", "v_review_times", "v_reviewer_latency_daily",
                     "v_volume_daily"]
    for i, name in enumerate(VIEWS):
        text = (SQL_DIR / f"{name}.sql").read_text()
        code = "\n".join(line.split("--")[0] for line in text.splitlines()).strip()
        assert code.startswith(f"CREATE OR REPLACE VIEW aitrail.{name} AS\nSELECT"), name
        assert code.endswith(";") and code.count(";") == 1, name
        tables = set(re.findall(r"\baitrail\.(\w+)", code)) - {name}
        # Over envelopes, directly or through views of files sorted before it (the
        # order store.schema and clickhouse-client users create them in).
        assert tables and tables - set(VIEWS[:i]) <= {"envelopes"}, (name, tables)
        assert "payloads" not in text.lower(), name
        assert text.lstrip().startswith(f"-- {name}:"), "each file says what it shows"


def test_views_return_the_expected_figures(filled):
    data_dir, exp = filled
    V = "aitrail."
    period_filter = f"day BETWEEN toDate('{D1}') AND toDate('{TODAY}')"
    (daily, variants, times, latency, escalations, volume, period, kinds) = engine(
        data_dir,
        f"SELECT * FROM {V}v_override_daily ORDER BY day",
        f"SELECT * FROM {V}v_override_by_variant ORDER BY ALL",
        f"SELECT day, reviewer_id, decision, time_spent_ms FROM {V}v_review_times",
        f"SELECT * FROM {V}v_reviewer_latency_daily ORDER BY day, reviewer_id",
        f"SELECT * FROM {V}v_escalations_daily ORDER BY ALL",
        f"SELECT * FROM {V}v_volume_daily ORDER BY ALL",
        # A period re-aggregated from the daily rows: counts sum, the rate stays exact.
        f"SELECT sum(decided), sum(overrides), sum(overrides) / sum(decided)"
        f" FROM {V}v_override_daily WHERE {period_filter}",
        "SELECT name FROM system.tables WHERE database = 'aitrail' AND engine = 'View'"
        " ORDER BY name")
    assert [k[0] for k in kinds] == VIEWS

    # v_override_daily: per day, exactly; none-reviews only in `undecided`.
    expected_daily = exp.override_daily()
    assert [dict(zip(["day", "decided", "overrides", "approve", "reject", "modify",
                      "undecided", "override_rate"], row)) for row in daily] == [
        {k: e[k] for k in ("day", "decided", "overrides", "approve", "reject", "modify",
                           "undecided", "override_rate")} for e in expected_daily]
    assert sum(r[1] for r in daily) == 40 and sum(r[2] for r in daily) == 16
    assert sum(r[6] for r in daily) == 4
    assert period == [[40, 16, 0.4]]

    # v_override_by_variant: per day and variant, each review attributed by the rule.
    got = {(row[0], tuple(row[1:5])): row[5:] for row in variants}
    want = exp.by_variant(lambda day, v: (day, v))
    assert got == {k: [c["decided"], c["overrides"], c["approve"], c["reject"], c["modify"],
                       c["override_rate"]] for k, c in want.items()}
    by_prompt = defaultdict(lambda: [0, 0])
    for (day, v), (decided, overrides, *_) in got.items():
        by_prompt[v[3]][0] += decided
        by_prompt[v[3]][1] += overrides
    assert dict(by_prompt) == {"v1": [16, 8], "v2": [23, 8], "": [1, 0]}

    # v_review_times: one row per decided review, nothing else.
    assert sorted(times) == sorted(
        [_day(r.start_time_unix_nano), r.review.reviewer_id, r.review.decision,
         r.review.time_spent_ms] for r in exp.decided)

    # v_reviewer_latency_daily: exact percentiles per reviewer and day.
    want_latency = []
    for day in sorted({_day(r.start_time_unix_nano) for r in exp.decided}):
        for who, v in sorted(exp.times({day}).items()):
            want_latency.append([day, who, len(v), quantile_exact(v, 0.5),
                                 quantile_exact(v, 0.9), quantile_exact(v, 0.99), sum(v)])
    assert latency == want_latency

    # v_escalations_daily: per day and outcome of the task's latest resolution.
    assert {(d, o): n for d, o, n in escalations} == dict(exp.escalations())
    outcomes = Counter()
    for _, o, n in escalations:
        outcomes[o] += n
    assert sum(outcomes.values()) == 10  # one per rejected review
    assert outcomes["unresolved"] == 2 and "reply_sent" in outcomes
    assert {(d, o) for d, o, _ in escalations} >= {(D2.isoformat(), "handled_manually")}

    # v_volume_daily: records per day and type, all of them.
    assert {(d, k): n for d, k, n in volume} == dict(exp.volume())
    assert sum(n for _, _, n in volume) == len(exp.records)


def test_console_query_functions(filled):
    """The Python API, in a process of its own (one engine per process), on the same store."""
    data_dir, exp = filled
    script = (
        "import json, sys\n"
        "from datetime import date\n"
        "from aitrail_collector.store import dashboards as d\n"
        "from aitrail_collector.store.schema import create_views\n"
        "from aitrail_collector.store.client import Store\n"
        "store = Store('chdb://' + sys.argv[1])\n"
        "out = {'created': create_views(store.client)}\n"  # again: replacing is harmless
        "for name, since, until in (('all', sys.argv[2], sys.argv[3]),"
        " ('d2', sys.argv[4], sys.argv[4])):\n"
        "    a, b = date.fromisoformat(since), date.fromisoformat(until)\n"
        "    out[name] = {\n"
        "        'override_daily': d.override_daily(store, a, b),\n"
        "        'by_model': d.override_by_model(store, a, b),\n"
        "        'by_model_daily': d.override_by_model(store, a, b, daily=True),\n"
        "        'by_prompt': d.override_by_prompt_version(store, a, b),\n"
        "        'by_prompt_daily': d.override_by_prompt_version(store, a, b, daily=True),\n"
        "        'percentiles': d.review_time_percentiles(store, a, b),\n"
        "        'escalations': d.escalations_daily(store, a, b),\n"
        "        'volume': d.volume_by_type(store, a, b),\n"
        "        'volume_daily': d.volume_by_type(store, a, b, daily=True)}\n"
        "try:\n"
        "    d.override_daily(store, date(2026, 2, 1), date(2026, 1, 1))\n"
        "except ValueError as exc:\n"
        "    out['bad_period'] = str(exc)\n"
        "json.dump(out, sys.stdout)\n")
    proc = subprocess.run([PY, "-c", script, str(data_dir), D1.isoformat(), TODAY.isoformat(),
                           D2.isoformat()], capture_output=True, text=True, timeout=120,
                          cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["created"] == VIEWS
    assert out["bad_period"].startswith("since 2026-02-01 is after until")

    for name, days in (("all", None), ("d2", {D2.isoformat()})):
        got = out[name]
        assert got["override_daily"] == exp.override_daily(days), name

        def rows(key, label, daily=False, days=days):
            want = exp.by_variant(lambda day, v: (day,) + key(v) if daily else key(v), days)
            return sorted([{**({"day": k[0]} if daily else {}),
                            **dict(zip(label, k[1:] if daily else k)), **c}
                           for k, c in want.items()],
                          key=lambda r: tuple(str(r.get(x, "")) for x in ("day",) + label))

        model = ("model", "model_version")
        prompt = ("prompt_template_id", "prompt_version")
        assert got["by_model"] == rows(lambda v: v[:2], model), name
        assert got["by_model_daily"] == rows(lambda v: v[:2], model, daily=True), name
        assert got["by_prompt"] == rows(lambda v: v[2:], prompt), name
        assert got["by_prompt_daily"] == rows(lambda v: v[2:], prompt, daily=True), name
        assert got["percentiles"] == exp.percentiles(days), name

        esc = defaultdict(Counter)
        for (day, outcome), n in exp.escalations().items():
            if days is None or day in days:
                esc[day][outcome] += n
        assert got["escalations"] == [
            {"day": day, "escalations": sum(c.values()), "outcomes": dict(sorted(c.items()))}
            for day, c in sorted(esc.items())], name

        vol = Counter()
        for (day, kind), n in exp.volume().items():
            if days is None or day in days:
                vol[kind] += n
        assert got["volume"] == [{"event_type": k, "records": n}
                                 for k, n in sorted(vol.items(), key=lambda kv: (-kv[1], kv[0]))]
        assert sorted((r["day"], r["event_type"], r["records"]) for r in got["volume_daily"]) \
            == sorted((d, k, n) for (d, k), n in exp.volume().items()
                      if days is None or d in days)

    headline = out["all"]["by_model"]
    assert [(r["model"], r["model_version"], r["decided"], r["overrides"]) for r in headline] \
        == [("", "", 1, 0), ("other-llm", "1.0", 9, 4), ("triage-llm", "2025-01", 16, 8),
            ("triage-llm", "2025-06", 14, 4)]
    assert [(r["prompt_version"], r["override_rate"]) for r in out["all"]["by_prompt"]] \
        == [("", 0.0), ("v1", 0.5), ("v2", 8 / 23)]


# ------------------------------------------------------------------ Grafana

_MACROS = {
    # What grafana-clickhouse-datasource expands them to (pkg/macros), with literal bounds.
    "dateFilter": lambda col, a, b: (f"{col} >= toDate('{a.date()}') AND "
                                     f"{col} <= toDate('{b.date()}')"),
    "timeFilter": lambda col, a, b: (f"{col} >= toDateTime({int(a.timestamp())}) AND "
                                     f"{col} <= toDateTime({int(b.timestamp())})"),
}


def expand_macros(sql: str, start: datetime, end: datetime) -> str:
    sql = re.sub(r"\$__(dateFilter|timeFilter)\(([^()]+)\)",
                 lambda m: _MACROS[m.group(1)](m.group(2).strip(), start, end), sql)
    sql = sql.replace("$__fromTime", f"toDateTime({int(start.timestamp())})")
    return sql.replace("$__toTime", f"toDateTime({int(end.timestamp())})")


def _targets():
    board = json.loads(GRAFANA.read_text())
    panels = [p for p in board["panels"] if p["type"] != "row"]
    return board, [(p, t) for p in panels for t in p["targets"]]


def test_grafana_dashboard_is_built_on_the_views():
    board, targets = _targets()
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "grafana-clickhouse-datasource"
    assert len(targets) >= 6 and len({p["id"] for p, _ in targets}) == len(targets)
    used = set()
    for panel, target in targets:
        for ds in (panel["datasource"], target["datasource"]):
            assert ds == {"type": "grafana-clickhouse-datasource", "uid": "${datasource}"}
        sql = target["rawSql"]
        views = set(re.findall(r"\baitrail\.(\w+)", sql))
        assert views and views <= set(VIEWS), (panel["title"], views)
        assert "$__dateFilter(day)" in sql, panel["title"]
        assert target["format"] == (0 if panel["type"] == "timeseries" else 1), panel["title"]
        if panel["type"] == "timeseries":
            assert re.search(r"\bday AS time\b", sql), panel["title"]  # the time field
        used |= views
    # Every view is charted (v_attributed_reviews, one row per review, through
    # v_override_by_variant).
    assert used == set(VIEWS) - {"v_attributed_reviews"}


def test_grafana_panel_sql_runs_on_the_engine(filled):
    data_dir, exp = filled
    _, targets = _targets()
    start = datetime.combine(D1, time(0), tzinfo=timezone.utc)
    end = datetime.now(timezone.utc)
    statements = [expand_macros(t["rawSql"], start, end) for _, t in targets]
    for sql in statements:
        assert "$" not in sql, sql  # no macro or variable left unexpanded
    results = dict(zip((p["title"] for p, _ in targets), engine(data_dir, *statements)))
    for title, rows in results.items():
        assert rows, title
    assert results["Override rate per day"] == [
        [e["day"], e["override_rate"]] for e in exp.override_daily()]
    assert {r[0]: r[1] for r in results["Records by event type (selected period)"]} == dict(
        Counter(r.event_type for r in exp.records))
    percentiles = {r[0]: r[1:] for r in results["Review time by reviewer (selected period)"]}
    assert percentiles == {e["reviewer_id"]: [e["reviews"], e["p50_ms"], e["p90_ms"],
                                              e["p99_ms"]] for e in exp.percentiles()}
    # A period that starts on D2 leaves D1's reviews out.
    d2 = engine(data_dir, expand_macros(targets[0][1]["rawSql"],
                                        datetime.combine(D2, time(0), tzinfo=timezone.utc),
                                        end))[0]
    assert [r[0] for r in d2] == [D2.isoformat()]
