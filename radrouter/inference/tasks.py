"""Celery tasks: thin wrappers that take IDs, are idempotent, acknowledge late and retry with backoff."""

from __future__ import annotations

import logging
from typing import Any

from radrouter.inference.app import app, worker_index, worker_settings, worker_store
from radrouter.inference.run import JobRunner
from radrouter.logs import study
from radrouter.router.deliver import DeliveryError, OutgoingObject, RefusedByDestination, send
from radrouter.router.dispatch import DELIVER_TASK, DELIVERY_QUEUE, INFER_TASK
from radrouter.storage.index import Delivery, DeliveryState, Hop, settle_study, utcnow

log = logging.getLogger(__name__)


@app.task(name=INFER_TASK, bind=True, acks_late=True)
def infer(self: Any, job_id: int) -> None:
    """Run a job, then queue one delivery task per result and destination."""
    outcome = JobRunner(worker_settings(), worker_index(), worker_store()).run(
        job_id, worker=self.request.hostname or ""
    )
    for delivery_id in outcome.delivery_ids:
        app.send_task(
            DELIVER_TASK,
            args=[delivery_id],
            queue=DELIVERY_QUEUE,
            priority=self.request.delivery_info.get("priority"),
        )


@app.task(name=DELIVER_TASK, bind=True, acks_late=True, max_retries=None)
def deliver(self: Any, delivery_id: int) -> None:
    """C-STORE one result to one destination; every attempt is recorded, failures retry with backoff."""
    settings, index, store = worker_settings(), worker_index(), worker_store()
    with index.session() as session:
        delivery = session.get(Delivery, delivery_id)
        if delivery is None or delivery.state != DeliveryState.PENDING:
            return
        result, destination_name = delivery.result, delivery.destination
        study_uid = result.job.study_uid
        outgoing = OutgoingObject(
            store.resolve(result.path), store.resolve(result.fallback_path) if result.fallback_path else None
        )
        delivery.attempts += 1
        attempt = delivery.attempts
    destination = settings.destinations.get(destination_name)
    try:
        if destination is None:
            raise DeliveryError(f"destination {destination_name!r} is not configured")
        sent_class = send(destination, [outgoing], settings.node.ae_title, settings.delivery.timeout_s)[0]
    except DeliveryError as error:
        give_up = isinstance(error, RefusedByDestination) or attempt >= settings.delivery.max_attempts
        with index.session() as session:
            failed = session.get(Delivery, delivery_id)
            assert failed is not None
            failed.last_error = str(error)[:1000]
            index.record_event(
                session,
                study_uid,
                Hop.DELIVERY_ATTEMPT,
                delivery=delivery_id,
                destination=destination_name,
                attempt=attempt,
                error=str(error)[:200],
            )
            if give_up:
                failed.state = DeliveryState.FAILED
                index.record_event(
                    session, study_uid, Hop.DELIVERY_FAILED, delivery=delivery_id, attempts=attempt
                )
                settle_study(session, study_uid)
        if give_up:
            log.error(
                "delivery %d to %s failed after %d attempts",
                delivery_id,
                destination_name,
                attempt,
                extra=study(study_uid),
            )
            return
        delay = min(settings.delivery.backoff_max_s, settings.delivery.backoff_initial_s * 2 ** (attempt - 1))
        raise self.retry(countdown=delay, exc=error) from error
    with index.session() as session:
        done = session.get(Delivery, delivery_id)
        assert done is not None
        done.state, done.delivered_at, done.sent_sop_class_uid, done.last_error = (
            DeliveryState.DELIVERED,
            utcnow(),
            sent_class,
            None,
        )
        index.record_event(
            session,
            study_uid,
            Hop.DELIVERED,
            delivery=delivery_id,
            destination=destination_name,
            sop_uid=done.result.sop_uid,
            attempt=attempt,
        )
        settle_study(session, study_uid)
