"""What arrived and what came out: studies received, results delivered, time to result, failures.

Counted per hour over the last day from the index (studies' first instance, the audit trail's first
delivery of each study, failed jobs and dead-lettered deliveries) and drawn on the server as one SVG
with matplotlib, so the page needs no chart script and no CDN.
"""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from statistics import quantiles

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from sqlalchemy import func, select

from radrouter.storage.index import (
    AuditEvent,
    Delivery,
    DeliveryState,
    Hop,
    Index,
    Job,
    JobState,
    Study,
)

HOURS = 24


@dataclass
class Window:
    """Totals over one window (the last hour or the last day)."""

    received: int = 0
    delivered: int = 0
    failed: int = 0
    p50_s: float | None = None
    p95_s: float | None = None
    seconds: list[float] = field(default_factory=list, repr=False)


@dataclass
class Activity:
    """Per-hour counts over the last day (oldest first) and totals of the last hour and day."""

    hours: list[datetime]
    received: list[int]
    delivered: list[int]
    failed: list[int]
    p50_s: list[float | None]
    p95_s: list[float | None]
    last_hour: Window
    last_day: Window


def _percentiles(seconds: list[float]) -> tuple[float | None, float | None]:
    if not seconds:
        return None, None
    if len(seconds) == 1:
        return round(seconds[0], 1), round(seconds[0], 1)
    cuts = quantiles(seconds, n=100, method="inclusive")
    return round(cuts[49], 1), round(cuts[94], 1)


def activity(index: Index, now: datetime) -> Activity:
    """The last :data:`HOURS` hours of the node, hour by hour, and the last hour and day in all."""
    start = now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=HOURS - 1)
    hours = [start + timedelta(hours=h) for h in range(HOURS)]

    def slot(at: datetime) -> int | None:
        position = int((at - start).total_seconds() // 3600)
        return position if 0 <= position < HOURS else None

    with index.session() as session:
        received = list(
            session.scalars(select(Study.first_received_at).where(Study.first_received_at >= start))
        )
        first_delivered = (
            select(AuditEvent.study_uid, func.min(AuditEvent.at).label("at"))
            .where(AuditEvent.hop == Hop.DELIVERED, AuditEvent.at >= start)
            .group_by(AuditEvent.study_uid)
            .subquery()
        )
        delivered = list(
            session.execute(
                select(first_delivered.c.at, Study.first_received_at).join(
                    Study, Study.uid == first_delivered.c.study_uid
                )
            )
        )
        failed = list(
            session.scalars(
                select(Job.finished_at).where(Job.state == JobState.FAILED, Job.finished_at >= start)
            )
        ) + list(
            session.scalars(
                select(Delivery.pending_since).where(
                    Delivery.state == DeliveryState.FAILED, Delivery.pending_since >= start
                )
            )
        )
    buckets: dict[str, list[int]] = {k: [0] * HOURS for k in ("received", "delivered", "failed")}
    seconds: list[list[float]] = [[] for _ in range(HOURS)]
    last_hour, last_day = Window(), Window()
    hour_ago = now - timedelta(hours=1)

    def add(kind: str, at: datetime | None) -> None:
        where = slot(at) if at is not None else None
        if at is None or where is None:
            return
        buckets[kind][where] += 1
        setattr(last_day, kind, getattr(last_day, kind) + 1)
        if at >= hour_ago:
            setattr(last_hour, kind, getattr(last_hour, kind) + 1)

    for at in received:
        add("received", at)
    for at, first in delivered:
        add("delivered", at)
        where = slot(at)
        took = (at - first).total_seconds()
        if where is not None:
            seconds[where].append(took)
            last_day.seconds.append(took)
            if at >= hour_ago:
                last_hour.seconds.append(took)
    for failed_at in failed:
        add("failed", failed_at)
    for window in (last_hour, last_day):
        window.p50_s, window.p95_s = _percentiles(window.seconds)
    per_hour = [_percentiles(s) for s in seconds]
    return Activity(
        hours,
        buckets["received"],
        buckets["delivered"],
        buckets["failed"],
        [p for p, _ in per_hour],
        [p for _, p in per_hour],
        last_hour,
        last_day,
    )


def activity_chart(seen: Activity) -> str:
    """Three panels, one SVG data URI: studies in and out, time to result p50/p95, failures."""
    labels = [f"{h:%H}" for h in seen.hours]
    x = range(len(labels))
    figure, (counts, latency, failures) = plt.subplots(1, 3, figsize=(13, 2.8), layout="constrained")
    width = 0.4
    counts.bar([i - width / 2 for i in x], seen.received, width, label="received", color="#1f77b4")
    counts.bar([i + width / 2 for i in x], seen.delivered, width, label="result delivered", color="#2ca02c")
    counts.set_title("Studies per hour", fontsize=10)
    counts.legend(fontsize=8, loc="upper left")
    for values, label, style in ((seen.p50_s, "p50", "-o"), (seen.p95_s, "p95", "--o")):
        latency.plot(
            [i for i, v in zip(x, values, strict=True) if v is not None],
            [v for v in values if v is not None],
            style,
            markersize=3,
            label=label,
        )
    latency.set_title("Time to result (s): first instance to first delivery", fontsize=10)
    latency.legend(fontsize=8, loc="upper left")
    latency.set_ylim(bottom=0)
    failures.bar(list(x), seen.failed, color="#c62828")
    failures.set_title("Failures per hour (jobs, dead letters)", fontsize=10)
    for axes in (counts, latency, failures):
        axes.set_xticks(list(x)[::3], labels[::3], fontsize=8)
        axes.tick_params(axis="y", labelsize=8)
        axes.set_xlim(-0.6, len(labels) - 0.4)
        axes.spines[["top", "right"]].set_visible(False)
    highest = {counts: max(seen.received + seen.delivered), failures: max(seen.failed)}
    for axes, top in highest.items():
        axes.yaxis.get_major_locator().set_params(integer=True)
        axes.set_ylim(0, top + 1)
    if not any(seen.p95_s):
        latency.set_ylim(0, 60)
    buffer = io.StringIO()
    figure.savefig(buffer, format="svg")
    plt.close(figure)
    return "data:image/svg+xml;base64," + base64.b64encode(buffer.getvalue().encode()).decode()
