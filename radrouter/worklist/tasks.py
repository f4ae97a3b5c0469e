"""Celery tasks of the worklist: triage a job's results, and send HL7 to the RIS with retries.

Both take IDs, are idempotent and acknowledge late. HL7 messages are built when sent, from the stored
header and the result summary, so the index never holds the patient identifiers they carry.
"""

from __future__ import annotations

import logging
from typing import Any

import pydicom
from celery import shared_task
from sqlalchemy.orm import Session

from radrouter.config.settings import Settings
from radrouter.inference.results.summary import ResultSummary
from radrouter.router.dispatch.contract import DELIVERY_QUEUE, TaskName
from radrouter.router.dispatch.worker import worker_index, worker_settings
from radrouter.storage.index import (
    DeliveryState,
    Hl7Message,
    Hop,
    Job,
    MessageKind,
    ResultKind,
    WorklistItem,
    utcnow,
)
from radrouter.worklist import hl7
from radrouter.worklist.reading_list import ReadingList
from radrouter.worklist.triage import evaluate

log = logging.getLogger(__name__)


@shared_task(name=TaskName.TRIAGE, bind=True, acks_late=True)
def triage(self: Any, job_id: int) -> None:
    """Apply the triage rules to a finished job's results, then queue its HL7 messages."""
    outcome = ReadingList(worker_settings(), worker_index()).apply_results(job_id)
    for message_id in outcome.messages:
        self.app.send_task(
            TaskName.HL7, args=[message_id], queue=DELIVERY_QUEUE, priority=0 if outcome.escalated else None
        )
    with worker_index().session() as session:
        job = session.get(Job, job_id)
        if job is not None:
            job.triaged_at = utcnow()  # after its messages are queued: a rerun finds them, sends none twice


def compose(settings: Settings, session: Session, message: Hl7Message) -> str:
    """The text of ``message``: ORU^R01 with the job's results, or OMI^O01 with the study's new class."""
    job = session.get(Job, message.job_id)
    assert job is not None
    first_instance = job.study.series[0].instances[0]
    order = hl7.Order.from_header(pydicom.dcmread(first_instance.path, stop_before_pixels=True))
    if message.kind == MessageKind.OMI:
        item = session.get(WorklistItem, message.study_uid)
        assert item is not None
        return hl7.priority_update_message(
            settings.worklist.hl7,
            message.control_id,
            order,
            item.priority,
            item.reason or "",
            utcnow(),
        )
    report = next(result for result in job.results if result.kind == ResultKind.SR)
    summary = ResultSummary.of_row(report.summary)
    matches = evaluate(settings.worklist.triage_rules, summary)
    return hl7.results_message(settings.worklist.hl7, message.control_id, order, summary, matches, utcnow())


@shared_task(name=TaskName.HL7, bind=True, acks_late=True, max_retries=None)
def send_hl7(self: Any, message_id: int) -> None:
    """Send one message and await its ACK; every attempt is recorded, failures retry with backoff."""
    settings, index = worker_settings(), worker_index()
    with index.session() as session:
        message = session.get(Hl7Message, message_id)
        if message is None or message.state != DeliveryState.PENDING:
            return
        message.attempts += 1
        attempt, study_uid, control_id, kind = (
            message.attempts,
            message.study_uid,
            message.control_id,
            message.kind,
        )
        text = compose(settings, session, message)
    try:
        code = hl7.send(settings.worklist.hl7, text, control_id)
    except hl7.Hl7Error as error:
        give_up = isinstance(error, hl7.Hl7Rejected) or attempt >= settings.worklist.hl7.max_attempts
        with index.session() as session:
            failed = session.get(Hl7Message, message_id)
            assert failed is not None
            failed.last_error = str(error)[:500]
            hop = Hop.HL7_FAILED if give_up else Hop.HL7_ATTEMPT
            index.record_event(session, study_uid, hop, message=kind, attempt=attempt, error=str(error)[:200])
            if give_up:
                failed.state = DeliveryState.FAILED
        if give_up:
            log.error("HL7 %s %s failed after %d attempts", kind, control_id, attempt)
            return
        backoff = settings.worklist.hl7
        raise self.retry(
            countdown=min(backoff.backoff_max_s, backoff.backoff_initial_s * 2 ** (attempt - 1)), exc=error
        ) from error
    with index.session() as session:
        done = session.get(Hl7Message, message_id)
        assert done is not None
        done.state, done.ack_code, done.acked_at, done.last_error = (
            DeliveryState.DELIVERED,
            code,
            utcnow(),
            None,
        )
        index.record_event(
            session, study_uid, Hop.HL7_ACKED, message=kind, control_id=control_id, attempt=attempt
        )
