"""The delivery tasks: C-STORE a result, or a series' originals, to one destination.

Thin wrappers that take IDs, are idempotent, acknowledge late and retry with backoff; every attempt is
recorded, and a delivery that cannot succeed goes to the dead-letter state with its reason.
"""

from __future__ import annotations

import logging
import tempfile
from functools import cache
from pathlib import Path
from typing import Any

from celery import Celery, shared_task
from sqlalchemy import select
from sqlalchemy.orm import Session

from radrouter.config.settings import config_file_from_environment, load_settings
from radrouter.logs import study
from radrouter.router.deliver.associations import AssociationPool
from radrouter.router.deliver.commitment import request_commitment, sent_references
from radrouter.router.deliver.deidentified import deidentified_copies
from radrouter.router.deliver.scu import DeliveryError, OutgoingObject, RefusedByDestination, send
from radrouter.router.dispatch.contract import TaskName
from radrouter.router.dispatch.send import send_tasks
from radrouter.router.dispatch.takeover import requeue_aftercare, requeue_delivery
from radrouter.router.dispatch.worker import (
    IndexUnavailable,
    process_incarnation,
    retry_until_index_writable,
    worker_index,
    worker_settings,
    worker_store,
)
from radrouter.router.route.rulebook import RuleBook
from radrouter.storage.index import (
    Delivery,
    DeliveryKind,
    DeliveryState,
    Hop,
    ResultKind,
    SentVariant,
    Series,
    settle_study,
    utcnow,
)
from radrouter.storage.store import InstanceStore

log = logging.getLogger(__name__)


@cache
def worker_rulebook() -> RuleBook:
    """Destinations as the config file says now: a destination added by a reload is reachable at once.

    Built on first use from the file as it is then (not from the settings read at start-up), so an edit
    made before a worker's first delivery is not mistaken for the start-up config."""
    return RuleBook(load_settings(), config_file_from_environment())


@cache
def worker_associations() -> AssociationPool:
    """Associations to destinations this process keeps open between deliveries."""
    return AssociationPool(worker_settings().delivery.keep_open_s)


def take_over_lost_deliveries(app: Celery, worker: str) -> list[int]:
    """At a delivery worker's start: deliveries an earlier start of this same worker was still trying
    (its retry, waiting out the backoff, died with it) are queued again at once, not at the broker's
    visibility timeout. A late copy of the old retry finds the delivery delivered and does nothing."""
    settings, index = worker_settings(), worker_index()
    with index.session() as session:
        lost = session.scalars(
            select(Delivery).where(
                Delivery.state == DeliveryState.PENDING,
                Delivery.worker == worker,
                Delivery.incarnation != process_incarnation(),
            )
        ).all()
        resend = [requeue_delivery(settings, index, session, delivery) for delivery in lost]
    send_tasks(app, index, resend)
    if resend:
        log.warning("worker %s started again: queueing %d delivery(ies) it was trying", worker, len(resend))
    return [task.record_id for task in resend]


def take_over_lost_aftercare(app: Celery) -> list[int]:
    """At a delivery worker's start: the triage and monitoring of finished jobs not yet recorded (a
    killed delivery worker held them) are sent again at once; both are idempotent."""
    settings, index = worker_settings(), worker_index()
    with index.session() as session:
        tasks = requeue_aftercare(settings, index, session, sent_before=utcnow())
    send_tasks(app, index, tasks)
    jobs = sorted({task.record_id for task in tasks})
    if jobs:
        log.warning("delivery worker started: sending the triage or monitoring of job(s) %s again", jobs)
    return jobs


def release_open_associations() -> None:
    """At a worker's shutdown: release the associations it still holds."""
    if worker_associations.cache_info().currsize:
        worker_associations().close()


@shared_task(name=TaskName.DELIVER, bind=True, acks_late=True, max_retries=None)
def deliver(self: Any, delivery_id: int) -> None:
    """C-STORE one result to one destination; every attempt is recorded, failures retry with backoff."""
    _ship_when_recordable(self, delivery_id)


def _ship_when_recordable(task: Any, delivery_id: int) -> None:
    """A delivery whose attempt cannot be recorded is tried again once the index can be written (sent
    twice at worst: a destination keeps one copy of a SOP Instance UID)."""
    try:
        _ship(task, delivery_id)
    except IndexUnavailable as error:
        raise retry_until_index_writable(task, error, f"delivery {delivery_id}") from error


@shared_task(name=TaskName.FORWARD, bind=True, acks_late=True, max_retries=None)
def forward(self: Any, delivery_id: int) -> None:
    """C-STORE a series' original files, as received (same bytes, same transfer syntax), over one
    association; recorded and retried like a result delivery."""
    _ship_when_recordable(self, delivery_id)


def _outgoing(
    session: Session, delivery: Delivery, store: InstanceStore
) -> tuple[str, list[OutgoingObject], dict[str, Any]]:
    """What a delivery sends: (study UID, files, what the DELIVERED event records)."""
    if delivery.kind == DeliveryKind.ORIGINAL:
        series = session.get(Series, delivery.series_uid)
        instances = series.instances if series is not None else []
        files = [
            OutgoingObject(
                store.resolve(instance.path),
                encoding=(instance.sop_class_uid, instance.transfer_syntax_uid),
            )
            for instance in instances
        ]
        return str(delivery.study_uid), files, {"series_uid": delivery.series_uid, "instances": len(files)}
    result = delivery.result
    assert result is not None
    fallback = store.resolve(result.fallback_path) if result.fallback_path else None
    follows = None
    if result.kind == ResultKind.SR and fallback is not None:
        # The SR on the SEG's stand-in goes where the SEG's stand-in goes (the SEG decides).
        seg = next((r for r in result.job.results if r.kind == ResultKind.SEG), None)
        follows = store.resolve(seg.path) if seg is not None else None
    files = [OutgoingObject(store.resolve(result.path), fallback, follows=follows)]
    return result.job.study_uid, files, {"sop_uid": result.sop_uid}


def _ship(task: Any, delivery_id: int) -> None:
    """Send a delivery's files; record the attempt; retry with backoff or give up after max_attempts."""
    settings, index = worker_settings(), worker_index()
    with index.session() as session:
        delivery = session.get(Delivery, delivery_id)
        if delivery is None or delivery.state != DeliveryState.PENDING:
            return
        destination_name = delivery.destination
        study_uid, outgoing, sent_detail = _outgoing(session, delivery, worker_store())
        delivery.attempts += 1
        delivery.worker, delivery.incarnation = (
            (task.request.hostname or "")[:200] or None,
            process_incarnation(),
        )
        attempt = delivery.attempts
        pending_s = (utcnow() - delivery.pending_since).total_seconds()
    destination = worker_rulebook().current().destinations.get(destination_name)
    try:
        if destination is None:
            raise DeliveryError(f"destination {destination_name!r} is not configured")
        with tempfile.TemporaryDirectory(prefix="radrouter-deid-") as scratch:
            if destination.external and destination.deidentify is not None:
                outgoing = deidentified_copies(outgoing, destination.deidentify, Path(scratch), index)
                sent_detail["deidentified"] = True
            sent = send(
                destination,
                outgoing,
                settings.node.ae_title,
                settings.delivery.timeout_s,
                worker_associations(),
            )
            if destination.storage_commitment:  # done only once the destination vouches for it all
                sent_detail["commitment"] = request_commitment(
                    destination_name,
                    destination,
                    sent_references(outgoing, sent),
                    settings.node.ae_title,
                    index,
                    settings.commitment.timeout_s,
                )
    except DeliveryError as error:
        give_up = (
            isinstance(error, RefusedByDestination)
            or attempt >= settings.delivery.max_attempts
            or pending_s >= settings.delivery.dead_letter_after_s
        )
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
        raise task.retry(countdown=delay, exc=error) from error
    with index.session() as session:
        done = session.get(Delivery, delivery_id)
        assert done is not None
        done.state, done.delivered_at, done.last_error = DeliveryState.DELIVERED, utcnow(), None
        classes = {item.sop_class_uid for item in sent}
        done.sent_sop_class_uid = classes.pop() if len(classes) == 1 else None
        if done.kind == DeliveryKind.RESULT:
            stand_in = any(item.stand_in for item in sent)
            done.sent_variant = SentVariant.STAND_IN if stand_in else SentVariant.PRIMARY
            sent_detail["variant"] = done.sent_variant.value
        index.record_event(
            session,
            study_uid,
            Hop.DELIVERED,
            delivery=delivery_id,
            destination=destination_name,
            attempt=attempt,
            **sent_detail,
        )
        settle_study(session, study_uid)
