"""Routing a complete study: jobs recorded once, and a late instance during routing is not lost."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pydicom
import pytest

from radrouter.config.settings import Settings
from radrouter.router import dispatch
from radrouter.router.dispatch import StudyRouter, celery_app
from radrouter.router.header import SeriesHeader
from radrouter.storage.index import Index, Job, Study, StudyState
from radrouter.storage.ingest import ReceivedInstance, record_instance
from tests.services import MPRAGE

FIRST, SECOND = sorted(MPRAGE.glob("*.dcm"))[:2]


def received(path: Path) -> ReceivedInstance:
    header = pydicom.dcmread(path, stop_before_pixels=True)
    return ReceivedInstance(
        study_uid=header.StudyInstanceUID,
        series_uid=header.SeriesInstanceUID,
        sop_uid=header.SOPInstanceUID,
        sop_class_uid=header.SOPClassUID,
        transfer_syntax_uid=header.file_meta.TransferSyntaxUID,
        modality=header.Modality,
        series_number=int(header.SeriesNumber),
        series_description=header.SeriesDescription,
        path=str(path),
        size=path.stat().st_size,
        calling_ae="MODALITY",
    )


@pytest.fixture
def router(tmp_path: Path) -> StudyRouter:
    settings = Settings(storage={"root": tmp_path})
    return StudyRouter(settings, Index(settings.storage.resolved_index_url()), celery_app(settings))


def test_a_complete_brain_mri_gets_one_brain_extraction_job(router: StudyRouter) -> None:
    study_uid = received(FIRST).study_uid
    record_instance(router.index, received(FIRST))

    queued = router.route(study_uid)

    assert [(task.name, task.queue, task.priority) for task in queued] == [
        (dispatch.INFER_TASK, "brain-extraction", 6)
    ]
    assert router.route(study_uid) == []  # already routed: nothing twice
    with router.index.session() as session:
        study = session.get(Study, study_uid)
        assert study is not None and study.state == StudyState.ROUTED
        assert session.query(Job).count() == 1


def test_an_instance_arriving_while_headers_are_read_defers_routing(
    router: StudyRouter, monkeypatch: pytest.MonkeyPatch
) -> None:
    study_uid = received(FIRST).study_uid
    record_instance(router.index, received(FIRST))
    read_headers = dispatch.read_stored_headers

    def late_arrival(series: Any) -> list[SeriesHeader]:
        record_instance(router.index, received(SECOND))
        return read_headers(series)

    monkeypatch.setattr(dispatch, "read_stored_headers", late_arrival)
    assert router.route(study_uid) == []
    with router.index.session() as session:
        study = session.get(Study, study_uid)
        assert study is not None and study.state == StudyState.RECEIVING

    monkeypatch.setattr(dispatch, "read_stored_headers", read_headers)
    assert len(router.route(study_uid)) == 1  # the assembler's next completion routes it
