"""The monitoring page's charts, drawn server-side with matplotlib as inline PNG (no scripts, no CDN).

Each chart spans the baseline and recent windows; the recent window is shaded, the baseline centre is
a dashed line, the control limits a band, and days outside them red.
"""

from __future__ import annotations

import base64
import io
from collections import defaultdict
from collections.abc import Iterable
from datetime import date
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.axes import Axes

from radrouter.monitoring.drift import Sample, StatisticDrift, Windows


def figure_png(figure: Any) -> str:
    """A figure as a data: URI, closed after drawing (pyplot keeps figures alive otherwise)."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=80, bbox_inches="tight")
    plt.close(figure)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


EPOCH = date(1970, 1, 1)


def _x(days: Iterable[date]) -> list[float]:
    """Days as matplotlib date numbers: days since its default epoch, 1970-01-01."""
    return [float((day - EPOCH).days) for day in days]


def _frame(axes: Axes, windows: Windows, title: str) -> None:
    start, recent, end = _x((windows.baseline_start, windows.recent_start, windows.today))
    axes.xaxis_date()
    axes.axvspan(recent, end + 1, color="#eef3fb", zorder=0, label="recent window")
    axes.set_xlim(start, end + 1)
    axes.set_title(title, fontsize=10)
    axes.tick_params(axis="x", labelrotation=30, labelsize=8)


def _limits(axes: Axes, state: StatisticDrift) -> None:
    if state.baseline is not None:
        axes.axhline(state.baseline.centre, color="grey", linestyle="--", linewidth=1, label="baseline")
    bounded = [d for d in state.days if d.lower is not None and d.upper is not None]
    if bounded:
        axes.fill_between(
            _x(d.day for d in bounded),
            [d.lower or 0.0 for d in bounded],
            [d.upper or 0.0 for d in bounded],
            color="grey",
            alpha=0.2,
            step="mid",
            label="95% limits",
        )
    outside = [d for d in state.days if d.outside]
    axes.scatter(_x(d.day for d in outside), [d.value for d in outside], color="red", zorder=3, s=16)


def daily_values(samples: Iterable[Sample]) -> dict[date, list[float]]:
    by_day: dict[date, list[float]] = defaultdict(list)
    for sample in samples:
        by_day[sample.day].append(sample.value)
    return dict(sorted(by_day.items()))


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


def measurement_chart(samples: list[Sample], state: StatisticDrift, windows: Windows) -> str:
    """Every value by day (the distribution over time) with the daily mean against the limits."""
    by_day = daily_values(samples)
    figure, axes = plt.subplots(figsize=(8, 2.8))
    _frame(axes, windows, state.statistic.removeprefix("measurement:"))
    axes.scatter(
        _x(d for d, values in by_day.items() for _ in values),
        [v for values in by_day.values() for v in values],
        s=6,
        alpha=0.4,
        color="C0",
    )
    axes.plot(_x(by_day), [_mean(v) for v in by_day.values()], color="C0", linewidth=1.2)
    _limits(axes, state)
    return figure_png(figure)


def rate_chart(title: str, series: list[tuple[StatisticDrift, list[Sample]]], windows: Windows) -> str:
    """Daily shares (finding rate, agreement) with each statistic's limits over the recent window."""
    figure, axes = plt.subplots(figsize=(8, 2.8))
    _frame(axes, windows, title)
    for number, (state, samples) in enumerate(series):
        by_day = daily_values(samples)
        axes.plot(
            _x(by_day),
            [_mean(v) for v in by_day.values()],
            marker=".",
            color=f"C{number}",
            label=state.statistic,
        )
        _limits(axes, state)
    axes.set_ylim(-0.02, 1.02)
    axes.legend(fontsize=7, loc="upper left")
    return figure_png(figure)


def mix_chart(descriptor: str, shares: dict[str, list[Sample]], windows: Windows) -> str:
    """The share of each value of one input descriptor, one stacked bar per day."""
    per_value = {
        value: {d: _mean(v) for d, v in daily_values(samples).items()} for value, samples in shares.items()
    }
    days = sorted({day for per_day in per_value.values() for day in per_day})
    figure, axes = plt.subplots(figsize=(8, 2.4))
    _frame(axes, windows, f"input mix: {descriptor}")
    names = sorted(per_value)
    bottom = [0.0] * len(days)
    for value in names:
        heights = [per_value[value].get(d, 0.0) for d in days]
        axes.bar(_x(days), heights, width=0.9, bottom=bottom, align="edge", label=value)
        bottom = [b + h for b, h in zip(bottom, heights, strict=True)]
    axes.set_ylim(0, 1)
    axes.legend(fontsize=7, loc="upper left")
    return figure_png(figure)
