"""The reconciler sends what was recorded but never reached the broker: a job's deliveries too."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from radrouter.config.rules import Priority
from radrouter.config.settings import Settings
from radrouter.node.broker import EmbeddedRedis
from radrouter.router.dispatch.contract import DELIVERY_QUEUE, celery_app
from radrouter.router.dispatch.recovery import StudyReconciler
from radrouter.storage.index import (
    Delivery,
    DeliveryState,
    Index,
    Job,
    JobState,
    Result,
    ResultKind,
    Series,
    Study,
    StudyState,
    utcnow,
)
from radrouter.web.prometheus import queue_depths
from tests.services import free_port


def test_deliveries_a_broker_outage_kept_from_the_broker_are_sent_once(tmp_path: Path) -> None:
    """The job ended while Redis was down: its deliveries are in the index, PENDING, never sent."""
    broker = EmbeddedRedis(free_port(), tmp_path / "redis")
    broker.start()
    try:
        settings = Settings(storage={"root": tmp_path}, broker={"url": broker.url})
        index = Index(settings.storage.resolved_index_url())
        a_minute_ago = utcnow() - timedelta(minutes=1)
        with index.session() as session:
            session.add(Study(uid="1.2", state=StudyState.PROCESSING))
            session.flush()
            session.add(Series(uid="1.2.1", study_uid="1.2"))
            session.flush()
            job = Job(study_uid="1.2", series_uid="1.2.1", pipeline="p", priority=Priority.ROUTINE, rule="r")
            job.state = JobState.DONE
            session.add(job)
            session.flush()
            result = Result(
                job_id=job.id,
                kind=ResultKind.SR,
                sop_uid="1.2.9",
                sop_class_uid="1",
                series_uid="1.2.8",
                path="x",
            )
            session.add(result)
            session.flush()
            unsent = Delivery(result_id=result.id, destination="pacs", created_at=a_minute_ago)
            sent = Delivery(
                result_id=result.id, destination="other", created_at=a_minute_ago, dispatched_at=a_minute_ago
            )
            session.add_all([unsent, sent])
            session.flush()
            unsent_id = unsent.id
        celery = celery_app(settings)
        reconciler = StudyReconciler(settings, index, celery, lambda _: None, lambda: [])

        assert reconciler.run_once().deliveries_redispatched == [unsent_id]
        assert reconciler.run_once().deliveries_redispatched == [], "sent twice"
        assert queue_depths(celery, [DELIVERY_QUEUE]) == {DELIVERY_QUEUE: 1}
        with index.session() as session:
            delivery = session.get(Delivery, unsent_id)
            assert delivery is not None and delivery.dispatched_at is not None
            assert delivery.state == DeliveryState.PENDING
    finally:
        broker.stop()


def test_triage_and_monitoring_a_dead_worker_held_are_sent_again_once(tmp_path: Path) -> None:
    """Jobs whose triage or monitoring was sent a while ago and never recorded get those tasks again
    (the delivery worker that held them was killed); recent, recorded and never-sent ones do not."""
    broker = EmbeddedRedis(free_port(), tmp_path / "redis")
    broker.start()
    try:
        settings = Settings(storage={"root": tmp_path}, broker={"url": broker.url})
        index = Index(settings.storage.resolved_index_url())
        long_ago = utcnow() - timedelta(seconds=settings.recovery.aftercare_after_s + 60)
        with index.session() as session:
            session.add(Study(uid="1.3", state=StudyState.DONE))
            session.flush()
            session.add(Series(uid="1.3.1", study_uid="1.3"))
            session.flush()
            cases = {
                # name: (sent, triaged, monitored)
                "lost": (long_ago, None, None),
                "monitoring-lost": (long_ago, long_ago, None),
                "sent-recently": (utcnow(), None, None),
                "recorded": (long_ago, long_ago, long_ago),
                "never-sent": (None, None, None),
            }
            jobs = {
                name: Job(
                    study_uid="1.3",
                    series_uid="1.3.1",
                    pipeline=name,
                    priority=Priority.ROUTINE,
                    rule="r",
                    state=JobState.DONE,
                    finished_at=long_ago,
                    aftercare_sent_at=sent,
                    triaged_at=triaged,
                    monitored_at=monitored,
                )
                for name, (sent, triaged, monitored) in cases.items()
            }
            session.add_all(jobs.values())
            session.flush()
            ids = {name: job.id for name, job in jobs.items()}
        celery = celery_app(settings)
        reconciler = StudyReconciler(settings, index, celery, lambda _: None, lambda: [])

        assert reconciler.run_once().aftercare == sorted([ids["lost"], ids["monitoring-lost"]])
        assert reconciler.run_once().aftercare == [], "sent twice"
        # lost: triage and monitoring; monitoring-lost: monitoring only
        assert queue_depths(celery, [DELIVERY_QUEUE]) == {DELIVERY_QUEUE: 3}
    finally:
        broker.stop()


def test_a_job_whose_worker_keeps_dying_fails_with_the_reason(tmp_path: Path) -> None:
    """A series that kills its worker every time (out of memory) is not taken over for ever."""
    broker = EmbeddedRedis(free_port(), tmp_path / "redis")
    broker.start()
    try:
        settings = Settings(storage={"root": tmp_path}, broker={"url": broker.url})
        index = Index(settings.storage.resolved_index_url())
        with index.session() as session:
            session.add(Study(uid="1.4", state=StudyState.PROCESSING))
            session.flush()
            session.add(Series(uid="1.4.1", study_uid="1.4"))
            session.flush()
            jobs = [
                Job(
                    study_uid="1.4",
                    series_uid="1.4.1",
                    pipeline=f"p{losses}",
                    priority=Priority.ROUTINE,
                    rule="r",
                    state=JobState.RUNNING,
                    worker="gone@host",
                    incarnation="dead",
                    worker_losses=losses,
                )
                for losses in (0, settings.inference.max_worker_losses - 1)
            ]
            session.add_all(jobs)
            session.flush()
            first, last = (job.id for job in jobs)
        reconciler = StudyReconciler(settings, index, celery_app(settings), lambda _: None, lambda: [])

        assert reconciler.run_once().taken_over == [first]
        with index.session() as session:
            again, failed = session.get(Job, first), session.get(Job, last)
            assert again is not None and failed is not None
            assert (again.state, again.worker_losses) == (JobState.QUEUED, 1)
            assert failed.state == JobState.FAILED
            assert failed.error == (
                f"the worker running this job was lost {settings.inference.max_worker_losses} times"
                " (killed, or out of memory): not tried again"
            )
    finally:
        broker.stop()
