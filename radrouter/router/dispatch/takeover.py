"""Work a lost worker left behind goes back on its queue: its RUNNING jobs, the deliveries it retried.

A worker is known lost in two ways: it starts again (a new incarnation under the same name), or its
heartbeat expires (the SCP's reconciler). Both hand the work on here, the same way.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from radrouter.config.settings import Settings
from radrouter.router.dispatch.contract import TaskName, queue_for
from radrouter.router.dispatch.send import QueuedTask, delivery_task
from radrouter.storage.index import Delivery, Hop, Index, Job, JobState, StudyState


def requeue_job(settings: Settings, index: Index, session: Session, job: Job) -> QueuedTask:
    """Put a RUNNING job of a lost worker back to QUEUED (its study to ROUTED); the task to send."""
    lost_worker = job.worker
    job.state, job.started_at = JobState.QUEUED, None
    job.study.state = StudyState.ROUTED
    index.record_event(session, job.study_uid, Hop.RECOVERED, job=job.id, lost_worker=lost_worker)
    return QueuedTask(TaskName.INFER, job.id, queue_for(settings, job.pipeline), job.priority.celery_priority)


def requeue_delivery(settings: Settings, index: Index, session: Session, delivery: Delivery) -> QueuedTask:
    """Hand on a PENDING delivery whose retry died with its worker; the task to send."""
    lost_worker = delivery.worker
    delivery.incarnation = None  # handed on: the next attempt records its own worker
    index.record_event(
        session, delivery.owning_study_uid, Hop.RECOVERED, delivery=delivery.id, lost_worker=lost_worker
    )
    return delivery_task(delivery.id, delivery.kind, settings.default_priority.celery_priority)
