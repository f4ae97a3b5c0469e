"""Hands recorded work to the broker, after the transaction that recorded it has committed."""

from __future__ import annotations

from dataclasses import dataclass

from celery import Celery

from radrouter.router.dispatch.contract import TaskName
from radrouter.storage.index import Index, Job, utcnow


@dataclass(frozen=True)
class QueuedTask:
    """A Celery task the router sends once the routing transaction has committed."""

    name: TaskName
    record_id: int
    queue: str
    priority: int


def send_tasks(celery: Celery, index: Index, tasks: list[QueuedTask]) -> None:
    """Hand tasks to the broker and note each job as dispatched; the reconciler re-sends any left unnoted."""
    for task in tasks:
        celery.send_task(task.name, args=[task.record_id], queue=task.queue, priority=task.priority)
        if task.name == TaskName.INFER:
            with index.session() as session:
                job = session.get(Job, task.record_id)
                if job is not None:
                    job.dispatched_at = utcnow()
