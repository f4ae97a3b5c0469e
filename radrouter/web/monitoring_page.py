"""The monitoring pages of the layout: every pipeline with its open alerts, and one pipeline's charts.

The charts are drawn on the server (matplotlib PNGs inline), so the pages need no script or CDN.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from radrouter.monitoring.descriptors import DESCRIPTORS
from radrouter.monitoring.drift import Chart, Sample
from radrouter.monitoring.plots import measurement_chart, mix_chart, rate_chart
from radrouter.monitoring.series import AGREEMENT
from radrouter.monitoring.service import Monitor


@dataclass
class Figure:
    title: str
    uri: str


@dataclass
class Section:
    heading: str
    figures: list[Figure] = field(default_factory=list)


def pipeline_context(monitor: Monitor, pipeline: str) -> dict[str, Any]:
    """What ``monitoring_pipeline.html`` shows: windows, open alerts and the charts by section."""
    windows = monitor.windows()
    states = {state.statistic: state for state in monitor.statistics(pipeline)}
    by_statistic: dict[str, list[Sample]] = defaultdict(list)
    for sample in monitor.samples(pipeline):
        by_statistic[sample.statistic].append(sample)
    sections = [
        Section(
            statistic.removeprefix("measurement:"),
            [Figure(statistic, measurement_chart(by_statistic[statistic], state, windows))],
        )
        for statistic, state in states.items()
        if state.chart == Chart.MEAN
    ]
    findings = [(s, by_statistic[k]) for k, s in states.items() if k.startswith("finding:")]
    if findings:
        sections.append(
            Section("Finding rate", [Figure("finding rate", rate_chart("finding rate", findings, windows))])
        )
    if AGREEMENT in states:
        agreement = [(states[AGREEMENT], by_statistic[AGREEMENT])]
        sections.append(
            Section("Agreement", [Figure("agreement", rate_chart("agreement", agreement, windows))])
        )
    mix = Section("Input mix")
    for descriptor in (*DESCRIPTORS, "version"):
        prefix = f"input:{descriptor}="
        shares = {k.removeprefix(prefix): v for k, v in by_statistic.items() if k.startswith(prefix)}
        if shares:
            mix.figures.append(Figure(f"input mix {descriptor}", mix_chart(descriptor, shares, windows)))
    sections.append(mix)
    return {
        "pipeline": pipeline,
        "windows": windows,
        "statistics": len(by_statistic),
        "alerts": [a for a in monitor.alerts() if a["pipeline"] == pipeline],
        "sections": sections,
    }


def index_context(pipelines: list[str], alerts: list[dict[str, Any]]) -> dict[str, Any]:
    """Every monitored pipeline with its count of open alerts."""
    return {"pipelines": {p: sum(a["pipeline"] == p for a in alerts) for p in pipelines}}
