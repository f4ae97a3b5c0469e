"""A job's workitem claimed by an outside Task Performer: the node's worker leaves the job to it, and
the performer's completion or cancellation ends the job and settles the study."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from pydicom.uid import generate_uid

from radrouter.config.rules import Priority
from radrouter.storage.index import Index, Job, JobState, Series, Study, StudyState
from radrouter.storage.workitems import (
    UpsError,
    UpsRefusal,
    UpsState,
    Workitem,
    claim,
    finish,
    job_ended,
    job_started,
    schedule_job,
)

STUDY, SERIES = "1.2.826.0.1.3680043.8.498.30", "1.2.826.0.1.3680043.8.498.31"


@pytest.fixture
def index(tmp_path: Path) -> Iterator[Index]:
    opened = Index(f"sqlite:///{tmp_path}/i.db")
    yield opened
    opened.engine.dispose()


def _routed_job(index: Index) -> tuple[int, str]:
    with index.session() as session:
        session.add(Study(uid=STUDY, state=StudyState.ROUTED))
        session.add(Series(uid=SERIES, study_uid=STUDY))
        session.flush()  # the job's series has no relationship to order the inserts by
        job = Job(study_uid=STUDY, series_uid=SERIES, pipeline="remote-ai", priority=Priority.STAT, rule="r")
        session.add(job)
        session.flush()
        return job.id, schedule_job(session, job).uid


@pytest.mark.parametrize(
    ("ended", "job_state"), [(UpsState.COMPLETED, JobState.DONE), (UpsState.CANCELED, JobState.FAILED)]
)
def test_an_outside_claim_keeps_the_worker_off_and_its_end_settles_the_study(
    index: Index, ended: UpsState, job_state: JobState
) -> None:
    job_id, uid = _routed_job(index)
    transaction = generate_uid()
    with index.session() as session:
        claim(session, uid, transaction, "remote AI", outside=True)
    with index.session() as session:
        assert not job_started(session, job_id, "worker-1")  # the Celery worker leaves it alone
        assert session.get(Job, job_id).state == JobState.RUNNING  # type: ignore[union-attr]
        with pytest.raises(UpsError) as refused:
            finish(session, uid, generate_uid(), ended)
        assert refused.value.refusal == UpsRefusal.WRONG_TRANSACTION
    with index.session() as session:
        finish(session, uid, transaction, ended, reason=None if ended == UpsState.COMPLETED else "no GPU")
    with index.session() as session:
        job, study = session.get(Job, job_id), session.get(Study, STUDY)
        assert job is not None and study is not None
        assert (job.state, study.state) == (
            job_state,
            StudyState.DONE if ended == UpsState.COMPLETED else StudyState.FAILED,
        )


def test_the_worker_claims_a_scheduled_workitem_and_completes_it_with_outputs(index: Index) -> None:
    job_id, uid = _routed_job(index)
    outputs = [
        {
            "series_uid": generate_uid(),
            "sop_class_uid": "1.2.840.10008.5.1.4.1.1.66.4",
            "sop_uid": generate_uid(),
        }
    ]
    with index.session() as session:
        assert job_started(session, job_id, "worker-1")
        assert session.get(Workitem, uid).state == UpsState.IN_PROGRESS  # type: ignore[union-attr]
        job_ended(session, job_id, outputs, None)
    with index.session() as session:
        item = session.get(Workitem, uid)
        assert item is not None and (item.state, item.outputs, item.outside) == (
            UpsState.COMPLETED,
            outputs,
            False,
        )
        assert item.priority.value == "HIGH"  # a STAT job
