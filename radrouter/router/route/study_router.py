"""Routes a complete study: the rules' decision becomes jobs and forwards in the index, then tasks.

The router never imports the inference code: it names tasks through ``router.dispatch``, on one queue
per pipeline, with a Celery priority (0 is served first on Redis). Tasks carry job IDs, never pixel data.
The study goes on the reading list in the same transaction, through the ``ReadingListEntry`` the
node gives it (the worklist's own code), so the router needs no import of the worklist.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Protocol

from celery import Celery
from sqlalchemy import select
from sqlalchemy.orm import Session

from radrouter.config.rules import Completion, rule_retention
from radrouter.config.settings import Settings, config_file_from_environment
from radrouter.router.dispatch.contract import DELIVERY_QUEUE, TaskName, queue_for
from radrouter.router.dispatch.send import QueuedTask, send_tasks
from radrouter.router.route.header import read_stored_headers, stored_series
from radrouter.router.route.rulebook import RuleBook
from radrouter.router.route.rules import RouteDecision, decide
from radrouter.router.route.urgency import StudyUrgency, study_urgency
from radrouter.storage.index import (
    Delivery,
    DeliveryKind,
    Hop,
    Index,
    Job,
    JobState,
    Study,
    StudyState,
    settle_study,
    utcnow,
)
from radrouter.storage.workitems import schedule_job

log = logging.getLogger(__name__)


class ReadingListEntry(Protocol):
    """Puts a complete study on the reading list, inside the routing transaction."""

    def __call__(
        self, index: Index, session: Session, study_uid: str, urgency: StudyUrgency, at: datetime
    ) -> None: ...


class StudyRouter:
    """Called by the assembler when a study is complete: apply the rules, record jobs, queue them."""

    def __init__(
        self,
        settings: Settings,
        index: Index,
        celery: Celery,
        reading_list: ReadingListEntry,
        rulebook: RuleBook | None = None,
    ) -> None:
        self.settings = settings
        self.index = index
        self.celery = celery
        self.reading_list = reading_list
        self.rulebook = rulebook or RuleBook(settings, config_file_from_environment())

    def __call__(self, study_uid: str) -> None:
        send_tasks(self.celery, self.index, self.route(study_uid))

    def route(self, study_uid: str) -> list[QueuedTask]:
        """Mark the study complete, decide its work and record it; return the tasks to send.

        Headers are read from disk between two short transactions, so the SCP can keep indexing other
        studies meanwhile. An instance that arrives in between makes this call give way: the assembler
        completes the study again once it is quiet.
        """
        with self.index.session() as session:
            study = session.get(Study, study_uid)
            if study is None or study.state != StudyState.RECEIVING:
                return []
            seen_last = study.last_received_at
            sent_as_high_priority = study.sent_as_high_priority
            sources = stored_series(study, self.settings.node.ae_title)
        routing = self.rulebook.current()
        headers = read_stored_headers(sources)
        decision = decide(routing.rules, headers, routing.tolerance_deg)
        fired = {name for names in decision.matched.values() for name in names}
        urgency = study_urgency(
            [header.dataset for header in headers],
            sent_as_high_priority,
            [rule for rule in routing.rules if rule.name in fired],
        )

        with self.index.session() as session:
            # Locked: in a cluster, a sweep on another node that lost its lease mid-call waits, then
            # finds the study ROUTED (PostgreSQL; SQLite's one writer serialises this anyway).
            study = session.scalars(
                select(Study).where(Study.uid == study_uid).with_for_update()
            ).one_or_none()
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
            self.reading_list(self.index, session, study_uid, urgency, now)
            for run in decision.runs:
                # An urgent order's inference jumps the queue too, not only its reading.
                run.priority = min(run.priority, urgency.priority, key=lambda priority: priority.rank)
            queued = self._record_jobs(session, study, decision) + self._record_forwards(
                session, study, decision
            )
            routed_early = _has_work(session, study)  # series completion may have queued some already
            study.keep_images_h, study.keep_results_h = rule_retention(
                [rule for rule in routing.rules if rule.name in fired]
            )
            study.state = StudyState.ROUTED if queued or routed_early else StudyState.DONE
            study.reason = None if queued or routed_early else "no rule asked for a pipeline or a forward"
            if study.state == StudyState.DONE:
                study.settled_at = now
            if routed_early and not queued:
                settle_study(session, study_uid)  # that work may be over already
            self.index.record_event(
                session,
                study_uid,
                Hop.ROUTED,
                matched=decision.matched,
                discarded=decision.discarded,
                jobs=len(decision.runs),
                forwards=len(decision.forwards),
                rules_generation=routing.generation,
            )
        return queued

    def series_complete(self, study_uid: str, series_uid: str) -> None:
        """Called by the assembler when one series of a study still receiving is quiet."""
        send_tasks(self.celery, self.index, self.route_series(study_uid, series_uid))

    def route_series(self, study_uid: str, series_uid: str) -> list[QueuedTask]:
        """Apply the ``completion: series`` rules to one quiet series; the study stays RECEIVING.

        All rules are evaluated on the series, so that ``stop``, ``discard`` and ``default`` mean what
        they mean at study completion; only the work a series rule asked for is recorded now. The
        study's own completion then skips what is already recorded for this revision.
        """
        routing = self.rulebook.current()
        series_rules = {rule.name for rule in routing.rules if rule.completion == Completion.SERIES}
        if not series_rules:
            return []
        with self.index.session() as session:
            study = session.get(Study, study_uid)
            if study is None or study.state != StudyState.RECEIVING:
                return []
            revision = study.revision
            sources = [s for s in stored_series(study, self.settings.node.ae_title) if s.uid == series_uid]
        decision = decide(routing.rules, read_stored_headers(sources), routing.tolerance_deg)
        decision.runs = [run for run in decision.runs if series_rules.intersection(run.rules)]
        decision.forwards = [
            forward for forward in decision.forwards if series_rules.intersection(forward.rules)
        ]
        with self.index.session() as session:
            study = session.get(Study, study_uid)
            if study is None or study.state != StudyState.RECEIVING or study.revision != revision:
                return []
            log.info(
                "series %s complete: %d job(s), %d forward(s)",
                series_uid,
                len(decision.runs),
                len(decision.forwards),
                extra={"study_uid": study_uid},
            )
            return self._record_jobs(session, study, decision) + self._record_forwards(
                session, study, decision
            )

    def _record_jobs(self, session: Session, study: Study, decision: RouteDecision) -> list[QueuedTask]:
        queued: list[QueuedTask] = []
        recorded = {
            (series_uid, pipeline)
            for series_uid, pipeline in session.query(Job.series_uid, Job.pipeline).filter(
                Job.study_uid == study.uid, Job.revision == study.revision
            )
        }
        for run in decision.runs:
            if (run.series_uid, run.pipeline) in recorded:
                continue  # queued when its series completed
            job = Job(
                study_uid=study.uid,
                series_uid=run.series_uid,
                pipeline=run.pipeline,
                revision=study.revision,
                priority=run.priority,
                rule=",".join(run.rules)[:100],
                destinations={"results_to": run.results_to},
                state=JobState.QUEUED,
            )
            session.add(job)
            session.flush()
            schedule_job(session, job)  # the job as a UPS workitem, which outside performers may claim
            priority = run.priority.celery_priority
            queued.append(
                QueuedTask(TaskName.INFER, job.id, queue_for(self.settings, run.pipeline), priority)
            )
            self.index.record_event(
                session, study.uid, Hop.QUEUED, job=job.id, pipeline=run.pipeline, priority=run.priority.value
            )
        return queued

    def _record_forwards(self, session: Session, study: Study, decision: RouteDecision) -> list[QueuedTask]:
        queued: list[QueuedTask] = []
        recorded = {
            (series_uid, destination)
            for series_uid, destination in session.query(Delivery.series_uid, Delivery.destination).filter(
                Delivery.study_uid == study.uid,
                Delivery.kind == DeliveryKind.ORIGINAL,
                Delivery.revision == study.revision,
            )
        }
        for forward in decision.forwards:
            if (forward.series_uid, forward.destination) in recorded:
                continue  # queued when its series completed
            delivery = Delivery(
                kind=DeliveryKind.ORIGINAL,
                study_uid=study.uid,
                series_uid=forward.series_uid,
                revision=study.revision,
                rule=",".join(forward.rules)[:100],
                destination=forward.destination,
            )
            session.add(delivery)
            session.flush()
            priority = self.settings.default_priority.celery_priority
            queued.append(QueuedTask(TaskName.FORWARD, delivery.id, DELIVERY_QUEUE, priority))
            self.index.record_event(
                session,
                study.uid,
                Hop.QUEUED,
                forward=delivery.id,
                series_uid=forward.series_uid,
                destination=forward.destination,
            )
        return queued


def _has_work(session: Session, study: Study) -> bool:
    """Whether any job or forward is recorded for the study's current revision."""
    jobs = session.query(Job.id).filter(Job.study_uid == study.uid, Job.revision == study.revision)
    forwards = session.query(Delivery.id).filter(
        Delivery.study_uid == study.uid,
        Delivery.kind == DeliveryKind.ORIGINAL,
        Delivery.revision == study.revision,
    )
    return jobs.first() is not None or forwards.first() is not None
