"""The Celery task that adds a finished job's report to its pipeline's monitoring series."""

from __future__ import annotations

from celery import shared_task

from radrouter.monitoring.service import Monitor
from radrouter.router.dispatch.contract import TaskName
from radrouter.router.dispatch.worker import worker_index, worker_settings
from radrouter.storage.index import Job, utcnow


@shared_task(name=TaskName.MONITOR, acks_late=True)
def monitor(job_id: int) -> None:
    """Record the job's result with its input descriptors, then bring the drift alerts up to date."""
    watcher = Monitor(worker_settings(), worker_index())
    watcher.record_job(job_id)
    with worker_index().session() as session:
        job = session.get(Job, job_id)
        if job is not None:
            job.monitored_at = utcnow()
    watcher.check()
