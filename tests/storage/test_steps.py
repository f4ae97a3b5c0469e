"""StepBook with the assembler: what a study's MPPS steps mean for its completion."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from radrouter.config.settings import CompletionSettings, DiscontinuedStudy
from radrouter.router.assemble import StudyAssembler
from radrouter.storage.index import Index, Study, StudyState
from radrouter.storage.ingest import record_instance
from radrouter.storage.steps import StepBook, StepChange, StepStatus
from tests.router.test_assemble import Completions
from tests.services import wait_until
from tests.storage.test_ingest import SERIES, STUDY, received

STEP = "1.2.826.0.1.3680043.8.498.20"
#: The timer would complete after 600 s: whatever completes here completed by its steps.
TIMER_NEVER = {"quiet_period_s": 600, "open_quiet_period_s": 600}


@pytest.fixture
def index(tmp_path: Path) -> Iterator[Index]:
    opened = Index(f"sqlite:///{tmp_path}/i.db")
    yield opened
    opened.engine.dispose()


def _assembler(index: Index, completion: CompletionSettings, completions: Completions) -> StudyAssembler:
    assembler = StudyAssembler(completion, completions, steps=StepBook(index, completion))
    assembler.start()
    return assembler


def test_a_completed_step_listing_an_instance_still_to_come_completes_at_its_arrival(index: Index) -> None:
    completion = CompletionSettings(**TIMER_NEVER, mpps_grace_s=600)
    completions = Completions()
    assembler = _assembler(index, completion, completions)
    steps = StepBook(index, completion)
    try:
        assert steps.create(STEP, STUDY, "MODALITY") == StepChange.RECORDED
        record_instance(index, received("1.2.3.1"))
        assembler.instance_received(STUDY, "a", SERIES, "1.2.3.1")
        performed = {SERIES: ["1.2.3.1", "1.2.3.2"]}
        assert steps.update(STEP, StepStatus.COMPLETED, performed) == (StepChange.RECORDED, STUDY)
        assembler.steps_changed(STUDY)
        assert completions.snapshot() == []  # 1.2.3.2 is still to come
        record_instance(index, received("1.2.3.2"))
        assembler.instance_received(STUDY, "a", SERIES, "1.2.3.2")
        completions.wait_for(STUDY)
    finally:
        assembler.stop()
    assert steps.plan(STUDY) is None, "the step was used by the completion"


def test_a_discontinued_step_held_completes_without_routing(index: Index) -> None:
    completion = CompletionSettings(**TIMER_NEVER, mpps_discontinued=DiscontinuedStudy.HOLD)
    completions = Completions()
    assembler = _assembler(index, completion, completions)
    steps = StepBook(index, completion)
    try:
        steps.create(STEP, STUDY, "MODALITY")
        record_instance(index, received("1.2.3.1"))
        assembler.instance_received(STUDY, "a", SERIES, "1.2.3.1")
        steps.update(STEP, StepStatus.DISCONTINUED, None)
        assembler.steps_changed(STUDY)

        def held() -> Study | None:
            with index.session() as session:
                study = session.get(Study, STUDY)
                return study if study is not None and study.state == StudyState.DONE else None

        study = wait_until(held, 10, "held")
    finally:
        assembler.stop()
    assert completions.snapshot() == []
    assert study.reason is not None and "DISCONTINUED" in study.reason


def test_an_assembler_started_again_follows_the_steps_left_open(index: Index) -> None:
    completion = CompletionSettings(**TIMER_NEVER)
    steps = StepBook(index, completion)
    steps.create(STEP, STUDY, "MODALITY")
    record_instance(index, received("1.2.3.1"))
    steps.update(STEP, StepStatus.COMPLETED, {SERIES: ["1.2.3.1"]})
    assert steps.open_studies() == [STUDY]
    completions = Completions()
    assembler = _assembler(index, completion, completions)  # as `radrouter scp` starts it
    try:
        for study_uid in steps.open_studies():
            assembler.steps_changed(study_uid)
        completions.wait_for(STUDY)  # everything listed is stored: complete at once
    finally:
        assembler.stop()
    assert steps.open_studies() == []


def test_a_step_that_comes_after_every_image_completes_the_study_at_once(index: Index) -> None:
    completion = CompletionSettings(**TIMER_NEVER)
    completions = Completions()
    assembler = _assembler(index, completion, completions)
    steps = StepBook(index, completion)
    try:
        for uid in ("1.2.3.1", "1.2.3.2"):
            record_instance(index, received(uid))
            assembler.instance_received(STUDY, "a", SERIES, uid)
        assembler.association_ended("a")  # the timer would wait 600 s from here
        steps.create(STEP, STUDY, "MODALITY")
        assembler.steps_changed(STUDY)
        steps.update(STEP, StepStatus.COMPLETED, {SERIES: ["1.2.3.1", "1.2.3.2"]})
        assembler.steps_changed(STUDY)
        completions.wait_for(STUDY)
    finally:
        assembler.stop()
    assert completions.snapshot() == [STUDY]
