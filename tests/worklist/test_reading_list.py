"""The reading list over a real index: routed studies, results that escalate, reads, the cap over time."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from radrouter.config.settings import Settings
from radrouter.router.dispatch.contract import celery_app
from radrouter.router.route.study_router import StudyRouter
from radrouter.storage.index import (
    AuditEvent,
    Hl7Message,
    Hop,
    Index,
    Job,
    MessageKind,
    PriorityChange,
    Result,
    WorklistItem,
)
from radrouter.storage.ingest import ReceivedInstance, record_instance
from radrouter.worklist.items import open_for_study
from radrouter.worklist.reading_list import AlreadyRead, ReadingList
from tests.router.route.test_study_router import received as routed_received
from tests.services import CT_HEAD, MPRAGE

HAEMORRHAGE = "SCT:50960005"
ICH_RULE = {
    "name": "ich",
    "pipeline": "brain-extraction",
    "finding": {"code": HAEMORRHAGE, "min_probability": 0.5},
    "priority": "stat",
    "reason": "Intracranial haemorrhage suspected",
}


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = datetime(2026, 3, 2, 8, 0, 0)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, minutes: float) -> None:
        self.now += timedelta(minutes=minutes)


def received(path: Path, **changes: Any) -> ReceivedInstance:
    return replace(routed_received(path), **changes)


MRI_SLICE = sorted(MPRAGE.glob("*.dcm"))[0]
CT_SLICE = CT_HEAD / "I10"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(
        storage={"root": tmp_path},
        worklist={"triage_rules": [ICH_RULE], "hl7": {"host": "127.0.0.1"}, "max_wait_routine_min": 60},
    )


@pytest.fixture
def router(settings: Settings) -> StudyRouter:
    return StudyRouter(
        settings, Index(settings.storage.resolved_index_url()), celery_app(settings), open_for_study
    )


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def reading_list(settings: Settings, router: StudyRouter, clock: Clock) -> ReadingList:
    return ReadingList(settings, router.index, clock)


def route(router: StudyRouter, instance: ReceivedInstance, clock: Clock | None = None) -> str:
    """Receive and route one instance; with a clock, the study arrives on the list at the clock's time."""
    record_instance(router.index, instance)
    router.route(instance.study_uid)
    if clock is not None:
        with router.index.session() as session:
            item = session.get(WorklistItem, instance.study_uid)
            assert item is not None
            item.arrived_at = clock.now
    return instance.study_uid


def add_report(index: Index, study_uid: str, findings: list[dict[str, Any]]) -> int:
    """The SR result row a pipeline leaves, with its summary in the contract format."""
    with index.session() as session:
        job = session.scalars(select(Job).where(Job.study_uid == study_uid)).one()
        session.add(
            Result(
                job_id=job.id,
                kind="SR",
                sop_uid=f"2.25.{job.id}9",
                sop_class_uid="1.2.840.10008.5.1.4.1.1.88.34",
                series_uid="2.25.1",
                path="/unused",
                summary={
                    "pipeline": "brain-extraction",
                    "version": "test",
                    "measurements": [
                        {
                            "name": "Brain volume",
                            "code": None,
                            "value": 1200.0,
                            "unit": "mL",
                            "segment": "Brain",
                        }
                    ],
                    "findings": findings,
                },
            )
        )
        return job.id


def test_a_finding_moves_its_study_to_the_top_and_every_change_is_recorded(
    router: StudyRouter, reading_list: ReadingList, clock: Clock
) -> None:
    ct = route(router, received(CT_SLICE), clock)
    clock.advance(1)
    mri = route(router, received(MRI_SLICE), clock)
    assert [e["study_uid"] for e in reading_list.in_reading_order()] == [ct, mri]

    job_id = add_report(router.index, mri, [{"name": "ICH", "code": HAEMORRHAGE, "probability": 0.93}])
    outcome = reading_list.apply_results(job_id)

    assert outcome.escalated
    top = reading_list.in_reading_order()[0]
    assert (top["study_uid"], top["priority"], top["finding"]) == (mri, "stat", ICH_RULE["reason"])
    with router.index.session() as session:
        changes = session.scalars(select(PriorityChange).where(PriorityChange.study_uid == mri)).all()
        assert [(c.old_priority, c.new_priority, c.source, c.rule) for c in changes] == [
            (None, "routine", "header", None),
            ("routine", "stat", "triage", "ich"),
        ]
        hops = session.scalars(select(AuditEvent.hop).where(AuditEvent.study_uid == mri)).all()
        assert hops.count(Hop.TRIAGED) == 2
        messages = session.scalars(select(Hl7Message).order_by(Hl7Message.id)).all()
        assert sorted(m.kind for m in messages) == [MessageKind.OMI, MessageKind.ORU]
        assert sorted(outcome.messages) == [m.id for m in messages]

    rerun = reading_list.apply_results(job_id)
    assert not rerun.escalated and sorted(rerun.messages) == sorted(outcome.messages), "unsent ones again"


def test_a_finding_below_the_minimum_probability_changes_nothing(
    router: StudyRouter, reading_list: ReadingList
) -> None:
    mri = route(router, received(MRI_SLICE))
    job_id = add_report(router.index, mri, [{"name": "ICH", "code": HAEMORRHAGE, "probability": 0.2}])
    outcome = reading_list.apply_results(job_id)
    assert not outcome.escalated
    assert reading_list.in_reading_order()[0]["priority"] == "routine"
    with router.index.session() as session:
        assert [m.kind for m in session.scalars(select(Hl7Message))] == [MessageKind.ORU]


def test_a_read_takes_the_study_off_the_list_with_the_verdict(
    router: StudyRouter, reading_list: ReadingList, clock: Clock
) -> None:
    mri = route(router, received(MRI_SLICE), clock)
    clock.advance(12)
    read = reading_list.mark_read(mri, "disagree")
    assert (read["verdict"], read["waited_s"]) == ("disagree", 720.0)
    assert reading_list.in_reading_order() == []
    with pytest.raises(AlreadyRead):
        reading_list.mark_read(mri)
    with pytest.raises(LookupError):
        reading_list.mark_read("1.2.3.4")


def test_late_images_after_the_read_put_the_study_back_on_the_list(
    router: StudyRouter, reading_list: ReadingList, clock: Clock
) -> None:
    first, late = sorted(MPRAGE.glob("*.dcm"))[:2]
    mri = route(router, received(first), clock)
    reading_list.mark_read(mri, "agree")
    clock.advance(5)
    route(router, received(late))
    assert [e["study_uid"] for e in reading_list.in_reading_order()] == [mri]


def test_the_routine_cap_lifts_a_waiting_study_above_a_newer_urgent_one(
    router: StudyRouter, reading_list: ReadingList, clock: Clock
) -> None:
    """Controlled clock: routine cap 60 min; the sender's HIGH priority makes the second study URGENT."""
    routine = route(router, received(MRI_SLICE), clock)
    clock.advance(30)
    urgent = route(router, received(CT_SLICE, dimse_priority=1), clock)

    clock.advance(29)
    order = reading_list.in_reading_order()
    assert [(e["study_uid"], e["priority"], e["overdue"]) for e in order] == [
        (urgent, "urgent", False),
        (routine, "routine", False),
    ]
    clock.advance(1)
    order = reading_list.in_reading_order()
    assert [(e["study_uid"], e["overdue"], e["waited_s"]) for e in order] == [
        (routine, True, 3600.0),
        (urgent, False, 1800.0),
    ]


def test_urgent_senders_jump_the_inference_queue_too(router: StudyRouter, settings: Settings) -> None:
    instance = received(sorted(MPRAGE.glob("*.dcm"))[0], dimse_priority=1)
    record_instance(router.index, instance)
    queued = router.route(instance.study_uid)
    assert [(task.queue, task.priority) for task in queued] == [("brain-extraction", 3)]
    entry = ReadingList(settings, router.index).in_reading_order()[0]
    assert (entry["priority"], entry["reason"]) == ("urgent", "C-STORE Priority (0000,0700) HIGH")
