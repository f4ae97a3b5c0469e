"""A pipeline's monitoring samples, read from the index: results with their inputs, and feedback.

Statistic names say what they chart: ``measurement:Brain volume`` (mean), ``finding:SCT:50960005``
(share of results calling it), ``agreement`` (share of verdicts that agree), ``input:manufacturer=GE``
(share of results from that input), ``input:version=...`` (share per model version).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from radrouter.inference.results.summary import ResultSummary
from radrouter.monitoring.descriptors import DESCRIPTORS
from radrouter.monitoring.drift import Chart, Sample
from radrouter.storage.index import Feedback, MonitoredResult, Verdict, utc_iso

AGREEMENT = "agreement"


def result_samples(rows: list[MonitoredResult], finding_threshold: float) -> Iterator[Sample]:
    """Measurements, finding calls and input mix of each result; a mix value or finding code seen in any
    result yields a 0/1 sample from every result, so a share can fall as well as rise."""
    summaries = {row.id: ResultSummary.of_row(row.summary) for row in rows}
    finding_codes = {f.code for summary in summaries.values() for f in summary.findings}
    mix_values = {(name, _descriptor(row, name)) for row in rows for name in (*DESCRIPTORS, "version")}
    for row in rows:
        day, summary = row.at.date(), summaries[row.id]
        for measurement in summary.measurements:
            yield Sample(f"measurement:{measurement.name}", Chart.MEAN, day, measurement.value)
        called = {
            f.code
            for f in summary.findings
            # A yes/no finding (no probability) that is present is called.
            if f.probability is None or f.probability >= finding_threshold
        }
        for code in finding_codes:
            yield Sample(f"finding:{code}", Chart.RATE, day, float(code in called))
        for name, value in mix_values:
            yield Sample(f"input:{name}={value}", Chart.RATE, day, float(_descriptor(row, name) == value))


def _descriptor(row: MonitoredResult, name: str) -> str:
    return str(getattr(row, name))


def feedback_samples(verdicts: list[Feedback]) -> Iterator[Sample]:
    for verdict in verdicts:
        yield Sample(AGREEMENT, Chart.RATE, verdict.at.date(), float(verdict.verdict == Verdict.AGREE))


def pipeline_rows(
    session: Session, pipeline: str, since: datetime, version: str | None = None
) -> tuple[list[MonitoredResult], list[Feedback]]:
    """The pipeline's results and feedback from ``since`` on (of one model version if given), oldest first."""
    results = select(MonitoredResult).where(MonitoredResult.pipeline == pipeline, MonitoredResult.at >= since)
    verdicts = select(Feedback).where(Feedback.pipeline == pipeline, Feedback.at >= since)
    if version is not None:
        results = results.where(MonitoredResult.version == version)
        verdicts = verdicts.where(Feedback.version == version)
    return (
        list(session.scalars(results.order_by(MonitoredResult.at))),
        list(session.scalars(verdicts.order_by(Feedback.at))),
    )


def point_json(row: MonitoredResult) -> dict[str, Any]:
    """One point of the time series: when, which model version, what input, what it measured and found."""
    summary = ResultSummary.of_row(row.summary)
    return {
        "result_id": row.result_id,
        "study_uid": row.study_uid,
        "at": utc_iso(row.at),
        "version": row.version,
        "input": {name: _descriptor(row, name) for name in DESCRIPTORS},
        "measurements": [m.model_dump(mode="json") for m in summary.measurements],
        "findings": [f.model_dump(mode="json") for f in summary.findings],
    }


def monitored_pipelines(session: Session) -> list[str]:
    return sorted(session.scalars(select(MonitoredResult.pipeline).distinct()).all())
