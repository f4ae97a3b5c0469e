"""Monitoring over the index: results become time-series points, drift is checked, alerts kept and sent.

The clock is injected, so tests can walk through days; every process (worker, web app) computes the
same answer from the index.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime
from typing import Any

import httpx
import pydicom
from sqlalchemy import select

from radrouter.config.settings import Settings
from radrouter.inference.results.summary import ResultSummary
from radrouter.monitoring.descriptors import input_descriptors
from radrouter.monitoring.drift import Sample, StatisticDrift, Windows, drift
from radrouter.monitoring.series import (
    feedback_samples,
    monitored_pipelines,
    pipeline_rows,
    point_json,
    result_samples,
)
from radrouter.storage.index import (
    DriftAlert,
    Index,
    Job,
    MonitoredResult,
    ResultKind,
    Series,
    utc_iso,
    utcnow,
)

log = logging.getLogger(__name__)


def alert_json(alert: DriftAlert) -> dict[str, Any]:
    return {
        "id": alert.id,
        "pipeline": alert.pipeline,
        "statistic": alert.statistic,
        "since": alert.since.date().isoformat(),
        "raised_at": utc_iso(alert.raised_at),
        "cleared_at": utc_iso(alert.cleared_at),
        **alert.detail,
    }


class Monitor:
    """Records results as monitoring points and keeps the drift alerts of every pipeline current."""

    def __init__(self, settings: Settings, index: Index, clock: Callable[[], datetime] = utcnow) -> None:
        self.settings = settings.monitoring
        self.index = index
        self.clock = clock

    def record_job(self, job_id: int) -> int | None:
        """Add the job's report (its SR result) to its pipeline's series, once; the row id, if any."""
        with self.index.session() as session:
            job = session.get(Job, job_id)
            if job is None:
                raise LookupError(f"job {job_id} is not in the index")
            report = next((r for r in reversed(job.results) if r.kind == ResultKind.SR), None)
            if report is None:
                return None
            existing = session.scalar(select(MonitoredResult).where(MonitoredResult.result_id == report.id))
            if existing is not None:
                return existing.id
            series = session.get(Series, job.series_uid)
            assert series is not None
            header = pydicom.dcmread(series.instances[0].path, stop_before_pixels=True)
            row = MonitoredResult(
                result_id=report.id,
                study_uid=job.study_uid,
                pipeline=job.pipeline,
                version=ResultSummary.of_row(report.summary).version[:64],
                at=report.created_at,
                summary=report.summary,
                **{key: value[:64] for key, value in input_descriptors(header).items()},
            )
            session.add(row)
            session.flush()
            return row.id

    def windows(self) -> Windows:
        return Windows.ending(self.clock().date(), self.settings)

    def _since(self) -> datetime:
        return datetime.combine(self.windows().baseline_start, datetime.min.time())

    def samples(self, pipeline: str, version: str | None = None) -> list[Sample]:
        """Every sample of ``pipeline`` (one model version, if given) from the baseline window's start on."""
        with self.index.session() as session:
            rows, verdicts = pipeline_rows(session, pipeline, self._since(), version)
            return [*result_samples(rows, self.settings.finding_threshold), *feedback_samples(verdicts)]

    def statistics(self, pipeline: str, version: str | None = None) -> list[StatisticDrift]:
        """Every statistic of ``pipeline`` over the baseline and recent windows ending today."""
        return drift(self.samples(pipeline, version), self.windows(), self.settings)

    def series(self, pipeline: str, version: str | None = None) -> list[dict[str, Any]]:
        """The time series itself over both windows: one point per result, oldest first."""
        with self.index.session() as session:
            rows, _ = pipeline_rows(session, pipeline, self._since(), version)
            return [point_json(row) for row in rows]

    def alerts(self) -> list[dict[str, Any]]:
        """The open drift alerts, as the last check left them: a read, for pages, the API and /metrics."""
        with self.index.session() as session:
            open_alerts = session.scalars(
                select(DriftAlert)
                .where(DriftAlert.cleared_at.is_(None))
                .order_by(DriftAlert.pipeline, DriftAlert.statistic)
            )
            return [alert_json(alert) for alert in open_alerts]

    def check(self) -> list[dict[str, Any]]:
        """Open alerts for drifting statistics, close those back in control; send the new ones.

        Runs after each result (the monitor task) and on a timer (the web app's, every
        ``monitoring.check_interval_s``), never on a read."""
        now = self.clock()
        with self.index.session() as session:
            pipelines = monitored_pipelines(session)
        current = {(p, s.statistic): s for p in pipelines for s in self.statistics(p) if s.alert}
        with self.index.session() as session:
            open_alerts = {
                (a.pipeline, a.statistic): a
                for a in session.scalars(select(DriftAlert).where(DriftAlert.cleared_at.is_(None)))
            }
            for key, ended in open_alerts.items():
                if key not in current:
                    ended.cleared_at = now
            for (pipeline, statistic), state in current.items():
                alert = open_alerts.get((pipeline, statistic))
                if alert is None:
                    assert state.run_since is not None
                    alert = DriftAlert(
                        pipeline=pipeline,
                        statistic=statistic,
                        since=datetime.combine(state.run_since, datetime.min.time()),
                        raised_at=now,
                    )
                    session.add(alert)
                    open_alerts[(pipeline, statistic)] = alert
                last = state.days[-1]
                alert.detail = {
                    "days_outside": state.run_days,
                    "value": last.value,
                    "lower": last.lower,
                    "upper": last.upper,
                    "baseline": state.baseline.centre if state.baseline else None,
                }
            session.flush()
            active = [a for key, a in open_alerts.items() if key in current]
            for alert in active:
                if not alert.notified and self.settings.webhook_url:
                    alert.notified = self._send(alert_json(alert))
            return [alert_json(a) for a in sorted(active, key=lambda a: (a.pipeline, a.statistic))]

    def _send(self, payload: dict[str, Any]) -> bool:
        """POST one alert; a failure is logged and retried at the next check."""
        try:
            response = httpx.post(
                self.settings.webhook_url,
                json={"event": "radrouter.drift_alert", "alert": payload},
                timeout=self.settings.webhook_timeout_s,
            )
            response.raise_for_status()
        except httpx.HTTPError as error:
            log.warning("drift alert webhook failed: %s", error)
            return False
        return True


def keep_alerts_current(monitor: Monitor, interval_s: float) -> threading.Event:
    """Check now, then every ``interval_s``, on a daemon thread; set the returned event to stop."""
    stop = threading.Event()

    def loop() -> None:
        while True:
            try:
                monitor.check()
            except Exception as error:  # the index or the webhook down: the next pass tries again
                log.error("drift check failed (%s); next in %.0f s", type(error).__name__, interval_s)
            if stop.wait(interval_s):
                return

    threading.Thread(target=loop, name="drift-checks", daemon=True).start()
    return stop
