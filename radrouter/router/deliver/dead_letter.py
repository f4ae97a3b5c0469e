"""Deliveries that gave up (the dead-letter state, FAILED): listed for the API and sent again on request."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from celery import Celery
from sqlalchemy import select

from radrouter.router.deliver.view import DeliveryView
from radrouter.router.dispatch.retry import NotRetryable
from radrouter.router.dispatch.send import delivery_task, send_tasks
from radrouter.storage.index import (
    Delivery,
    DeliveryState,
    Hop,
    Index,
    Study,
    StudyState,
    utcnow,
)


def dead_letters(index: Index, limit: int = 1000) -> list[dict[str, Any]]:
    with index.session() as session:
        rows = session.scalars(
            select(Delivery).where(Delivery.state == DeliveryState.FAILED).order_by(Delivery.id).limit(limit)
        ).all()
        return [DeliveryView.of(row).as_json() for row in rows]


def retry_deliveries(
    index: Index, celery: Celery, delivery_ids: Sequence[int] | None = None, by: str | None = None
) -> list[int]:
    """Put dead-lettered deliveries (all, or those named) back to PENDING and queue them; return their IDs.
    ``by``: who asked (a user or token of the web app), for the audit.

    Each gets a fresh round of attempts; its study goes back to PROCESSING until they settle.
    """
    with index.session() as session:
        query = select(Delivery).where(Delivery.state == DeliveryState.FAILED)
        if delivery_ids is not None:
            query = query.where(Delivery.id.in_(delivery_ids))
        rows = session.scalars(query.order_by(Delivery.id)).all()
        for delivery in rows:
            delivery.state, delivery.attempts, delivery.pending_since = DeliveryState.PENDING, 0, utcnow()
            study_uid = delivery.owning_study_uid
            study = session.get(Study, study_uid)
            if study is not None and study.state == StudyState.FAILED:
                study.state, study.reason = StudyState.PROCESSING, None
            index.record_event(
                session,
                study_uid,
                Hop.DELIVERY_RETRY,
                delivery=delivery.id,
                destination=delivery.destination,
                user=by,
            )
        retried = [(delivery.id, delivery.kind) for delivery in rows]
    send_tasks(celery, index, [delivery_task(delivery_id, kind) for delivery_id, kind in retried])
    return [delivery_id for delivery_id, _ in retried]


def retry_delivery(index: Index, celery: Celery, delivery_id: int, by: str | None = None) -> None:
    """The dashboard's retry of one delivery."""
    if not retry_deliveries(index, celery, [delivery_id], by):
        raise NotRetryable(f"delivery {delivery_id} is not a dead-lettered delivery")
