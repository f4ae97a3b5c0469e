"""Routes a complete study and queues its work on Celery; the contract between router and workers.

The router never imports the inference code: it names tasks by string, on one queue per pipeline,
with a Celery priority (0 is served first on Redis). Tasks carry job IDs, never pixel data.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pydicom
from celery import Celery

from radrouter.config.pipelines import pool_queue
from radrouter.config.settings import Settings
from radrouter.router.rules import SeriesHeader, decide
from radrouter.storage.index import Hop, Index, Job, JobState, Study, StudyState, utcnow

log = logging.getLogger(__name__)

INFER_TASK = "radrouter.infer"
DELIVER_TASK = "radrouter.deliver"
DELIVERY_QUEUE = "delivery"


def celery_app(settings: Settings) -> Celery:
    """The Celery app producers and workers share, set up for priorities on the Redis broker."""
    app = Celery("radrouter", broker=settings.broker.resolved_url())
    app.conf.update(
        broker_transport_options={
            "priority_steps": list(range(10)),
            "sep": ":",
            "queue_order_strategy": "priority",
            "visibility_timeout": 3600,
        },
        broker_connection_retry_on_startup=True,
        worker_prefetch_multiplier=1,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_default_priority=settings.default_priority.celery_priority,
        task_default_queue=DELIVERY_QUEUE,
        task_ignore_result=True,
        worker_hijack_root_logger=False,
    )
    return app


def queue_for(settings: Settings, pipeline: str) -> str:
    """A pooled pipeline goes to its pool's queue; any other has its own, served by its own worker."""
    for pool_name, pool in settings.pools.items():
        if pipeline in pool.pipelines:
            return pool_queue(pool_name)
    return pipeline


def read_header(path: str | Path) -> pydicom.Dataset:
    return pydicom.dcmread(path, stop_before_pixels=True)


class StudyRouter:
    """Called by the assembler when a study is complete: apply the rules, record jobs, queue them."""

    def __init__(self, settings: Settings, index: Index, celery: Celery) -> None:
        self.settings = settings
        self.index = index
        self.celery = celery

    def __call__(self, study_uid: str) -> None:
        queued = self.route(study_uid)
        for job_id, pipeline, priority in queued:
            self.celery.send_task(
                INFER_TASK, args=[job_id], queue=queue_for(self.settings, pipeline), priority=priority
            )

    def route(self, study_uid: str) -> list[tuple[int, str, int]]:
        """Mark the study complete, decide its runs and record them; return (job, pipeline, priority).

        Headers are read from disk between two short transactions, so the SCP can keep indexing other
        studies meanwhile. An instance that arrives in between makes this call give way: the assembler
        completes the study again once it is quiet.
        """
        with self.index.session() as session:
            study = session.get(Study, study_uid)
            if study is None or study.state != StudyState.RECEIVING:
                return []
            seen_last = study.last_received_at
            calling_ae = study.calling_ae or ""
            first_paths = {
                series.uid: series.instances[0].path for series in study.series if series.instances
            }
        headers = [
            SeriesHeader(series_uid, read_header(path), calling_ae, self.settings.node.ae_title)
            for series_uid, path in first_paths.items()
        ]
        decision = decide(self.settings.rules, headers)

        queued: list[tuple[int, str, int]] = []
        with self.index.session() as session:
            study = session.get(Study, study_uid)
            if study is None or study.state != StudyState.RECEIVING or study.last_received_at != seen_last:
                return []
            now = utcnow()
            study.state, study.completed_at, study.reason = StudyState.COMPLETE, now, None
            self.index.record_event(
                session,
                study_uid,
                Hop.COMPLETE,
                revision=study.revision,
                instances=sum(len(series.instances) for series in study.series),
                quiet_s=round((now - study.last_received_at).total_seconds(), 3),
            )
            for run in decision.runs:
                job = Job(
                    study_uid=study_uid,
                    series_uid=run.series_uid,
                    pipeline=run.pipeline,
                    revision=study.revision,
                    priority=run.priority.value,
                    rule=",".join(run.rules),
                    destinations={"results_to": run.results_to},
                    state=JobState.QUEUED,
                )
                session.add(job)
                session.flush()
                queued.append((job.id, run.pipeline, run.priority.celery_priority))
                self.index.record_event(
                    session,
                    study_uid,
                    Hop.QUEUED,
                    job=job.id,
                    pipeline=run.pipeline,
                    priority=run.priority.value,
                )
            study.state = StudyState.ROUTED if queued else StudyState.DONE
            study.reason = None if queued else "no rule asked for a pipeline"
            self.index.record_event(
                session, study_uid, Hop.ROUTED, matched=decision.matched, jobs=len(queued)
            )
        return queued
