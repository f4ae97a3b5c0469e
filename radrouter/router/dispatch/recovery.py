"""Finds studies and jobs a crash or a broker outage left behind, and moves them on.

- A study still RECEIVING long after its last instance, with no association open here, lost its
  completion (the SCP that tracked it in memory died): it is completed now.
- A job recorded but never handed to the broker (Redis was down when its study was routed, or the
  process died between the two) is queued again. Tasks are idempotent, so a rare second copy is harmless.

Runs in the SCP process at start-up and then every ``recovery.interval_s``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

import redis
from celery import Celery
from sqlalchemy import select

from radrouter.config.settings import Settings
from radrouter.router.dispatch.contract import TaskName, queue_for
from radrouter.router.dispatch.heartbeat import SCP, is_alive
from radrouter.router.dispatch.send import QueuedTask, delivery_task, send_tasks
from radrouter.router.dispatch.takeover import requeue_aftercare, requeue_delivery, requeue_job
from radrouter.router.dispatch.worker import process_incarnation
from radrouter.storage.index import (
    Delivery,
    DeliveryState,
    Hop,
    Index,
    Job,
    JobState,
    Study,
    StudyState,
    utcnow,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RouterReconciliation:
    """What one pass did: studies completed late, jobs sent to the broker again."""

    completed: list[str]
    redispatched: list[int]
    taken_over: list[int]
    deliveries_redispatched: list[int]
    #: Jobs whose triage or monitoring was sent again.
    aftercare: list[int]


class StudyReconciler:
    """One pass at a time; ``pending`` names the studies the local assembler still tracks."""

    def __init__(
        self,
        settings: Settings,
        index: Index,
        celery: Celery,
        complete_study: Callable[[str], None],
        pending: Callable[[], list[str]],
    ) -> None:
        self.settings = settings
        self.index = index
        self.celery = celery
        self.complete_study = complete_study
        self.pending = pending

    def run_once(self) -> RouterReconciliation:
        return RouterReconciliation(
            self._complete_stale_studies(),
            self._redispatch_jobs(),
            self._take_over_jobs_of_lost_workers(),
            self._redispatch_deliveries() + self._take_over_deliveries_of_lost_workers(),
            self._resend_aftercare(),
        )

    def _resend_aftercare(self) -> list[int]:
        """Triage and monitoring that finished jobs have not recorded ``aftercare_after_s`` after they
        were sent: the delivery worker that held the task died (nothing records which worker that was),
        or the job's worker died between committing the job and sending them."""
        sent_before = utcnow() - timedelta(seconds=self.settings.recovery.aftercare_after_s)
        with self.index.session() as session:
            tasks = requeue_aftercare(self.settings, self.index, session, sent_before)
        for task in tasks:
            log.warning("job %d: its %s was never recorded; sending it again", task.record_id, task.name)
        send_tasks(self.celery, self.index, tasks)
        return sorted({task.record_id for task in tasks})

    def _complete_stale_studies(self) -> list[str]:
        """Studies RECEIVING that no live SCP will complete: their receiver's heartbeat stopped (it was
        killed: complete them once quiet), or they have been silent for ``receiving_timeout_s``."""
        now = utcnow()
        cutoff = now - timedelta(seconds=self.settings.recovery.receiving_timeout_s)
        quiet = now - timedelta(seconds=self.settings.completion.quiet_period_s)
        with self.index.session() as session:
            receiving = session.execute(
                select(Study.uid, Study.receiver, Study.last_received_at).where(
                    Study.state == StudyState.RECEIVING, Study.last_received_at < quiet
                )
            ).all()
        mine = process_incarnation()
        others = {receiver for _, receiver, _ in receiving if receiver and receiver != mine}
        gone: set[str] = set()
        if others:
            broker = redis.Redis.from_url(self.settings.broker.resolved_url(), socket_connect_timeout=2)
            gone = {receiver for receiver in others if not is_alive(broker, SCP, receiver)}
        tracked = set(self.pending())
        completed = [
            uid
            for uid, receiver, last in receiving
            if uid not in tracked and (last < cutoff or receiver in gone)
        ]
        for study_uid in completed:
            log.warning("study %s was left RECEIVING; completing it now", study_uid)
            with self.index.session() as session:
                self.index.record_event(session, study_uid, Hop.RECOVERED, completed_late=True)
            self.complete_study(study_uid)
        return completed

    def _take_over_jobs_of_lost_workers(self) -> list[int]:
        """RUNNING jobs whose worker's heartbeat expired (its machine died, or it was killed and not
        restarted) go back on their queues; a late copy of the first message finds the job taken."""
        with self.index.session() as session:
            running = session.execute(
                select(Job.id, Job.worker, Job.incarnation).where(
                    Job.state == JobState.RUNNING, Job.incarnation.is_not(None)
                )
            ).all()
        if not running:
            return []
        broker = redis.Redis.from_url(self.settings.broker.resolved_url(), socket_connect_timeout=2)
        # One round trip per RUNNING job: a handful at any time.
        lost = [
            job_id for job_id, worker, start in running if not is_alive(broker, worker or "", start or "")
        ]
        tasks = []
        with self.index.session() as session:
            for job_id in lost:
                job = session.get(Job, job_id)
                if job is None or job.state != JobState.RUNNING:
                    continue
                log.warning("job %d: its worker %s stopped beating; queueing it again", job_id, job.worker)
                task = requeue_job(self.settings, self.index, session, job)
                if task is not None:
                    tasks.append(task)
        send_tasks(self.celery, self.index, tasks)
        return [task.record_id for task in tasks]

    def _redispatch_jobs(self) -> list[int]:
        cutoff = utcnow() - timedelta(seconds=self.settings.recovery.undispatched_after_s)
        with self.index.session() as session:
            jobs = session.execute(
                select(Job.id, Job.study_uid, Job.pipeline, Job.priority).where(
                    Job.state == JobState.QUEUED, Job.dispatched_at.is_(None), Job.queued_at < cutoff
                )
            ).all()
        for job_id, study_uid, pipeline, priority in jobs:
            log.warning("job %d was never received by the broker; queueing it again", job_id)
            queue, celery_priority = queue_for(self.settings, pipeline), priority.celery_priority
            send_tasks(self.celery, self.index, [QueuedTask(TaskName.INFER, job_id, queue, celery_priority)])
            with self.index.session() as session:
                self.index.record_event(session, study_uid, Hop.RECOVERED, redispatched_job=job_id)
        return [job_id for job_id, *_ in jobs]

    def _redispatch_deliveries(self) -> list[int]:
        """Deliveries recorded but never handed to the broker (it was down when their job ended, or
        their worker died in between): sent now, so no result waits unsent."""
        cutoff = utcnow() - timedelta(seconds=self.settings.recovery.undispatched_after_s)
        with self.index.session() as session:
            unsent = session.scalars(
                select(Delivery).where(
                    Delivery.state == DeliveryState.PENDING,
                    Delivery.dispatched_at.is_(None),
                    Delivery.created_at < cutoff,
                )
            ).all()
            tasks = []
            for delivery in unsent:
                log.warning("delivery %d was never received by the broker; queueing it again", delivery.id)
                self.index.record_event(
                    session, delivery.owning_study_uid, Hop.RECOVERED, redispatched_delivery=delivery.id
                )
                priority = self.settings.default_priority.celery_priority
                tasks.append(delivery_task(delivery.id, delivery.kind, priority))
        send_tasks(self.celery, self.index, tasks)
        return [task.record_id for task in tasks]

    def _take_over_deliveries_of_lost_workers(self) -> list[int]:
        """Deliveries whose last attempt was made by a worker whose heartbeat expired: the retry it held,
        waiting out the backoff, died with it; another delivery worker sends them now."""
        with self.index.session() as session:
            tried = session.execute(
                select(Delivery.id, Delivery.worker, Delivery.incarnation).where(
                    Delivery.state == DeliveryState.PENDING, Delivery.incarnation.is_not(None)
                )
            ).all()
        if not tried:
            return []
        broker = redis.Redis.from_url(self.settings.broker.resolved_url(), socket_connect_timeout=2)
        lost = {d for d, worker, start in tried if not is_alive(broker, worker or "", start or "")}
        tasks = []
        with self.index.session() as session:
            for delivery in session.scalars(select(Delivery).where(Delivery.id.in_(lost))):
                log.warning(
                    "delivery %d: its worker %s stopped beating; queueing it again",
                    delivery.id,
                    delivery.worker,
                )
                tasks.append(requeue_delivery(self.settings, self.index, session, delivery))
        send_tasks(self.celery, self.index, tasks)
        return [task.record_id for task in tasks]


def start_reconciler(
    settings: Settings,
    index: Index,
    celery: Celery,
    complete_study: Callable[[str], None],
    pending: Callable[[], list[str]],
    leading: Callable[[], bool] | None = None,
) -> threading.Event:
    """Run a pass now and then every ``recovery.interval_s`` on a daemon thread; set the event to stop.

    ``complete_study`` is the study router; ``pending`` names the studies the assembler still tracks.
    ``leading``, in a cluster, says whether this node holds the sweeper's lease: one node's reconciler
    passes at a time, whichever node that is now (a node that died hands it on with the lease)."""
    reconciler = StudyReconciler(settings, index, celery, complete_study, pending)
    stop = threading.Event()
    interval_s = settings.recovery.interval_s

    def loop() -> None:
        while True:
            if leading is not None and not leading():
                if stop.wait(min(interval_s, 1.0)):  # a pass as soon as this node leads
                    return
                continue
            try:
                reconciler.run_once()
            except Exception as error:
                log.error(
                    "reconciler pass failed (%s); next pass in %.0f s", type(error).__name__, interval_s
                )
            if stop.wait(interval_s):
                return

    threading.Thread(target=loop, name="reconciler", daemon=True).start()
    return stop
