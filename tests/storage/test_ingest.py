"""record_instance: new studies, replaced instances, and late instances that reopen a study."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from sqlalchemy import func, select

from radrouter.storage.index import AuditEvent, Hop, Index, Instance, Series, Study, StudyState
from radrouter.storage.ingest import ReceivedInstance, record_instance

STUDY = "1.2.826.0.1.3680043.8.498.10"
SERIES = "1.2.826.0.1.3680043.8.498.11"
MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4"
EXPLICIT_LE = "1.2.840.10008.1.2.1"


@pytest.fixture
def index(tmp_path: Path) -> Iterator[Index]:
    opened = Index(f"sqlite:///{tmp_path}/i.db")
    yield opened
    opened.engine.dispose()


def received(sop_uid: str, series_uid: str = SERIES, size: int = 1000) -> ReceivedInstance:
    return ReceivedInstance(
        study_uid=STUDY,
        series_uid=series_uid,
        sop_uid=sop_uid,
        sop_class_uid=MR_IMAGE_STORAGE,
        transfer_syntax_uid=EXPLICIT_LE,
        modality="MR",
        series_number=301,
        series_description="ADNI_Sag3D MPRAGE",
        path=f"/data/instances/{STUDY}/{series_uid}/{sop_uid}.dcm",
        size=size,
        calling_ae="MODALITY",
    )


def count(index: Index, model: type[Study] | type[Series] | type[Instance] | type[AuditEvent]) -> int:
    with index.session() as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


def events(index: Index) -> list[tuple[Hop, dict[str, object]]]:
    with index.session() as session:
        query = select(AuditEvent).where(AuditEvent.study_uid == STUDY).order_by(AuditEvent.id)
        rows = session.scalars(query)
        return [(row.hop, dict(row.detail)) for row in rows]


def test_first_instance_creates_study_series_and_instance(index: Index) -> None:
    replaced = record_instance(index, received("1.2.3.1"))

    assert replaced is False
    with index.session() as session:
        study = session.get(Study, STUDY)
        assert study is not None
        assert study.state == StudyState.RECEIVING
        assert study.revision == 0
        assert study.calling_ae == "MODALITY"
        series = session.get(Series, SERIES)
        assert series is not None
        assert (series.study_uid, series.modality, series.series_number) == (STUDY, "MR", 301)
        instance = session.get(Instance, "1.2.3.1")
        assert instance is not None
        assert (instance.series_uid, instance.size) == (SERIES, 1000)
    assert events(index) == [
        (
            Hop.RECEIVED,
            {
                "sop_uid": "1.2.3.1",
                "first": True,
                "reopened": False,
                "replaced": False,
                "calling_ae": "MODALITY",
                "calling_address": "",
            },
        )
    ]


def test_more_instances_of_a_receiving_study_add_rows_without_events(index: Index) -> None:
    record_instance(index, received("1.2.3.1"))
    record_instance(index, received("1.2.3.2"))
    record_instance(index, received("1.2.3.3", series_uid="1.2.3.99"))

    assert (count(index, Study), count(index, Series), count(index, Instance)) == (1, 2, 3)
    assert len(events(index)) == 1
    with index.session() as session:
        study = session.get(Study, STUDY)
        assert study is not None
        assert (study.state, study.revision) == (StudyState.RECEIVING, 0)


def test_same_sop_uid_again_is_replaced_not_duplicated(index: Index) -> None:
    first = received("1.2.3.1")
    assert record_instance(index, first) is False

    replaced = record_instance(index, replace(first, size=2000, transfer_syntax_uid="1.2.840.10008.1.2"))

    assert replaced is True
    assert count(index, Instance) == 1
    with index.session() as session:
        instance = session.get(Instance, "1.2.3.1")
        assert instance is not None
        assert (instance.size, instance.transfer_syntax_uid) == (2000, "1.2.840.10008.1.2")
    last_hop, last_detail = events(index)[-1]
    assert last_hop == Hop.RECEIVED
    assert last_detail["replaced"] is True
    assert last_detail["reopened"] is False


def test_late_instance_reopens_a_done_study(index: Index) -> None:
    record_instance(index, received("1.2.3.1"))
    with index.session() as session:
        study = session.get(Study, STUDY)
        assert study is not None
        study.state = StudyState.DONE

    replaced = record_instance(index, received("1.2.3.2"))

    assert replaced is False
    with index.session() as session:
        study = session.get(Study, STUDY)
        assert study is not None
        assert study.state == StudyState.RECEIVING
        assert study.revision == 1
    assert count(index, Instance) == 2
    hops = events(index)
    assert len(hops) == 2
    last_hop, last_detail = hops[-1]
    assert last_hop == Hop.RECEIVED
    assert last_detail["reopened"] is True
    assert last_detail["first"] is False
    assert last_detail["sop_uid"] == "1.2.3.2"


def test_each_reopening_bumps_the_revision_once(index: Index) -> None:
    record_instance(index, received("1.2.3.1"))
    for revision, sop in enumerate(["1.2.3.2", "1.2.3.3"], start=1):
        with index.session() as session:
            study = session.get(Study, STUDY)
            assert study is not None
            study.state = StudyState.FAILED
        record_instance(index, received(sop))
        # A second instance of the same reopened revision does not bump it again.
        record_instance(index, received(sop + ".1"))
        with index.session() as session:
            study = session.get(Study, STUDY)
            assert study is not None
            assert (study.state, study.revision) == (StudyState.RECEIVING, revision)

    assert [detail["reopened"] for _, detail in events(index)] == [False, True, True]


def test_an_instance_resent_in_another_series_moves_there(index: Index) -> None:
    record_instance(index, received("1.2.3.1"))
    moved = received("1.2.3.1", series_uid="1.2.826.0.1.3680043.8.498.12")

    assert record_instance(index, moved) is True
    with index.session() as session:
        instance = session.get(Instance, "1.2.3.1")
        assert instance is not None
        assert (instance.series_uid, instance.path) == (moved.series_uid, moved.path)


def test_an_instance_indexed_late_keeps_the_scp_that_received_the_study(index: Index) -> None:
    """After a crash the store's reconciliation indexes files without a receiver: the study still
    names the SCP that received it, so its completion waits for that SCP's heartbeat, no longer."""
    record_instance(index, replace(received("1.2.3.1"), receiver="scp-start-a"))
    record_instance(index, received("1.2.3.2"))  # the common case's fast path
    record_instance(index, received("1.2.3.3", series_uid="1.2.3.99"))  # a new series: the ORM path
    with index.session() as session:
        study = session.get(Study, STUDY)
        assert study is not None and study.receiver == "scp-start-a"
