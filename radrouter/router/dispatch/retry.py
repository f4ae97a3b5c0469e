"""Second chances an operator gives from the dashboard: a failed job (a dead-lettered delivery's is
in ``router.deliver.dead_letter``).

The rows go back to their queued state in the index, the study reopens for settling, and the task is
sent again by name, as the router sends it the first time; the audit trail records who asked.
"""

from __future__ import annotations

from celery import Celery

from radrouter.config.settings import Settings
from radrouter.router.dispatch.send import inference_task
from radrouter.storage.index import Hop, Index, Job, JobState, StudyState


class NotRetryable(ValueError):
    """The job or delivery does not exist, has not failed, or belongs to a superseded study revision."""


def retry_job(settings: Settings, index: Index, celery: Celery, job_id: int, by: str | None = None) -> None:
    with index.session() as session:
        job = session.get(Job, job_id)
        if job is None or job.state != JobState.FAILED:
            raise NotRetryable(f"job {job_id} is not a failed job")
        if job.revision != job.study.revision:
            raise NotRetryable(f"job {job_id} ran on revision {job.revision}; the study has a newer one")
        job.state, job.error, job.started_at, job.finished_at = JobState.QUEUED, None, None, None
        job.study.state, job.study.reason = StudyState.ROUTED, None
        index.record_event(
            session, job.study_uid, Hop.QUEUED, job=job_id, pipeline=job.pipeline, retry=True, user=by
        )
        task = inference_task(settings, job_id, job.pipeline, job.priority.celery_priority)
    celery.send_task(
        task.name,
        args=[job_id],
        kwargs={"credential": task.credential},
        queue=task.queue,
        priority=task.priority,
    )
