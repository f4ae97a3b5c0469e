"""StudyAssembler: a study completes when its associations have ended and it has been quiet.

No test asserts how fast anything happens. To show that a study is *not* completed, a sentinel study
on another association is received after it and released; the assembler handles due studies in
order of arrival, so by the time the sentinel completes, the study under test would have completed
too had its open association been ignored.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from radrouter.config.settings import CompletionSettings
from radrouter.router.assemble import StudyAssembler

QUIET_S = 0.2
TIMEOUT_S = 10.0
COMPLETION = CompletionSettings(quiet_period_s=QUIET_S, open_quiet_period_s=600)


class Completions:
    """The on_complete callback: records study UIDs in order and lets a test wait for them."""

    def __init__(self) -> None:
        self.studies: list[str] = []
        self._changed = threading.Condition()
        self.fail_for: set[str] = set()

    def __call__(self, study_uid: str) -> None:
        with self._changed:
            self.studies.append(study_uid)
            self._changed.notify_all()
        if study_uid in self.fail_for:
            raise RuntimeError(f"routing {study_uid} failed")

    def wait_for(self, study_uid: str, times: int = 1) -> None:
        with self._changed:
            done = self._changed.wait_for(lambda: self.studies.count(study_uid) >= times, timeout=TIMEOUT_S)
        assert done, f"{study_uid} not completed {times} time(s) within {TIMEOUT_S} s: {self.studies}"

    def snapshot(self) -> list[str]:
        with self._changed:
            return list(self.studies)


@pytest.fixture
def completions() -> Completions:
    return Completions()


@pytest.fixture
def assembler(completions: Completions) -> Iterator[StudyAssembler]:
    running = StudyAssembler(COMPLETION, completions)
    running.start()
    yield running
    running.stop()


def release_sentinel(
    assembler: StudyAssembler, completions: Completions, name: str, association: str
) -> None:
    """Receive and release a sentinel study on its own association, and wait until it completes."""
    assembler.instance_received(name, association)
    assembler.association_ended(association)
    completions.wait_for(name)


def test_open_association_keeps_study_incomplete(assembler: StudyAssembler, completions: Completions) -> None:
    assembler.instance_received("1.1", "1")

    release_sentinel(assembler, completions, "9.1", association="91")

    assert "1.1" not in completions.snapshot()
    assert assembler.pending() == ["1.1"]


def test_study_completes_once_after_association_ended(
    assembler: StudyAssembler, completions: Completions
) -> None:
    for _ in range(3):
        assembler.instance_received("1.1", "1")
    assembler.association_ended("1")

    completions.wait_for("1.1")
    release_sentinel(assembler, completions, "9.1", association="91")

    assert completions.snapshot() == ["1.1", "9.1"]
    assert assembler.pending() == []


def test_studies_on_different_associations_complete_independently(
    assembler: StudyAssembler, completions: Completions
) -> None:
    assembler.instance_received("1.1", "1")
    assembler.instance_received("2.2", "2")

    assembler.association_ended("2")
    completions.wait_for("2.2")
    assert "1.1" not in completions.snapshot()

    assembler.association_ended("1")
    completions.wait_for("1.1")
    assert completions.snapshot() == ["2.2", "1.1"]


def test_study_sent_on_two_associations_waits_for_both(
    assembler: StudyAssembler, completions: Completions
) -> None:
    assembler.instance_received("1.1", "1")
    assembler.instance_received("1.1", "2")

    assembler.association_ended("1")
    release_sentinel(assembler, completions, "9.1", association="91")
    assert "1.1" not in completions.snapshot()

    assembler.association_ended("2")
    completions.wait_for("1.1")
    assert completions.snapshot() == ["9.1", "1.1"]


def test_late_instance_completes_the_study_again(assembler: StudyAssembler, completions: Completions) -> None:
    assembler.instance_received("1.1", "1")
    assembler.association_ended("1")
    completions.wait_for("1.1")

    assembler.instance_received("1.1", "2")
    release_sentinel(assembler, completions, "9.1", association="91")
    assert completions.snapshot().count("1.1") == 1, "completed again while the late association was open"

    assembler.association_ended("2")
    completions.wait_for("1.1", times=2)
    assert completions.snapshot() == ["1.1", "9.1", "1.1"]


def test_failing_callback_does_not_stop_the_assembler(
    assembler: StudyAssembler, completions: Completions
) -> None:
    completions.fail_for.add("1.1")
    assembler.instance_received("1.1", "1")
    assembler.association_ended("1")
    completions.wait_for("1.1")

    release_sentinel(assembler, completions, "2.2", association="2")

    assert completions.snapshot() == ["1.1", "2.2"]


def test_stop_ends_the_thread(completions: Completions) -> None:
    running = StudyAssembler(COMPLETION, completions)
    running.start()
    running.instance_received("1.1", "1")

    running.stop()

    assert not running._thread.is_alive()


def test_a_quiet_study_completes_while_its_association_stays_open(completions: Completions) -> None:
    """Senders that never release: the open-association quiet period ends the study, not the release."""
    running = StudyAssembler(CompletionSettings(quiet_period_s=QUIET_S, open_quiet_period_s=0.5), completions)
    running.start()
    try:
        running.instance_received("1.1", "1")
        completions.wait_for("1.1")
        assert running.pending() == []
    finally:
        running.stop()


class Clock:
    """A clock the test moves by hand: series completion is checked without waiting."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def clocked_assembler(clock: Clock, studies: list[str], series: list[tuple[str, str]]) -> StudyAssembler:
    """Not started: the test calls complete_due itself, with 1 s and 5 s quiet periods."""
    return StudyAssembler(
        CompletionSettings(quiet_period_s=1, open_quiet_period_s=5),
        studies.append,
        lambda study_uid, series_uid: series.append((study_uid, series_uid)),
        clock=clock,
    )


def test_a_quiet_series_completes_while_the_rest_of_its_study_still_arrives() -> None:
    clock, studies, series = Clock(), [], []
    assembler = clocked_assembler(clock, studies, series)
    assembler.instance_received("1.1", "first", "1.1.1")  # series A, then its association is released
    assembler.association_ended("first")
    for clock.now in (0.5, 1.0, 1.5, 2.0, 2.5):  # series B keeps arriving over another association
        assembler.instance_received("1.1", "second", "1.1.2")
        assembler.complete_due()
        assert series == ([] if clock.now < 1.0 else [("1.1", "1.1.1")])
    assert studies == []

    for clock.now in (3.0, 4.0, 5.0, 6.0, 7.0, 7.4):  # then series C over that same open association
        assembler.instance_received("1.1", "second", "1.1.3")
        assembler.complete_due()
    assert series == [("1.1", "1.1.1")]  # B's association is open: it is quiet after the open period
    clock.now = 7.5
    assembler.complete_due()
    assert series == [("1.1", "1.1.1"), ("1.1", "1.1.2")]
    assert studies == []


def test_a_series_still_waiting_when_its_study_completes_is_left_to_the_study() -> None:
    clock, studies, series = Clock(), [], []
    assembler = clocked_assembler(clock, studies, series)
    assembler.instance_received("1.1", "only", "1.1.1")
    assembler.association_ended("only")
    clock.now = 1.0
    assembler.complete_due()
    assert (studies, series) == (["1.1"], [])
