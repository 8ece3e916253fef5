"""The console's charts: the dashboards/ views' figures drawn server-side as SVG.

pygal renders each chart to inline SVG, so the page needs no script and no
network (the console is often used on locked-down machines), prints well, and a
browser test can read the rendered chart. Each chart comes with a sentence that
says how to read it and, where exact numbers matter, a table.
"""

from __future__ import annotations

import re
from datetime import date
from typing import Any, Optional

import pygal
from pygal.style import Style

from aitrail_collector.store import dashboards
from aitrail_collector.store.client import Store

STYLE = Style(background="white", plot_background="white", foreground="#1d2330",
              foreground_strong="#1d2330", foreground_subtle="#687185",
              colors=("#2456a6", "#b3261e", "#1f7a3f", "#9a6700", "#6b3fa0", "#00838f"),
              font_family="system-ui, sans-serif", title_font_size=14, label_font_size=12,
              major_label_font_size=12,
              legend_font_size=13)
OPTIONS = dict(style=STYLE, width=760, height=340, js=[], disable_xml_declaration=True,
               explicit_size=False, print_values=False, show_legend=True,
               legend_at_bottom=True, truncate_label=40)
MAX_BARS = 15


def _pct(rate: Optional[float]) -> Optional[float]:
    return None if rate is None else round(rate * 100, 1)


_SCRIPT = re.compile(r"<script\b.*?</script\s*>", re.S | re.I)


def _svg(chart: Any) -> str:
    # pygal writes its tooltip configuration as an inline <script> even without its
    # tooltip script (js=[]): the console's CSP would refuse it, and nothing uses it.
    return _SCRIPT.sub("", chart.render(is_unicode=True))


def override_daily(store: Store, since: date, until: date) -> dict:
    rows = dashboards.override_daily(store, since, until)
    chart = pygal.Line(**OPTIONS, y_title="override rate, %", x_label_rotation=30,
                       show_minor_x_labels=False, range=(0, 100))
    chart.x_labels = [r["day"] for r in rows]
    chart.x_labels_major = chart.x_labels[::max(1, len(rows) // 10)]
    chart.add("overrides (reject + modify) / decided reviews",
              [_pct(r["override_rate"]) for r in rows])
    total = sum(r["decided"] for r in rows)
    overall = sum(r["overrides"] for r in rows) / total if total else None
    return {"id": "override-daily", "title": "Override rate per day",
            "explain": "How often reviewers did not accept the model's output as it was "
                       f"(rejected or changed it). Over the period: {_fmt_pct(overall)} of "
                       f"{total:,} decided reviews.",
            "svg": _svg(chart) if rows else ""}


def _fmt_pct(rate: Optional[float]) -> str:
    return "n/a" if rate is None else f"{rate * 100:.1f}%"


def _override_bars(rows: list[dict], label, title: str, chart_id: str, what: str) -> dict:
    rows = sorted(rows, key=lambda r: -r["decided"])[:MAX_BARS]
    chart = pygal.HorizontalBar(**OPTIONS, x_title="override rate, %", range=(0, 100))
    for r in rows:
        chart.add(f"{label(r)} ({r['decided']:,} reviews)", [_pct(r["override_rate"])])
    table = [[what, "decided reviews", "overrides", "override rate"]] + [
        [label(r), f"{r['decided']:,}", f"{r['overrides']:,}", _fmt_pct(r["override_rate"])]
        for r in rows]
    return {"id": chart_id, "title": title, "table": table,
            "explain": "Each review counts for the model call of its task. Compare versions "
                       "with enough reviews before drawing conclusions.",
            "svg": _svg(chart) if rows else ""}


def override_by_model(store: Store, since: date, until: date) -> dict:
    return _override_bars(dashboards.override_by_model(store, since, until),
                          lambda r: f"{r['model'] or '(no model call)'} "
                                    f"{r['model_version']}".strip(),
                          "Override rate by model", "override-model", "model")


def override_by_prompt(store: Store, since: date, until: date) -> dict:
    return _override_bars(dashboards.override_by_prompt_version(store, since, until),
                          lambda r: f"{r['prompt_template_id'] or '(none)'}@{r['prompt_version']}",
                          "Override rate by prompt version", "override-prompt", "prompt")


def review_times(store: Store, since: date, until: date) -> dict:
    rows = sorted(dashboards.review_time_percentiles(store, since, until),
                  key=lambda r: -r["reviews"])[:MAX_BARS]
    chart = pygal.Bar(**OPTIONS, y_title="seconds per review", x_label_rotation=30)
    chart.x_labels = [r["reviewer_id"] for r in rows]
    for q in ("p50", "p90"):
        chart.add(f"{q} ({'median' if q == 'p50' else '9 in 10 reviews faster'})",
                  [round(r[f"{q}_ms"] / 1000, 1) for r in rows])
    table = [["reviewer", "reviews", "p50 s", "p90 s", "p99 s"]] + [
        [r["reviewer_id"], f"{r['reviews']:,}", f"{r['p50_ms'] / 1000:.1f}",
         f"{r['p90_ms'] / 1000:.1f}", f"{r['p99_ms'] / 1000:.1f}"] for r in rows]
    return {"id": "review-times", "title": "Time spent per review, by reviewer",
            "explain": f"The {len(rows)} busiest reviewers: the median and the 90th percentile "
                       "of the time from seeing the model's output to deciding.",
            "svg": _svg(chart) if rows else "", "table": table}


def escalations(store: Store, since: date, until: date) -> dict:
    rows = dashboards.escalations_daily(store, since, until)
    outcomes = sorted({o for r in rows for o in r["outcomes"]})
    chart = pygal.StackedBar(**OPTIONS, y_title="escalations", x_label_rotation=30,
                             show_minor_x_labels=False)
    chart.x_labels = [r["day"] for r in rows]
    chart.x_labels_major = chart.x_labels[::max(1, len(rows) // 10)]
    for outcome in outcomes:
        chart.add(outcome, [r["outcomes"].get(outcome, 0) for r in rows])
    total = sum(r["escalations"] for r in rows)
    return {"id": "escalations", "title": "Escalations per day, by how the task was resolved",
            "explain": f"{total:,} escalations in the period, coloured by the final outcome "
                       "of their task ('unresolved': no resolution recorded yet).",
            "svg": _svg(chart) if rows else ""}


def volume(store: Store, since: date, until: date) -> dict:
    rows = dashboards.volume_by_type(store, since, until)
    chart = pygal.HorizontalBar(**OPTIONS, x_title="records")
    for r in rows:
        chart.add(r["event_type"], [r["records"]])
    total = sum(r["records"] for r in rows)
    return {"id": "volume", "title": "Records by event type",
            "explain": f"{total:,} records sealed in the period.",
            "svg": _svg(chart) if rows else ""}


def render_all(store: Store, since: date, until: date) -> list[dict]:
    """Every chart for the period ``since``..``until`` (both days included)."""
    return [f(store, since, until) for f in (override_daily, override_by_model,
                                              override_by_prompt, review_times,
                                              escalations, volume)]
