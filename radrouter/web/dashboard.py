"""The admin's dashboard: is the node healthy, what came in and out, what waits, what failed.

Server-rendered (Jinja2, charts as server-side SVG); the retry buttons POST JSON with the CSRF token
(``radrouter.js``) and reload. The configuration is one click away on its own page (``/config``).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any

from celery import Celery
from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse
from kombu.exceptions import OperationalError as BrokerUnavailable
from sqlalchemy import select

from radrouter.config.settings import Settings
from radrouter.router.deliver.dead_letter import retry_delivery
from radrouter.router.deliver.view import DeliveryView
from radrouter.router.dispatch.retry import NotRetryable, retry_job
from radrouter.storage.index import Delivery, DeliveryState, Hop, Index, Job, JobState, Study, utcnow
from radrouter.storage.node_status import read_node_status
from radrouter.web.access import Principal, Role, require
from radrouter.web.activity import activity, activity_chart
from radrouter.web.health import destination_health, node_checks
from radrouter.web.layout import render
from radrouter.web.prometheus import node_storage, queue_depths, served_queues

HOPS_SHOWN = (Hop.COMPLETE, Hop.ROUTED, Hop.INFERENCE_STARTED, Hop.INFERRED, Hop.DELIVERED)


def _hop_times(study: Study) -> dict[str, float]:
    """Seconds from the first instance to the first time each later hop happened."""
    seen: dict[str, datetime] = {}
    for event in study.events:
        seen.setdefault(event.hop.value, event.at)
    return {
        hop.value: round((seen[hop.value] - study.first_received_at).total_seconds(), 1)
        for hop in HOPS_SHOWN
        if hop.value in seen
    }


def _workers(celery: Celery) -> dict[str, list[str]] | None:
    """Each worker that answers within a second, with the queues it serves (Celery's inspect API)."""
    try:
        answers = celery.control.inspect(timeout=1.0).active_queues()
    except (BrokerUnavailable, OSError):
        return None
    return {name: sorted(q["name"] for q in queues) for name, queues in sorted((answers or {}).items())}


def _failures(index: Index) -> dict[str, Any]:
    with index.session() as session:
        failed_jobs = session.scalars(
            select(Job).where(Job.state == JobState.FAILED).order_by(Job.id.desc()).limit(50)
        ).all()
        dead = session.scalars(
            select(Delivery)
            .where(Delivery.state == DeliveryState.FAILED)
            .order_by(Delivery.id.desc())
            .limit(50)
        ).all()
        return {
            "failed_jobs": [
                {"id": j.id, "study": j.study_uid, "pipeline": j.pipeline, "error": j.error}
                for j in failed_jobs
            ],
            "dead_deliveries": [DeliveryView.of(d) for d in dead],
        }


def _recent_studies(index: Index) -> list[dict[str, Any]]:
    with index.session() as session:
        studies = session.scalars(select(Study).order_by(Study.last_received_at.desc()).limit(20)).all()
        return [
            {"uid": s.uid, "state": s.state.value, "reason": s.reason, "hops": _hop_times(s)} for s in studies
        ]


def dashboard_router(
    settings: Settings, index: Index, celery: Celery, echo_scp: Callable[[], str]
) -> APIRouter:
    router = APIRouter(tags=["dashboard"], dependencies=[require(Role.ADMIN)])

    @router.get("/dashboard", response_class=HTMLResponse)
    def dashboard(request: Request) -> HTMLResponse:
        try:
            queues: dict[str, int] | None = queue_depths(celery, served_queues(settings))
        except (BrokerUnavailable, OSError):
            queues = None
        seen = activity(index, utcnow())
        checks = node_checks(settings, index, echo_scp)
        context: dict[str, Any] = {
            "checks": checks,
            "healthy": all(value == "ok" for value in checks.values()),
            "destinations": destination_health(settings, index),
            "activity": seen,
            "chart": activity_chart(seen),
            "storage": node_storage(settings, index).as_json(),
            "studies": _recent_studies(index),
            "hops": [hop.value for hop in HOPS_SHOWN],
            "queues": queues,
            "workers": _workers(celery),
            "processes": read_node_status(settings.storage.root),
            **_failures(index),
        }
        return render(request, "dashboard.html", context)

    @router.get("/api/storage")
    def storage_status() -> dict[str, Any]:
        """The dashboard's storage panel as JSON: the volume, bytes by study state, what may be purged,
        and whether the SCP is refusing with nothing to purge (``stuck``, with ``why``)."""
        return node_storage(settings, index).as_json()

    def _retry(action: Callable[[], None], what: dict[str, int]) -> dict[str, Any]:
        try:
            action()
        except NotRetryable as error:
            raise HTTPException(409, str(error)) from error
        return {**what, "retried": True}

    @router.post("/dashboard/jobs/{job_id}/retry")
    def retry_failed_job(job_id: int, by: Annotated[Principal, require(Role.ADMIN)]) -> dict[str, Any]:
        return _retry(lambda: retry_job(settings, index, celery, job_id, by.actor), {"job": job_id})

    @router.post("/dashboard/deliveries/{delivery_id}/retry")
    def retry_dead_delivery(
        delivery_id: int, by: Annotated[Principal, require(Role.ADMIN)]
    ) -> dict[str, Any]:
        return _retry(lambda: retry_delivery(index, celery, delivery_id, by.actor), {"delivery": delivery_id})

    return router
