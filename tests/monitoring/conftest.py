"""An index with results in it, one study per result, for the monitoring tests."""

from __future__ import annotations

import itertools
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from radrouter.inference.results.summary import ResultSummary
from radrouter.storage.index import Index, Job, JobState, MonitoredResult, Result, Series, Study

_numbers = itertools.count(1)


@pytest.fixture
def index(tmp_path: Path) -> Index:
    return Index(f"sqlite:///{tmp_path / 'index.sqlite3'}")


def add_result(
    index: Index,
    at: datetime,
    pipeline: str = "liver-volume",
    measurements: list[dict[str, Any]] | None = None,
    findings: list[dict[str, Any]] | None = None,
    manufacturer: str = "GE MEDICAL SYSTEMS",
    monitored: bool = True,
    version: str = "1.0",
) -> int:
    """A study with one job and its SR result (and its monitoring point); returns the result id."""
    n = next(_numbers)
    study_uid, series_uid = f"1.2.826.0.1.{n}", f"1.2.826.0.1.{n}.1"
    summary = ResultSummary.model_validate(
        {
            "pipeline": pipeline,
            "version": version,
            "measurements": [{"unit": "mL", **m} for m in measurements or []],
            "findings": findings or [],
        }
    ).as_row()
    with index.session() as session:
        session.add(Study(uid=study_uid))
        session.flush()
        session.add(Series(uid=series_uid, study_uid=study_uid, modality="CT"))
        session.flush()
        job = Job(study_uid=study_uid, series_uid=series_uid, pipeline=pipeline, priority="routine", rule="r")
        job.state = JobState.DONE
        session.add(job)
        session.flush()
        result = Result(
            job_id=job.id,
            kind="SR",
            sop_uid=f"{series_uid}.9",
            sop_class_uid="1.2.840.10008.5.1.4.1.1.88.34",
            series_uid=f"{series_uid}.9",
            path="/nonexistent",
            summary=summary,
            created_at=at,
        )
        session.add(result)
        session.flush()
        if monitored:
            session.add(
                MonitoredResult(
                    result_id=result.id,
                    study_uid=study_uid,
                    pipeline=pipeline,
                    version=version,
                    at=at,
                    manufacturer=manufacturer,
                    model="LightSpeed",
                    slice_thickness="1.25",
                    protocol="abdomen",
                    summary=summary,
                )
            )
        return result.id
