"""Drift of a pipeline's outputs and inputs: daily statistics against control limits from a baseline.

Each statistic is a stream of per-result samples: a measurement's value (its daily mean is charted,
like a Shewhart x̄ chart) or 0/1 (a finding called, a radiologist agreeing, a scanner model in use; the
daily share is charted like a p chart). The baseline window, just before the recent window, gives the
centre and the spread; a day's limits are centre ± z·sd/√n for that day's n samples. A statistic that
stays outside them on ``consecutive_days`` days with results (days without results neither count nor
break the run) raises an alert: the rule of published post-deployment monitoring of a PE detector,
95% interval and 7 days.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, timedelta
from enum import StrEnum
from statistics import NormalDist, fmean, stdev

from radrouter.config.monitoring import MonitoringSettings


class Chart(StrEnum):
    MEAN = "mean"
    RATE = "rate"


@dataclass(frozen=True)
class Sample:
    """One value of one statistic on one day (a measurement, or 0/1 for a rate)."""

    statistic: str
    chart: Chart
    day: date
    value: float


@dataclass(frozen=True)
class Baseline:
    """Centre and spread of a statistic's samples in the baseline window."""

    centre: float
    sd: float
    samples: int


@dataclass(frozen=True)
class DayPoint:
    """One recent day: its value (mean or share), sample count and limits, and whether it was outside."""

    day: date
    samples: int
    value: float
    lower: float | None
    upper: float | None
    outside: bool


@dataclass
class StatisticDrift:
    """One statistic over the recent window, with the current run of days outside its limits."""

    statistic: str
    chart: Chart
    baseline: Baseline | None
    days: list[DayPoint] = field(default_factory=list)
    run_days: int = 0
    run_since: date | None = None
    alert: bool = False


@dataclass(frozen=True)
class Windows:
    """The baseline [baseline_start, recent_start) and recent [recent_start, today] windows, in days."""

    baseline_start: date
    recent_start: date
    today: date

    @classmethod
    def ending(cls, today: date, settings: MonitoringSettings) -> Windows:
        recent_start = today - timedelta(days=settings.recent_days - 1)
        return cls(recent_start - timedelta(days=settings.baseline_days), recent_start, today)


def _baseline(values: list[float], chart: Chart, minimum: int) -> Baseline | None:
    if len(values) < minimum:
        return None
    centre = fmean(values)
    sd = math.sqrt(centre * (1 - centre)) if chart == Chart.RATE else stdev(values)
    return Baseline(centre, sd, len(values))


def drift(samples: Iterable[Sample], windows: Windows, settings: MonitoringSettings) -> list[StatisticDrift]:
    """Every statistic that has samples in either window, with its days and alert state, sorted by name."""
    z = NormalDist().inv_cdf(0.5 + settings.confidence / 2)
    baseline_values: dict[tuple[str, Chart], list[float]] = defaultdict(list)
    recent_values: dict[tuple[str, Chart], dict[date, list[float]]] = defaultdict(lambda: defaultdict(list))
    for sample in samples:
        key = (sample.statistic, sample.chart)
        if windows.baseline_start <= sample.day < windows.recent_start:
            baseline_values[key].append(sample.value)
        elif windows.recent_start <= sample.day <= windows.today:
            recent_values[key][sample.day].append(sample.value)
    reports = []
    for key in sorted(set(baseline_values) | set(recent_values)):
        statistic, chart = key
        baseline = _baseline(baseline_values.get(key, []), chart, settings.min_baseline_samples)
        report = StatisticDrift(statistic, chart, baseline)
        for day in sorted(recent_values.get(key, {})):
            values = recent_values[key][day]
            value = fmean(values)
            lower = upper = None
            outside = False
            if baseline is not None:
                half_width = z * baseline.sd / math.sqrt(len(values))
                lower, upper = baseline.centre - half_width, baseline.centre + half_width
                outside = not lower <= value <= upper
            report.days.append(DayPoint(day, len(values), value, lower, upper, outside))
            if outside:
                report.run_since = report.run_since if report.run_days else day
                report.run_days += 1
            else:
                report.run_days, report.run_since = 0, None
        report.alert = report.run_days >= settings.consecutive_days
        reports.append(report)
    return reports
