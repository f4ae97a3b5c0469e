"""Radiologists' verdicts on results, kept with the pipeline and model version they judge.

From the API a verdict names one result; from the worklist, a verdict on reading a study applies to
the report (SR) of every pipeline run on the study's current revision.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select

from radrouter.inference.results.summary import ResultSummary
from radrouter.storage.index import Feedback, Index, Result, ResultKind, Study, Verdict, utc_iso


def _feedback(result: Result, verdict: Verdict, source: str, at: datetime, **extra: Any) -> Feedback:
    return Feedback(
        result_id=result.id,
        pipeline=result.job.pipeline,
        version=ResultSummary.of_row(result.summary).version[:64],
        verdict=verdict,
        source=source,
        at=at,
        **extra,
    )


def feedback_json(row: Feedback) -> dict[str, Any]:
    return {
        "id": row.id,
        "result_id": row.result_id,
        "pipeline": row.pipeline,
        "version": row.version,
        "verdict": row.verdict,
        "item": row.item,
        "corrected_value": row.corrected_value,
        "source": row.source,
        "author": row.author,
        "at": utc_iso(row.at),
    }


def record_feedback(
    index: Index,
    result_id: int,
    verdict: Verdict,
    at: datetime,
    item: str | None = None,
    corrected_value: float | None = None,
    author: str | None = None,
) -> dict[str, Any]:
    """Store a verdict on one result (by ``author``, the signed-in reader); LookupError when there is no
    such result."""
    with index.session() as session:
        result = session.get(Result, result_id)
        if result is None:
            raise LookupError(f"no result {result_id}")
        row = _feedback(result, verdict, "api", at, item=item, corrected_value=corrected_value, author=author)
        session.add(row)
        session.flush()
        return feedback_json(row)


def feedback_for(index: Index, result_id: int) -> list[dict[str, Any]]:
    """Every verdict on one result, oldest first; LookupError when there is no such result."""
    with index.session() as session:
        if session.get(Result, result_id) is None:
            raise LookupError(f"no result {result_id}")
        rows = session.scalars(select(Feedback).where(Feedback.result_id == result_id).order_by(Feedback.id))
        return [feedback_json(row) for row in rows]


def record_study_verdict(
    index: Index, study_uid: str, verdict: Verdict, at: datetime, author: str | None = None
) -> int:
    """Store a reading verdict on each report of the study's current revision; how many were stored."""
    with index.session() as session:
        study = session.get(Study, study_uid)
        if study is None:
            return 0
        reports = [
            result
            for job in study.jobs
            if job.revision == study.revision
            for result in job.results
            if result.kind == ResultKind.SR
        ]
        session.add_all(_feedback(result, verdict, "worklist", at, author=author) for result in reports)
        return len(reports)
