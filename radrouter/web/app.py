"""The web app: a JSON API over the index (studies and their hops) and Prometheus metrics."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, HTTPException, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from sqlalchemy import func, select

import radrouter
from radrouter.config.settings import Settings
from radrouter.monitoring.service import keep_alerts_current
from radrouter.router.deliver.view import DeliveryView
from radrouter.router.dispatch.contract import celery_app
from radrouter.router.dispatch.job_credential import credentials_of
from radrouter.router.receive.self_check import CachedEcho
from radrouter.storage.index import Index, Job, Result, Study, StudyState, utc_iso
from radrouter.storage.steps import steps_of
from radrouter.storage.store import InstanceStore
from radrouter.web import audit, deliveries
from radrouter.web.access import Role, require
from radrouter.web.access.setup import protect
from radrouter.web.configuration import configuration_router
from radrouter.web.dashboard import dashboard_router
from radrouter.web.dicomweb import dicomweb_router
from radrouter.web.health import node_checks
from radrouter.web.layout import mount_static
from radrouter.web.monitoring import monitoring_parts
from radrouter.web.pipelines import pipelines_router
from radrouter.web.prometheus import NodeCollector
from radrouter.web.routing import routing_api
from radrouter.web.stow import stow_router
from radrouter.web.ups import ups_events_router, ups_router
from radrouter.web.worklist import worklist_router


def _job(job: Job) -> dict[str, Any]:
    return {
        "id": job.id,
        "series_uid": job.series_uid,
        "pipeline": job.pipeline,
        "revision": job.revision,
        "priority": job.priority,
        "rule": job.rule,
        "state": job.state.value,
        "error": job.error,
        "repairs": job.repairs,
        "queued_at": utc_iso(job.queued_at),
        "started_at": utc_iso(job.started_at),
        "finished_at": utc_iso(job.finished_at),
        "triaged_at": utc_iso(job.triaged_at),
        "monitored_at": utc_iso(job.monitored_at),
        "timings": job.timings,
    }


def _result(result: Result) -> dict[str, Any]:
    return {
        "id": result.id,
        "job_id": result.job_id,
        "kind": result.kind,
        "sop_uid": result.sop_uid,
        "sop_class_uid": result.sop_class_uid,
        "series_uid": result.series_uid,
        "summary": result.summary,
        "created_at": utc_iso(result.created_at),
    }


class _StudyStateCollector:
    """Studies by state, read from the index at scrape time so every process agrees."""

    def __init__(self, index: Index) -> None:
        self.index = index

    def collect(self) -> Any:
        gauge = GaugeMetricFamily("radrouter_studies", "Studies by state", labels=["state"])
        with self.index.session() as session:
            counts = dict(session.execute(select(Study.state, func.count()).group_by(Study.state)).all())
        for state in StudyState:
            gauge.add_metric([state.value], counts.get(state, 0))
        yield gauge


VIEWER = require(Role.VIEWER)


def create_app(settings: Settings, index: Index | None = None) -> FastAPI:
    index = index or Index(settings.storage.resolved_index_url())
    registry = CollectorRegistry()
    registry.register(_StudyStateCollector(index))
    celery = celery_app(settings)
    registry.register(NodeCollector(settings, index, celery))
    monitoring_api, drift_alerts, monitor = monitoring_parts(settings, index)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        # Drift alerts are refreshed after each result and on this timer; pages and scrapes only read.
        stop = keep_alerts_current(monitor, settings.monitoring.check_interval_s)
        yield
        stop.set()

    # No docs routes of FastAPI's own: protect() adds /docs and /openapi.json for admins only.
    app = FastAPI(
        title="radrouter",
        version=radrouter.__version__,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.state.settings, app.state.index = settings, index
    protect(app, settings)
    # Every route declares the role it needs (tests/web/test_access_routes.py enumerates them).
    app.include_router(audit.router)
    app.include_router(deliveries.router)
    app.include_router(worklist_router(settings, index))
    app.include_router(monitoring_api)
    registry.register(drift_alerts)
    echo_scp = CachedEcho(settings.node)
    app.include_router(dashboard_router(settings, index, celery, echo_scp))
    app.include_router(configuration_router(settings))
    mount_static(app)
    store = InstanceStore(settings.storage.root, settings.storage.fsync)
    app.include_router(dicomweb_router(index, store))  # each route declares its role
    # STOW-RS takes no sign-in: each object needs the credential of the job it is a result of.
    job_credentials = credentials_of(settings)
    if job_credentials is not None:
        limits = settings.web.max_request_mb * 2**20, settings.storage.free_space_reserve_mb * 2**20
        app.include_router(stow_router(index, store, job_credentials, *limits))
    app.include_router(ups_router(index), dependencies=[require(Role.ADMIN)])  # outside Task Performers
    app.include_router(ups_events_router(settings, index))  # a WebSocket: checks its token itself

    @app.get("/api/health", dependencies=[require(Role.VIEWER, public_if=lambda s: s.web.public_health)])
    def health() -> dict[str, Any]:
        checks = node_checks(settings, index, echo_scp)
        healthy = all(value == "ok" for value in checks.values())
        return {"status": "ok" if healthy else "degraded", "version": radrouter.__version__, "checks": checks}

    @app.get("/api/studies", dependencies=[VIEWER])
    def studies(limit: int = 100) -> list[dict[str, Any]]:
        with index.session() as session:
            rows = session.scalars(select(Study).order_by(Study.last_received_at.desc()).limit(limit)).all()
            return [
                {
                    "study_uid": study.uid,
                    "state": study.state.value,
                    "reason": study.reason,
                    "revision": study.revision,
                    "series": len(study.series),
                    "last_received_at": utc_iso(study.last_received_at),
                    "completed_at": utc_iso(study.completed_at),
                }
                for study in rows
            ]

    @app.get("/api/studies/{study_uid}", dependencies=[VIEWER])
    def study(study_uid: str) -> dict[str, Any]:
        with index.session() as session:
            found = session.get(Study, study_uid)
            if found is None:
                raise HTTPException(status_code=404, detail=f"no study {study_uid}")
            results = [result for job in found.jobs for result in job.results]
            return {
                "study_uid": found.uid,
                "state": found.state.value,
                "reason": found.reason,
                "revision": found.revision,
                "calling_ae": found.calling_ae,
                "first_received_at": utc_iso(found.first_received_at),
                "last_received_at": utc_iso(found.last_received_at),
                "completed_at": utc_iso(found.completed_at),
                "series": [
                    {
                        "series_uid": s.uid,
                        "modality": s.modality,
                        "series_number": s.series_number,
                        "description": s.description,
                        "instances": len(s.instances),
                    }
                    for s in found.series
                ],
                "jobs": [_job(job) for job in found.jobs],
                "results": [_result(result) for result in results],
                "deliveries": [DeliveryView.of(d).as_json() for result in results for d in result.deliveries],
                "forwards": [DeliveryView.of(d).as_json() for d in found.forwards],
                "performed_steps": steps_of(index, found.uid),
                "events": [
                    {"hop": e.hop.value, "at": utc_iso(e.at), "detail": e.detail} for e in found.events
                ],
            }

    app.include_router(routing_api(settings, index), dependencies=[VIEWER])
    app.include_router(pipelines_router(settings), dependencies=[require(Role.ADMIN)])

    @app.get("/metrics", dependencies=[require(Role.ADMIN, public_if=lambda s: s.web.public_metrics)])
    def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return app
