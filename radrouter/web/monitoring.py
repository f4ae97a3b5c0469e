"""Monitoring on the web: feedback on results, drift statistics and alerts as JSON, alerts in /metrics."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import asdict
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse
from prometheus_client.core import GaugeMetricFamily, Metric
from pydantic import BaseModel, Field

from radrouter.config.settings import Settings
from radrouter.monitoring.feedback import feedback_for, record_feedback
from radrouter.monitoring.series import monitored_pipelines
from radrouter.monitoring.service import Monitor
from radrouter.storage.index import Index, Verdict, utcnow
from radrouter.web.access import Principal, Role, require
from radrouter.web.layout import render
from radrouter.web.monitoring_page import index_context, pipeline_context


class FeedbackRequest(BaseModel):
    """A radiologist's verdict on a result, optionally on one named item with the value they measured."""

    verdict: Verdict = Field(description="agree or disagree with the AI result.")
    item: str | None = Field(None, max_length=100, description="The finding code or measurement judged.")
    corrected_value: float | None = Field(None, description="The value the radiologist would report.")


class DriftAlertCollector:
    """``radrouter_drift_alert{pipeline, statistic}`` = 1 per open alert, as the last check left it."""

    def __init__(self, monitor: Monitor) -> None:
        self.monitor = monitor

    def collect(self) -> Iterator[Metric]:
        gauge = GaugeMetricFamily(
            "radrouter_drift_alert",
            "Open drift alerts (statistic outside its control limits)",
            labels=["pipeline", "statistic"],
        )
        for alert in self.monitor.alerts():
            gauge.add_metric([alert["pipeline"], alert["statistic"]], 1)
        yield gauge


def monitoring_router(monitor: Monitor, index: Index, clock: Callable[[], datetime] = utcnow) -> APIRouter:
    router = APIRouter()
    admin = [require(Role.ADMIN)]

    @router.post("/api/results/{result_id}/feedback", status_code=201)
    def feedback(
        result_id: int, request: FeedbackRequest, author: Annotated[Principal, require(Role.RADIOLOGIST)]
    ) -> dict[str, Any]:
        try:
            return record_feedback(
                index,
                result_id,
                request.verdict,
                clock(),
                request.item,
                request.corrected_value,
                author.actor,
            )
        except LookupError as error:
            raise HTTPException(status_code=404, detail=str(error)) from error

    @router.get("/api/results/{result_id}/feedback", dependencies=[require(Role.VIEWER)])
    def feedback_on(result_id: int) -> list[dict[str, Any]]:
        """Every verdict given on a result, oldest first."""
        try:
            return feedback_for(index, result_id)
        except LookupError as error:
            raise HTTPException(status_code=404, detail=str(error)) from error

    @router.get("/api/monitoring", dependencies=admin)
    def pipelines() -> dict[str, Any]:
        """Monitored pipelines and the open drift alerts."""
        with index.session() as session:
            names = monitored_pipelines(session)
        return {"pipelines": names, "alerts": monitor.alerts()}

    @router.get("/api/monitoring/alerts", dependencies=admin)
    def alerts() -> list[dict[str, Any]]:
        return monitor.alerts()

    @router.get("/monitoring", response_class=HTMLResponse, dependencies=admin)
    def index_of_pipelines(request: Request) -> HTMLResponse:
        with index.session() as session:
            names = monitored_pipelines(session)
        return render(request, "monitoring_index.html", index_context(names, monitor.alerts()))

    @router.get("/monitoring/{pipeline}", response_class=HTMLResponse, dependencies=admin)
    def page(request: Request, pipeline: str) -> HTMLResponse:
        """Charts of the pipeline's measurements, finding rate, agreement and input mix."""
        return render(request, "monitoring_pipeline.html", pipeline_context(monitor, pipeline))

    @router.get("/api/monitoring/{pipeline}/series", dependencies=admin)
    def series(pipeline: str, version: str | None = None) -> list[dict[str, Any]]:
        """Every result of the pipeline (of one model version if given) over both windows, oldest first."""
        return monitor.series(pipeline, version)

    @router.get("/api/monitoring/{pipeline}", dependencies=admin)
    def statistics(pipeline: str, version: str | None = None) -> dict[str, Any]:
        """Each statistic of the pipeline (of one model version if given): baseline, recent days with
        limits, days outside in a row."""
        windows = monitor.windows()
        return {
            "pipeline": pipeline,
            "version": version,
            "windows": {key: value.isoformat() for key, value in asdict(windows).items()},
            "statistics": [
                {
                    "statistic": s.statistic,
                    "chart": s.chart.value,
                    "baseline": asdict(s.baseline) if s.baseline else None,
                    "days": [{**asdict(d), "day": d.day.isoformat()} for d in s.days],
                    "days_outside": s.run_days,
                    "alert": s.alert,
                }
                for s in monitor.statistics(pipeline, version)
            ],
        }

    return router


def monitoring_parts(settings: Settings, index: Index) -> tuple[APIRouter, DriftAlertCollector, Monitor]:
    """The router, the metrics collector and the monitor they read (whose checks run on a timer)."""
    monitor = Monitor(settings, index)
    return monitoring_router(monitor, index), DriftAlertCollector(monitor), monitor
