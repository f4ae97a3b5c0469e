"""Work a lost worker left behind goes back on its queue: its RUNNING jobs, the deliveries it retried,
the triage and monitoring of finished jobs it had not recorded.

A worker is known lost in two ways: it starts again (a new incarnation under the same name), or its
heartbeat expires (the SCP's reconciler). Both hand the work on here, the same way. Triage and
monitoring record no worker; a finished job whose aftercare was sent and not recorded after a while is
sent again.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from radrouter.config.settings import Settings
from radrouter.router.dispatch.contract import DELIVERY_QUEUE, TaskName
from radrouter.router.dispatch.send import QueuedTask, delivery_task, inference_task
from radrouter.storage.index import Delivery, Hop, Index, Job, JobState, StudyState, settle_study, utcnow


def requeue_job(settings: Settings, index: Index, session: Session, job: Job) -> QueuedTask | None:
    """Put a RUNNING job of a lost worker back to QUEUED (its study to ROUTED); the task to send. A job
    whose worker has been lost ``inference.max_worker_losses`` times fails instead (None): the series
    itself is what kills its worker."""
    lost_worker = job.worker
    job.worker_losses = (job.worker_losses or 0) + 1
    if job.worker_losses >= settings.inference.max_worker_losses:
        job.state, job.finished_at = JobState.FAILED, utcnow()
        job.error = (
            f"the worker running this job was lost {job.worker_losses} times (killed, or out of memory):"
            " not tried again"
        )
        index.record_event(session, job.study_uid, Hop.INFERENCE_FAILED, job=job.id, reason=job.error)
        settle_study(session, job.study_uid)
        return None
    job.state, job.started_at = JobState.QUEUED, None
    job.study.state = StudyState.ROUTED
    index.record_event(session, job.study_uid, Hop.RECOVERED, job=job.id, lost_worker=lost_worker)
    return inference_task(settings, job.id, job.pipeline, job.priority.celery_priority)


def requeue_delivery(settings: Settings, index: Index, session: Session, delivery: Delivery) -> QueuedTask:
    """Hand on a PENDING delivery whose retry died with its worker; the task to send."""
    lost_worker = delivery.worker
    delivery.incarnation = None  # handed on: the next attempt records its own worker
    index.record_event(
        session, delivery.owning_study_uid, Hop.RECOVERED, delivery=delivery.id, lost_worker=lost_worker
    )
    return delivery_task(delivery.id, delivery.kind, settings.default_priority.celery_priority)


def requeue_aftercare(
    settings: Settings, index: Index, session: Session, sent_before: datetime
) -> list[QueuedTask]:
    """The triage and monitoring tasks of DONE jobs that were sent before ``sent_before`` and have not
    recorded their work: idempotent tasks, sent once more (and the clock starts again)."""
    jobs = session.scalars(
        select(Job).where(
            Job.state == JobState.DONE,
            Job.aftercare_sent_at < sent_before,
            or_(Job.triaged_at.is_(None), Job.monitored_at.is_(None)),
        )
    ).all()
    priority = settings.default_priority.celery_priority
    tasks = []
    for job in jobs:
        job.aftercare_sent_at = utcnow()
        recorded = ((TaskName.TRIAGE, job.triaged_at), (TaskName.MONITOR, job.monitored_at))
        undone = [name for name, at in recorded if at is None]
        index.record_event(
            session, job.study_uid, Hop.RECOVERED, job=job.id, aftercare=[str(name) for name in undone]
        )
        tasks += [QueuedTask(name, job.id, DELIVERY_QUEUE, priority) for name in undone]
    return tasks
