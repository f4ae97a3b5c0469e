"""Hands recorded work to the broker, after the transaction that recorded it has committed."""

from __future__ import annotations

from dataclasses import dataclass

from celery import Celery

from radrouter.config.rules import Priority
from radrouter.config.settings import Settings
from radrouter.router.dispatch.contract import DELIVERY_QUEUE, TaskName, queue_for
from radrouter.router.dispatch.job_credential import credentials_of
from radrouter.storage.index import Delivery, DeliveryKind, Index, Job, utcnow

#: The tasks whose record notes that it was handed to the broker (a job's or a delivery's).
_NOTED = frozenset({TaskName.INFER, TaskName.DELIVER, TaskName.FORWARD})


@dataclass(frozen=True)
class QueuedTask:
    """A Celery task the router sends once the routing transaction has committed."""

    name: TaskName
    record_id: int
    queue: str
    priority: int
    #: A job's credential for STOW-RS of its results (``job_credential``); inference tasks only.
    credential: str | None = None


def send_tasks(celery: Celery, index: Index, tasks: list[QueuedTask]) -> None:
    """Hand tasks to the broker and note each job and delivery as dispatched; the reconciler re-sends
    any left unnoted (the broker was down, or the process died in between)."""
    sent: list[QueuedTask] = []
    try:
        for task in tasks:
            kwargs = {"credential": task.credential} if task.credential else None
            celery.send_task(
                task.name, args=[task.record_id], kwargs=kwargs, queue=task.queue, priority=task.priority
            )
            sent.append(task)
    finally:  # what did reach the broker is noted even when a later send failed
        noted = [task for task in sent if task.name in _NOTED]
        if noted:
            with index.session() as session:
                for task in noted:
                    record: Job | Delivery | None = (
                        session.get(Job, task.record_id)
                        if task.name == TaskName.INFER
                        else session.get(Delivery, task.record_id)
                    )
                    if record is not None:
                        record.dispatched_at = utcnow()


def delivery_task(
    delivery_id: int, kind: DeliveryKind, priority: int = Priority.ROUTINE.celery_priority
) -> QueuedTask:
    """The task that sends a delivery: a result's, or a series' originals (a forward)."""
    name = TaskName.FORWARD if kind == DeliveryKind.ORIGINAL else TaskName.DELIVER
    return QueuedTask(name, delivery_id, DELIVERY_QUEUE, priority)


def inference_task(settings: Settings, job_id: int, pipeline: str, priority: int) -> QueuedTask:
    """The task that runs a job, on its pipeline's queue, with the job's credential when this process
    can issue one (a process of the node; a worker with its own storage root cannot)."""
    credentials = credentials_of(settings)
    credential = credentials.issue(job_id) if credentials is not None else None
    return QueuedTask(TaskName.INFER, job_id, queue_for(settings, pipeline), priority, credential)
