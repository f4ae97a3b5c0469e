"""The shared completion ledger on a real PostgreSQL: two nodes' assemblers, one sweeper at a time.

The assemblers are driven by hand (flush, sweep) on a clock the test moves, so each rule is checked
without waiting; the processes, HAProxy and the kill -9 are in tests/router/test_cluster_e2e.py.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from radrouter.config.settings import Settings
from radrouter.router.cluster import SharedStudyAssembler
from radrouter.storage.index import Index, Study, StudyState, utcnow
from radrouter.storage.ingest import record_instance
from radrouter.storage.steps import StepBook, StepChange, StepStatus
from tests.services import PostgreSQL
from tests.storage.test_ingest import SERIES, STUDY, received
from tests.storage.test_steps import STEP


class Clock:
    def __init__(self) -> None:
        self.now = utcnow()

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


class Node:
    """One node's assembler, recording what it completed."""

    def __init__(
        self, settings: Settings, index: Index, incarnation: str, clock: Clock, steps: StepBook | None = None
    ) -> None:
        self.completed: list[str] = []
        self.series: list[tuple[str, str]] = []
        self.assembler = SharedStudyAssembler(
            settings,
            index,
            incarnation,
            self.completed.append,
            lambda study, series: self.series.append((study, series)),
            steps,
            clock=clock,
        )
        self.assembler.beat()  # its threads not started: the test flushes and sweeps

    def sweep(self) -> None:
        """What the node's threads do: write its arrivals and beat, then sweep if it leads."""
        self.assembler.flush()
        self.assembler.beat()
        self.assembler.sweep_once()


@pytest.fixture
def cluster(postgres: PostgreSQL) -> tuple[Settings, Index, Clock]:
    url = postgres.create_database()
    # Node names given: both "machines" of the test share one host name.
    return Settings(storage={"index_url": url}, cluster={"enabled": True}), Index(url, migrate=True), Clock()


def two_nodes(
    cluster: tuple[Settings, Index, Clock], steps: StepBook | None = None
) -> tuple[Node, Node, Clock]:
    settings, index, clock = cluster
    a = Node(settings.model_copy(update={"cluster": settings.cluster.model_copy(update={"node_name": "a"})}),
             index, "a" * 32, clock, steps)  # fmt: skip
    b = Node(settings.model_copy(update={"cluster": settings.cluster.model_copy(update={"node_name": "b"})}),
             index, "b" * 32, clock, steps)  # fmt: skip
    a.sweep()  # a takes the lease first
    b.sweep()
    assert a.assembler.leading() and not b.assembler.leading()
    return a, b, clock


def test_a_study_received_by_two_nodes_completes_once_after_both_associations_end(
    cluster: tuple[Settings, Index, Clock],
) -> None:
    a, b, clock = two_nodes(cluster)
    a.assembler.instance_received("1.2", "assoc-1", "1.2.1")
    b.assembler.instance_received("1.2", "assoc-1", "1.2.2")  # the same key on another node is another
    a.assembler.association_ended("assoc-1")
    for node in (a, b):
        node.sweep()
    assert a.assembler.pending() == ["1.2"]
    clock.advance(Settings().completion.quiet_period_s + 0.1)
    for node in (a, b):
        node.sweep()
    assert a.completed == b.completed == []  # b's association is still open
    b.assembler.association_ended("assoc-1")
    for node in (b, a):
        node.sweep()
    assert (a.completed, b.completed) == (["1.2"], [])
    clock.advance(10)
    for node in (a, b):
        node.sweep()
    assert (a.completed, b.completed) == (["1.2"], [])
    assert a.assembler.pending() == []


def test_an_open_association_completes_after_the_open_quiet_period_and_a_series_on_its_own(
    cluster: tuple[Settings, Index, Clock],
) -> None:
    a, b, clock = two_nodes(cluster)
    completion = Settings().completion
    a.assembler.instance_received("1.3", "x", "1.3.1")
    b.assembler.instance_received("1.3", "y", "1.3.2")
    clock.advance(completion.open_quiet_period_s - 1)
    b.assembler.instance_received("1.3", "y", "1.3.2")  # the study goes on, series 1.3.1 is quiet
    b.sweep()
    a.sweep()
    clock.advance(1.1)
    a.sweep()
    assert (a.series, a.completed) == ([("1.3", "1.3.1")], [])
    clock.advance(completion.open_quiet_period_s)
    b.sweep()  # b is alive (it beats), its association open and quiet
    a.sweep()
    assert a.completed == ["1.3"] and a.series == [("1.3", "1.3.1")]


def test_a_late_arrival_written_after_the_decision_starts_the_study_again(
    cluster: tuple[Settings, Index, Clock],
) -> None:
    a, b, clock = two_nodes(cluster)
    a.assembler.instance_received("1.4", "x")
    a.assembler.association_ended("x")
    a.sweep()
    clock.advance(2)
    b.assembler.instance_received("1.4", "z")  # not yet written when a decides
    b.assembler.association_ended("z")
    a.sweep()
    assert a.completed == ["1.4"]
    b.sweep()  # written now: a new revision of the study to complete
    clock.advance(2)
    a.sweep()
    assert a.completed == ["1.4", "1.4"]


def test_a_silent_node_s_associations_end_and_its_lease_passes_on(
    cluster: tuple[Settings, Index, Clock],
) -> None:
    a, b, clock = two_nodes(cluster)
    settings = cluster[0]
    a.assembler.instance_received("1.5", "killed")
    b.assembler.instance_received("1.5", "open")
    b.assembler.association_ended("open")
    for node in (a, b):
        node.sweep()
    # a dies: no more heartbeats or lease renewals; b's sweep takes over once both expire.
    clock.advance(settings.cluster.node_timeout_s + 0.1)
    b.sweep()
    assert b.assembler.leading()
    assert b.completed == ["1.5"]


def test_a_restarted_node_s_earlier_associations_end_at_once(cluster: tuple[Settings, Index, Clock]) -> None:
    a, b, clock = two_nodes(cluster)
    settings, index, _ = cluster
    b.assembler.instance_received("1.6", "left-open")
    b.sweep()
    clock.advance(settings.completion.quiet_period_s + 0.1)
    a.sweep()
    assert a.completed == []  # open, b alive: the open quiet period applies
    again = settings.model_copy(update={"cluster": settings.cluster.model_copy(update={"node_name": "b"})})
    clock.advance(0.1)
    Node(again, index, "c" * 32, clock)  # b started again, with a new incarnation
    a.sweep()
    assert a.completed == ["1.6"]


def test_a_node_stopped_cleanly_ends_the_associations_it_held(cluster: tuple[Settings, Index, Clock]) -> None:
    a, b, clock = two_nodes(cluster)
    b.assembler.instance_received("1.7", "held-at-stop")
    b.sweep()
    b.assembler.stop()  # SIGTERM: its receivers end without telling each association's end
    clock.advance(cluster[0].completion.quiet_period_s + 0.1)
    a.sweep()
    assert a.completed == ["1.7"]  # not the open quiet period, nor the node timeout


def test_a_study_indexed_after_its_last_written_arrival_waits_for_it(
    cluster: tuple[Settings, Index, Clock],
) -> None:
    """A receiver indexes before its node writes the arrival (up to flush_interval_s later)."""
    a, _, clock = two_nodes(cluster)
    settings, index, _ = cluster
    a.assembler.instance_received("1.8", "x")
    a.assembler.association_ended("x")
    a.sweep()
    clock.advance(settings.completion.quiet_period_s + 0.1)
    with index.session() as session:  # the next instance is indexed; its arrival not yet written
        session.add(Study(uid="1.8", state=StudyState.RECEIVING, last_received_at=clock.now))
    a.sweep()
    assert a.completed == []
    clock.advance(settings.completion.quiet_period_s + 0.1)
    a.sweep()
    assert a.completed == ["1.8"]


def test_mpps_hold_a_study_on_the_sweeper_and_complete_it_at_its_last_listed_instance(
    cluster: tuple[Settings, Index, Clock],
) -> None:
    """A step IN PROGRESS received by one node holds the study past the timer on the sweeper; once the
    step is COMPLETED, the study completes as soon as every listed instance is indexed, quiet or not."""
    settings, index, clock = cluster
    steps = StepBook(index, settings.completion)
    a, b, clock = two_nodes(cluster, steps)
    assert steps.create(STEP, STUDY, "MODALITY") == StepChange.RECORDED
    record_instance(index, received("1.2.3.1"))
    b.assembler.instance_received(STUDY, "x", SERIES, "1.2.3.1")
    b.assembler.association_ended("x")
    b.sweep()
    clock.advance(settings.completion.quiet_period_s * 5)
    a.sweep()
    assert a.completed == [], "the timer completed a study its modality still performs"
    steps.update(STEP, StepStatus.COMPLETED, {SERIES: ["1.2.3.1", "1.2.3.2"]})
    a.sweep()
    assert a.completed == [], "completed with a listed instance missing, before the grace"
    record_instance(index, received("1.2.3.2"))
    b.assembler.instance_received(STUDY, "y", SERIES, "1.2.3.2")  # its association still open
    b.sweep()
    a.sweep()
    assert (a.completed, b.completed) == ([STUDY], [])
    assert steps.plan(STUDY) is None, "the step was used by the completion"
    clock.advance(settings.completion.open_quiet_period_s + 1)
    a.sweep()
    assert a.completed == [STUDY], "completed twice"


def test_a_node_silent_mid_association_holds_its_study_until_it_is_gone(
    cluster: tuple[Settings, Index, Clock],
) -> None:
    """b dies with an association open: the study waits for b to be declared gone (its associations
    ended) instead of completing on what b had received after the open quiet period, while the sender
    is still timing out and sending the rest again; an instance resent through a is part of it."""
    settings, _index, clock = cluster
    completion, timeout_s = settings.completion, settings.cluster.node_timeout_s
    a, b, clock = two_nodes(cluster)
    b.assembler.instance_received("1.7", "y", "1.7.1")
    b.sweep()  # b's last write and beat: it dies here, its association open
    died_at = clock.now
    for _ in range(int((completion.open_quiet_period_s + 1) / 0.5)):
        clock.advance(0.5)
        a.sweep()
    assert a.completed == [], "completed on a dead node's part of the study"
    a.assembler.instance_received("1.7", "z", "1.7.1")  # the sender's retry, through HAProxy to a
    a.assembler.association_ended("z")
    while clock.now < died_at + timedelta(seconds=timeout_s + completion.quiet_period_s + 0.5):
        clock.advance(0.5)
        a.sweep()
    assert a.completed == ["1.7"]


def test_a_node_that_beats_again_is_no_longer_in_doubt(cluster: tuple[Settings, Index, Clock]) -> None:
    settings, _index, clock = cluster
    a, b, clock = two_nodes(cluster)
    b.assembler.instance_received("1.8", "y", "1.8.1")
    b.sweep()
    clock.advance(settings.cluster.node_timeout_s / 2)  # two beats missed: b is in doubt
    a.sweep()
    b.sweep()  # b was only slow: it beats again, its association still open
    clock.advance(settings.completion.open_quiet_period_s - settings.cluster.node_timeout_s / 2 + 0.1)
    a.sweep()
    assert a.completed == ["1.8"], "the open association's quiet period applies again"
