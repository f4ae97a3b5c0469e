"""Prometheus metrics of the whole node, read at scrape time from the index and the broker.

Every process writes to the index and Redis, so the web app can report for all of them, on any
machine, without the processes sharing memory. Counters of the SCP itself (associations, instances and
bytes received) are exported by the SCP process (`node.metrics_port`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from celery import Celery
from kombu.exceptions import OperationalError as BrokerUnavailable
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from sqlalchemy import ColumnElement, Select, case, func, select

from radrouter.config.settings import Settings
from radrouter.router.dispatch.contract import DELIVERY_QUEUE, queue_for
from radrouter.storage.index import Delivery, DeliveryState, Index, Job, JobState
from radrouter.storage.node_status import ProcessState, read_node_status
from radrouter.storage.retention import StorageOverview, storage_overview
from radrouter.storage.store import InstanceStore

# Seconds from a job's start to its end; brain extraction on a CPU takes tens of seconds.
INFERENCE_BUCKETS = (1.0, 2.5, 5.0, 10.0, 20.0, 40.0, 80.0, 160.0, 320.0, 640.0)


def served_queues(settings: Settings) -> list[str]:
    """The delivery queue and the queue of every pipeline a rule names."""
    pipelines = {pipeline.name for rule in settings.rules for pipeline in rule.pipelines}
    return [DELIVERY_QUEUE, *sorted({queue_for(settings, name) for name in pipelines})]


def queue_depths(celery: Celery, queues: list[str]) -> dict[str, int]:
    """Messages waiting per queue (kombu sums the priority sub-queues; declaring is a no-op on Redis)."""
    with celery.connection_for_read() as connection:
        channel: Any = connection.default_channel  # kombu's Redis channel
        return {queue: int(channel.queue_declare(queue).message_count) for queue in queues}


class NodeCollector:
    """Queue depth per queue, inference seconds per pipeline, deliveries by outcome."""

    def __init__(self, settings: Settings, index: Index, celery: Celery) -> None:
        self.settings, self.index, self.celery = settings, index, celery

    def collect(self) -> Iterator[Metric]:
        yield from self._queues()
        yield from self._processes()
        yield from storage_metrics(node_storage(self.settings, self.index))
        with self.index.session() as session:
            deliveries = dict(
                session.execute(select(Delivery.state, func.count()).group_by(Delivery.state)).all()
            )
            durations = session.execute(_inference_buckets(self.index.engine.dialect.name)).all()
        outcome = GaugeMetricFamily("radrouter_deliveries", "Deliveries by outcome", labels=["state"])
        for state in DeliveryState:
            outcome.add_metric([state.value], deliveries.get(state, 0))
        yield outcome
        yield self._inference_histogram(durations)

    def _processes(self) -> Iterator[Metric]:
        """Under ``radrouter up``: whether each process runs, and how often it was started again."""
        status = read_node_status(self.settings.storage.root)
        if status is None:
            return
        up = GaugeMetricFamily("radrouter_process_up", "1 while the process runs", labels=["process"])
        restarts = CounterMetricFamily(
            "radrouter_process_restarts", "Times the supervisor started the process again", labels=["process"]
        )
        for name, process in sorted(status.processes.items()):
            up.add_metric([name], float(process.state == ProcessState.RUNNING))
            restarts.add_metric([name], process.restarts)
        yield up
        yield restarts

    def _queues(self) -> Iterator[Metric]:
        depth = GaugeMetricFamily("radrouter_queue_depth", "Tasks waiting per Celery queue", labels=["queue"])
        try:
            depths = queue_depths(self.celery, served_queues(self.settings))
        except (BrokerUnavailable, OSError):
            return  # no broker: the queue gauge is missing rather than wrong; /api/health says why
        for queue, count in depths.items():
            depth.add_metric([queue], count)
        yield depth

    def _inference_histogram(self, rows: Sequence[Any]) -> HistogramMetricFamily:
        histogram = HistogramMetricFamily(
            "radrouter_inference_seconds", "Seconds per finished job, by pipeline", labels=["pipeline"]
        )
        for pipeline, count, total, *within in sorted(rows):
            buckets = [(str(bound), int(n)) for bound, n in zip(INFERENCE_BUCKETS, within, strict=True)]
            buckets.append(("+Inf", int(count)))
            histogram.add_metric([pipeline], buckets, sum_value=float(total))
        return histogram


def node_storage(settings: Settings, index: Index) -> StorageOverview:
    """The storage volume and what retention may purge, as the dashboard and /metrics show them."""
    store = InstanceStore(settings.storage.root, fsync=False)
    reserve = settings.storage.free_space_reserve_mb * 1024 * 1024
    return storage_overview(index, store, settings.retention, reserve)


def storage_metrics(overview: StorageOverview) -> Iterator[Metric]:
    by_state = GaugeMetricFamily(
        "radrouter_storage_bytes", "Bytes of stored instances by their study's state", labels=["state"]
    )
    for row in overview.by_state:
        by_state.add_metric([row.state.value], row.bytes)
    yield by_state
    yield GaugeMetricFamily(
        "radrouter_storage_eligible_bytes",
        "Bytes of finished studies' instances that retention may purge (when due, or above the watermark)",
        value=overview.eligible_bytes,
    )
    yield GaugeMetricFamily(
        "radrouter_storage_purged_studies",
        "Studies whose instances retention has purged",
        value=overview.purged_studies,
    )
    yield GaugeMetricFamily(
        "radrouter_storage_disk_used_percent",
        "Use of the storage volume, in percent",
        value=round(overview.disk.used_pct, 2),
    )
    yield GaugeMetricFamily(
        "radrouter_storage_free_bytes", "Free bytes on the storage volume", value=overview.disk.free
    )
    yield GaugeMetricFamily(
        "radrouter_storage_full",
        "1 while free space is within storage.free_space_reserve_mb and nothing is eligible to purge: "
        "the SCP answers Out of Resources",
        value=float(overview.stuck),
    )


def _inference_buckets(dialect: str) -> Select[*tuple[Any, ...]]:
    """Per pipeline: finished jobs, their seconds summed, and how many took at most each bucket's bound.

    Counted by the database in one pass, so a scrape reads a row per pipeline, not every job ever done.
    """
    if dialect == "postgresql":
        seconds: ColumnElement[Any] = func.extract("epoch", Job.finished_at - Job.started_at)
    else:  # SQLite keeps times as text: julianday() makes them days
        seconds = (func.julianday(Job.finished_at) - func.julianday(Job.started_at)) * 86400.0
    within = [func.sum(case((seconds <= bound, 1), else_=0)) for bound in INFERENCE_BUCKETS]
    return (
        select(Job.pipeline, func.count(), func.sum(seconds), *within)
        .where(Job.state == JobState.DONE, Job.started_at.is_not(None), Job.finished_at.is_not(None))
        .group_by(Job.pipeline)
    )
