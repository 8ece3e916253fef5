"""The console's charts: the dashboards/ views' figures drawn server-side as SVG.

pygal renders each chart to inline SVG, so the page needs no script and no
network (the console is often used on locked-down machines), prints well, and a
browser test can read the rendered chart. Each chart comes with a sentence that
says how to read it and, where exact numbers matter, a table. Bars carry their
value, and each links to the console search for the records it counts (the same
UTC days; the search's To is exclusive, so it gets the day after the chart's last).
Codes are shown with their labels (labels.py).
"""

from __future__ import annotations

import re
from datetime import date, timedelta
from typing import Any, Callable, Optional
from urllib.parse import urlencode

import pygal
from pygal.style import Style

from aitrail_collector.store import dashboards
from aitrail_collector.store.client import Store
from aitrail_collector.web.console.labels import DECISIONS, label

STYLE = Style(background="white", plot_background="white", foreground="#1d2330",
              foreground_strong="#1d2330", foreground_subtle="#687185",
              colors=("#2456a6", "#b3261e", "#1f7a3f", "#9a6700", "#6b3fa0", "#00838f"),
              font_family="system-ui, sans-serif", title_font_size=14, label_font_size=12,
              major_label_font_size=12,
              legend_font_size=13)
OPTIONS = dict(style=STYLE, width=760, height=340, js=[], disable_xml_declaration=True,
               explicit_size=False, print_values=True, show_legend=True,
               legend_at_bottom=True, truncate_label=40)
MAX_BARS = 15


def _pct(rate: Optional[float]) -> Optional[float]:
    return None if rate is None else round(rate * 100, 1)


_SCRIPT = re.compile(r"<script\b.*?</script\s*>", re.S | re.I)


def _svg(chart: Any) -> str:
    # pygal writes its tooltip configuration as an inline <script> even without its
    # tooltip script (js=[]): the console's CSP would refuse it, and nothing uses it.
    return _SCRIPT.sub("", chart.render(is_unicode=True))


def search_href(since: date, until: date, *args: tuple[str, str]) -> str:
    """The console search for the records of the days ``since``..``until`` (both
    included) that also match ``args`` (its query parameters)."""
    return "/console/search?" + urlencode([
        ("preset", "custom"), ("since", since.isoformat()),
        ("until", (until + timedelta(days=1)).isoformat()), *args])


def _bar(value: Any, href: str, text: Callable[[Any], str]) -> dict:
    # A bar with its value printed on it, linking to the search it summarises.
    return {"value": value, "formatter": text, "xlink": {"href": href, "target": "_self"}}


def _pct_text(value: Optional[float]) -> str:
    return "" if value is None else f"{value:.1f}%"


def override_daily(store: Store, since: date, until: date) -> dict:
    rows = dashboards.override_daily(store, since, until)
    chart = pygal.Line(**{**OPTIONS, "print_values": False}, y_title="override rate, %",
                       x_label_rotation=30,
                       show_minor_x_labels=False, range=(0, 100))
    chart.x_labels = [r["day"] for r in rows]
    chart.x_labels_major = chart.x_labels[::max(1, len(rows) // 10)]
    chart.add(f"Overrides ({DECISIONS['reject']} or {DECISIONS['modify'].lower()}) / "
              "decided reviews",
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


def _override_bars(rows: list[dict], name: Callable[[dict], str], title: str, chart_id: str,
                   what: str, keys: tuple[str, str], since: date, until: date) -> dict:
    rows = sorted(rows, key=lambda r: -r["decided"])[:MAX_BARS]
    chart = pygal.HorizontalBar(**OPTIONS, x_title="override rate, %", range=(0, 100))
    for r in rows:
        href = search_href(since, until, ("type", "review"), *((k, r[k]) for k in keys))
        chart.add(f"{name(r)} ({r['decided']:,} reviews)",
                  [_bar(_pct(r["override_rate"]), href, _pct_text)])
    table = [[what, "decided reviews", "overrides", "override rate"]] + [
        [name(r), f"{r['decided']:,}", f"{r['overrides']:,}", _fmt_pct(r["override_rate"])]
        for r in rows]
    return {"id": chart_id, "title": title, "table": table,
            "explain": "Each review counts for the model call of its task. Compare versions "
                       "with enough reviews before drawing conclusions.",
            "svg": _svg(chart) if rows else ""}


def _variant(model: str, version: str) -> str:
    return f"{model} {version}".strip()


def _prompt(template: str, version: str) -> str:
    return f"{template or '(none)'}@{version}"


def override_by_model(store: Store, since: date, until: date) -> dict:
    return _override_bars(dashboards.override_by_model(store, since, until),
                          lambda r: _variant(r["model"] or "(no model call)",
                                             r["model_version"]),
                          "Override rate by model", "override-model", "model",
                          ("model", "model_version"), since, until)


def override_by_prompt(store: Store, since: date, until: date) -> dict:
    return _override_bars(dashboards.override_by_prompt_version(store, since, until),
                          lambda r: _prompt(r["prompt_template_id"], r["prompt_version"]),
                          "Override rate by prompt version", "override-prompt", "prompt",
                          ("prompt_template_id", "prompt_version"), since, until)


def review_times(store: Store, since: date, until: date) -> dict:
    rows = sorted(dashboards.review_time_percentiles(store, since, until),
                  key=lambda r: -r["reviews"])[:MAX_BARS]
    chart = pygal.Bar(**OPTIONS, y_title="seconds per review", x_label_rotation=30)
    chart.x_labels = [r["reviewer_id"] for r in rows]
    for q in ("p50", "p90"):
        chart.add(f"{q} ({'median' if q == 'p50' else '9 in 10 reviews faster'})",
                  [_bar(round(r[f"{q}_ms"] / 1000, 1),
                        search_href(since, until, ("type", "review"),
                                    ("reviewer", r["reviewer_id"])), _seconds)
                   for r in rows])
    table = [["reviewer", "reviews", "p50 s", "p90 s", "p99 s"]] + [
        [r["reviewer_id"], f"{r['reviews']:,}", f"{r['p50_ms'] / 1000:.1f}",
         f"{r['p90_ms'] / 1000:.1f}", f"{r['p99_ms'] / 1000:.1f}"] for r in rows]
    return {"id": "review-times", "title": "Time spent per review, by reviewer",
            "explain": f"The {len(rows)} busiest reviewers: the median and the 90th percentile "
                       "of the time from seeing the model's output to deciding.",
            "svg": _svg(chart) if rows else "", "table": table}


def _seconds(value: float) -> str:
    return f"{value:g} s"


def _count(value: int) -> str:
    return f"{value:,}" if value else ""  # an empty segment of a stack says nothing


def escalations(store: Store, since: date, until: date) -> dict:
    rows = dashboards.escalations_daily(store, since, until)
    outcomes = sorted({o for r in rows for o in r["outcomes"]})
    chart = pygal.StackedBar(**OPTIONS, y_title="escalations", x_label_rotation=30,
                             show_minor_x_labels=False)
    chart.x_labels = [r["day"] for r in rows]
    chart.x_labels_major = chart.x_labels[::max(1, len(rows) // 10)]
    for outcome in outcomes:  # a segment links to its day's escalations
        chart.add(label(outcome), [
            _bar(r["outcomes"].get(outcome, 0),
                 search_href(day, day, ("type", "escalation")), _count)
            for r in rows for day in [date.fromisoformat(r["day"])]])
    total = sum(r["escalations"] for r in rows)
    return {"id": "escalations", "title": "Escalations per day, by how the task was resolved",
            "explain": f"{total:,} escalations in the period, coloured by the final outcome "
                       f"of their task ('{label('unresolved')}': no resolution recorded "
                       "yet). A bar opens that day's escalations.",
            "svg": _svg(chart) if rows else ""}


# The search hides the console's own reads unless asked (its activity log); the
# volume counts them, so their bar asks.
_ACTIVITY = {"data_access": (("activity", "include"),)}


def volume(store: Store, since: date, until: date) -> dict:
    rows = dashboards.volume_by_type(store, since, until)
    chart = pygal.HorizontalBar(**OPTIONS, x_title="records")
    for r in rows:
        chart.add(label(r["event_type"]), [
            _bar(r["records"], search_href(since, until, ("type", r["event_type"]),
                                           *_ACTIVITY.get(r["event_type"], ())), _count)])
    total = sum(r["records"] for r in rows)
    return {"id": "volume", "title": "Records by event type",
            "explain": f"{total:,} records sealed in the period.",
            "svg": _svg(chart) if rows else ""}


def confounded(store: Store, since: date, until: date) -> Optional[str]:
    """A note when the period's reviews group the same way by model as by prompt
    version (each model went with one prompt version and each prompt version with
    one model, two or more of them): the two charts then show one comparison twice,
    and which of the two made a difference cannot be told from these data."""
    pairs = {(_variant(r["model"], r["model_version"]),
              _prompt(r["prompt_template_id"], r["prompt_version"]))
             for r in dashboards.variants_in_period(store, since, until)}
    models, prompts = {m for m, _ in pairs}, {p for _, p in pairs}
    if len(pairs) < 2 or not len(pairs) == len(models) == len(prompts):
        return None
    together = "; ".join(f"{m} with {p}" for m, p in sorted(pairs))
    return ("Model and prompt version changed together in this period: their effects "
            f"cannot be told apart ({together}). A difference between these bars may "
            "come from the model or from the prompt.")


def render_all(store: Store, since: date, until: date) -> list[dict]:
    """Every chart for the period ``since``..``until`` (both days included)."""
    out = [f(store, since, until) for f in (override_daily, override_by_model,
                                             override_by_prompt, review_times,
                                             escalations, volume)]
    note = confounded(store, since, until)
    for chart in out:
        if note and chart["id"] in ("override-model", "override-prompt"):
            chart["note"] = note
    return out
