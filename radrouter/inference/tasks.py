"""The inference task: one job (series, pipeline) on a worker that keeps its models warm.

Takes a job ID, is idempotent and acknowledges late; a worker that dies leaves the task to another.
"""

from __future__ import annotations

import logging
from functools import cache
from typing import Any

from celery import Celery, shared_task
from sqlalchemy import select

from radrouter.config.settings import SeriesAccess
from radrouter.inference.failures import JobFailed
from radrouter.inference.registry import WarmPipelines, available
from radrouter.inference.run import JobRunner
from radrouter.inference.standard_tables import cache_standard_lookups, load_standard_tables
from radrouter.router.dispatch.contract import DELIVERY_QUEUE, TaskName, queue_for
from radrouter.router.dispatch.send import QueuedTask, send_tasks
from radrouter.router.dispatch.takeover import requeue_job
from radrouter.router.dispatch.worker import (
    IndexUnavailable,
    process_incarnation,
    retry_until_index_writable,
    worker_index,
    worker_settings,
    worker_store,
)
from radrouter.storage.index import Job, JobState

log = logging.getLogger(__name__)


@cache
def worker_pipelines() -> WarmPipelines:
    """The models this process keeps warm between tasks."""
    return WarmPipelines(worker_settings())


@shared_task(name=TaskName.INFER, bind=True, acks_late=True)
def infer(self: Any, job_id: int, credential: str | None = None) -> None:
    """Run a job, queueing one delivery task per result and destination as each result is stored (the
    SEG while the SR is built), then its triage and its monitoring.

    Deliveries go first: the delivery worker's threads share one process, so results start on their
    way to PACS before triage and monitoring take their share of it. ``credential``: the job's, which
    a worker on another machine shows the node to STOW-RS the results (``job_credential``).
    """
    runner = JobRunner(worker_settings(), worker_index(), worker_store(), worker_pipelines())
    priority = self.request.delivery_info.get("priority")
    if priority is None:
        priority = worker_settings().default_priority.celery_priority

    def deliver(delivery_ids: list[int]) -> None:
        tasks = [QueuedTask(TaskName.DELIVER, d, DELIVERY_QUEUE, priority) for d in delivery_ids]
        send_tasks(self.app, worker_index(), tasks)

    try:
        outcome = runner.run(
            job_id,
            worker=self.request.hostname or "",
            incarnation=process_incarnation(),
            hand_off=deliver,
            credential=credential,
        )
    except JobFailed:
        return  # recorded FAILED with its reason, logged; the traceback is in the log at DEBUG
    except IndexUnavailable as error:
        raise retry_until_index_writable(self, error, f"job {job_id}") from error
    deliver(outcome.delivery_ids)  # those of a job already done: sent again (acks late)
    self.app.send_task(TaskName.TRIAGE, args=[job_id], queue=DELIVERY_QUEUE, priority=priority)
    self.app.send_task(TaskName.MONITOR, args=[job_id], queue=DELIVERY_QUEUE)


def take_over_lost_jobs(app: Celery, worker: str) -> list[int]:
    """At a worker's start: the jobs an earlier start of this same worker left RUNNING (it was killed,
    or ran out of memory) go back on their queues at once, instead of at the broker's visibility
    timeout. Results are idempotent; the late redelivery of the first message finds the job DONE.

    A worker with its own storage root cannot issue the credential its results need at the node: its
    lost jobs wait for the broker to hand their first messages, credential included, back."""
    settings, index = worker_settings(), worker_index()
    if settings.worker.series_access == SeriesAccess.DICOMWEB:
        return []
    with index.session() as session:
        lost = session.scalars(
            select(Job).where(
                Job.state == JobState.RUNNING,
                Job.worker == worker,
                Job.incarnation != process_incarnation(),
            )
        ).all()
        tasks = [task for job in lost if (task := requeue_job(settings, index, session, job)) is not None]
    if tasks:
        log.warning(
            "worker %s started again: queueing the job(s) it left running: %s",
            worker,
            [t.record_id for t in tasks],
        )
        send_tasks(app, index, tasks)
    return [task.record_id for task in tasks]


def load_served_pipelines(app: Celery) -> None:
    """At a worker's start: load the models of the queues it serves, not inside the first study's time."""
    settings = worker_settings()
    served = {queue.name for queue in app.amqp.queues.consume_from.values()}
    mine = [name for name in available(settings) if queue_for(settings, name) in served]
    if mine:
        cache_standard_lookups()
        load_standard_tables()
    for pipeline in mine[: settings.inference.max_loaded_pipelines]:
        try:
            worker_pipelines().get(pipeline)
        except Exception:
            # The worker stays up: its jobs for this pipeline fail with the reason, the others run.
            log.exception("pipeline %s could not be loaded", pipeline)
