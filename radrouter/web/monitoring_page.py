"""The monitoring page of one pipeline: open alerts, then charts people read at a glance.

Rendered on the server (matplotlib PNGs inline, names escaped), so the page needs no script or CDN.
"""

from __future__ import annotations

import html
from collections import defaultdict

from radrouter.monitoring.descriptors import DESCRIPTORS
from radrouter.monitoring.drift import Chart, Sample
from radrouter.monitoring.plots import measurement_chart, mix_chart, rate_chart
from radrouter.monitoring.series import AGREEMENT
from radrouter.monitoring.service import Monitor

STYLE = (
    "body{font-family:sans-serif;margin:1.5em}img{display:block;margin:.5em 0 1.5em}"
    ".alert{background:#fde8e8;border-left:4px solid #c62828;padding:.4em .8em;margin:.3em 0}"
)


def _figure(title: str, uri: str) -> str:
    return f'<img alt="{html.escape(title)}" src="{uri}">'


def pipeline_page(monitor: Monitor, pipeline: str) -> str:
    windows = monitor.windows()
    samples = monitor.samples(pipeline)
    states = {state.statistic: state for state in monitor.statistics(pipeline)}
    by_statistic: dict[str, list[Sample]] = defaultdict(list)
    for sample in samples:
        by_statistic[sample.statistic].append(sample)
    name = html.escape(pipeline)
    alerts = [a for a in monitor.alerts() if a["pipeline"] == pipeline]
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>radrouter monitoring: {name}</title>",
        f"<style>{STYLE}</style></head><body><h1>Monitoring: {name}</h1>",
        f"<p>Baseline {windows.baseline_start} to {windows.recent_start} (exclusive), recent window "
        f"{windows.recent_start} to {windows.today}; {len(by_statistic)} statistic(s).</p>",
    ]
    parts += [
        f'<div class="alert">Drift: {html.escape(a["statistic"])} outside its limits for '
        f"{a['days_outside']} days, since {a['since']}</div>"
        for a in alerts
    ]
    for statistic, state in states.items():
        if state.chart == Chart.MEAN:
            parts.append(f"<h2>{html.escape(statistic.removeprefix('measurement:'))}</h2>")
            parts.append(_figure(statistic, measurement_chart(by_statistic[statistic], state, windows)))
    findings = [(s, by_statistic[k]) for k, s in states.items() if k.startswith("finding:")]
    if findings:
        parts += [
            "<h2>Finding rate</h2>",
            _figure("finding rate", rate_chart("finding rate", findings, windows)),
        ]
    if AGREEMENT in states:
        agreement = [(states[AGREEMENT], by_statistic[AGREEMENT])]
        parts += ["<h2>Agreement</h2>", _figure("agreement", rate_chart("agreement", agreement, windows))]
    parts.append("<h2>Input mix</h2>")
    for descriptor in (*DESCRIPTORS, "version"):
        prefix = f"input:{descriptor}="
        shares = {k.removeprefix(prefix): v for k, v in by_statistic.items() if k.startswith(prefix)}
        if shares:
            parts.append(_figure(f"input mix {descriptor}", mix_chart(descriptor, shares, windows)))
    parts.append("</body></html>")
    return "".join(parts)


def index_page(pipelines: list[str], alerts: list[dict[str, object]]) -> str:
    """Every monitored pipeline with its count of open alerts, linked to its page."""
    open_by_pipeline = {p: sum(a["pipeline"] == p for a in alerts) for p in pipelines}
    items = "".join(
        f'<li><a href="/monitoring/{html.escape(p)}">{html.escape(p)}</a>: {n} open alert(s)</li>'
        for p, n in open_by_pipeline.items()
    )
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>radrouter monitoring</title>"
        f"<style>{STYLE}</style></head><body><h1>Monitoring</h1><ul>{items}</ul></body></html>"
    )
