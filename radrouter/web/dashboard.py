"""The operator's dashboard: studies and their hops, queues and workers, what failed, the config in use.

Server-rendered HTML (Jinja2), no JavaScript: the retry buttons are forms that POST and come back here.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import yaml
from celery import Celery
from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.templating import Jinja2Templates
from kombu.exceptions import OperationalError as BrokerUnavailable
from sqlalchemy import select
from sqlalchemy.engine import make_url

from radrouter.config.settings import Settings
from radrouter.router.deliver.dead_letter import retry_delivery
from radrouter.router.deliver.view import DeliveryView
from radrouter.router.dispatch.retry import NotRetryable, retry_job
from radrouter.storage.index import Delivery, DeliveryState, Hop, Index, Job, JobState, Study
from radrouter.storage.node_status import read_node_status
from radrouter.web.access import Principal, Role, csrf_token, require
from radrouter.web.prometheus import node_storage, queue_depths, served_queues

TEMPLATES = Jinja2Templates(directory=Path(__file__).with_name("templates"))
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


def config_in_use(settings: Settings) -> str:
    """The effective settings as YAML, with passwords in the index and broker URLs masked."""
    data = settings.model_dump(mode="json")
    for section, key in (("storage", "index_url"), ("broker", "url")):
        if data[section][key]:
            data[section][key] = make_url(data[section][key]).render_as_string(hide_password=True)
    return yaml.safe_dump(data, sort_keys=False)


def _workers(celery: Celery) -> dict[str, list[str]] | None:
    """Each worker that answers within a second, with the queues it serves (Celery's inspect API)."""
    try:
        answers = celery.control.inspect(timeout=1.0).active_queues()
    except (BrokerUnavailable, OSError):
        return None
    return {name: sorted(q["name"] for q in queues) for name, queues in sorted((answers or {}).items())}


def dashboard_router(settings: Settings, index: Index, celery: Celery) -> APIRouter:
    router = APIRouter(tags=["dashboard"], dependencies=[require(Role.ADMIN)])

    @router.get("/dashboard", response_class=HTMLResponse)
    def dashboard(request: Request) -> HTMLResponse:
        with index.session() as session:
            studies = session.scalars(select(Study).order_by(Study.last_received_at.desc()).limit(50)).all()
            study_rows = [
                {"uid": s.uid, "state": s.state.value, "reason": s.reason, "hops": _hop_times(s)}
                for s in studies
            ]
            failed_jobs = session.scalars(
                select(Job).where(Job.state == JobState.FAILED).order_by(Job.id.desc()).limit(50)
            ).all()
            job_rows = [
                {"id": j.id, "study": j.study_uid, "pipeline": j.pipeline, "error": j.error}
                for j in failed_jobs
            ]
            dead = session.scalars(
                select(Delivery)
                .where(Delivery.state == DeliveryState.FAILED)
                .order_by(Delivery.id.desc())
                .limit(50)
            ).all()
            delivery_rows = [DeliveryView.of(d) for d in dead]
        try:
            queues: dict[str, int] | None = queue_depths(celery, served_queues(settings))
        except (BrokerUnavailable, OSError):
            queues = None
        storage = node_storage(settings, index)
        context: dict[str, Any] = {
            "storage": storage.as_json(),
            "studies": study_rows,
            "hops": [hop.value for hop in HOPS_SHOWN],
            "queues": queues,
            "workers": _workers(celery),
            "processes": read_node_status(settings.storage.root),
            "failed_jobs": job_rows,
            "dead_deliveries": delivery_rows,
            "config": config_in_use(settings),
            "csrftoken": csrf_token(request),
        }
        return TEMPLATES.TemplateResponse(request, "dashboard.html", context)

    @router.get("/api/storage")
    def storage_status() -> dict[str, Any]:
        """The dashboard's storage panel as JSON: the volume, bytes by study state, what may be purged,
        and whether the SCP is refusing with nothing to purge (``stuck``, with ``why``)."""
        return node_storage(settings, index).as_json()

    def _retry(action: Callable[[], None]) -> RedirectResponse:
        try:
            action()
        except NotRetryable as error:
            raise HTTPException(409, str(error)) from error
        return RedirectResponse("/dashboard", status_code=303)

    @router.post("/dashboard/jobs/{job_id}/retry")
    def retry_failed_job(job_id: int, by: Annotated[Principal, require(Role.ADMIN)]) -> RedirectResponse:
        return _retry(lambda: retry_job(settings, index, celery, job_id, by.actor))

    @router.post("/dashboard/deliveries/{delivery_id}/retry")
    def retry_dead_delivery(
        delivery_id: int, by: Annotated[Principal, require(Role.ADMIN)]
    ) -> RedirectResponse:
        return _retry(lambda: retry_delivery(index, celery, delivery_id, by.actor))

    return router
