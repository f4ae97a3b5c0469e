"""A deletion lock keeps a workitem when retention removes its study, until the subscriber
unsubscribes (PS3.4 CC.2.3.2); an erasure asked for by name keeps nothing."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydicom.uid import generate_uid

from radrouter.storage.index import Index
from radrouter.storage.retention import delete_study_rows
from radrouter.storage.workitems import (
    GLOBAL_SUBSCRIPTION,
    UpsPriority,
    UpsSubscription,
    Workitem,
    WorkitemEvent,
    schedule,
    subscribe,
    unsubscribe,
)


@pytest.fixture
def index(tmp_path: Path) -> Index:
    return Index(f"sqlite:///{tmp_path / 'index.sqlite3'}", migrate=True)


def _workitem(index: Index, study_uid: str) -> str:
    with index.session() as session:
        return schedule(session, study_uid, [generate_uid()], "brain-extraction", UpsPriority.MEDIUM).uid


def _rows(index: Index, uid: str) -> tuple[bool, int, int]:
    """Whether the workitem is there, its events and its subscriptions."""
    with index.session() as session:
        events = session.query(WorkitemEvent).filter_by(workitem_uid=uid).count()
        subscriptions = session.query(UpsSubscription).filter_by(workitem_uid=uid).count()
        return session.get(Workitem, uid) is not None, events, subscriptions


def test_retention_keeps_a_locked_workitem_until_its_subscriber_unsubscribes(index: Index) -> None:
    study_uid = generate_uid()
    locked, free = _workitem(index, study_uid), _workitem(index, study_uid)
    subscribe(index, "LOCKER", locked, deletion_lock=True)
    subscribe(index, "WATCHER", free)

    with index.session() as session:
        delete_study_rows(session, study_uid)

    assert _rows(index, locked) == (True, 1, 1)  # its state report is still there to be read
    assert _rows(index, free) == (False, 0, 0)
    unsubscribe(index, "LOCKER", locked)
    assert _rows(index, locked) == (False, 0, 0)


def test_a_global_subscription_with_a_lock_locks_each_workitem_it_follows(index: Index) -> None:
    subscribe(index, "LOCKER", GLOBAL_SUBSCRIPTION, deletion_lock=True)
    study_uid = generate_uid()
    uid = _workitem(index, study_uid)  # reported after the subscription: followed, and locked
    with index.session() as session:
        delete_study_rows(session, study_uid)
    assert _rows(index, uid)[0]
    unsubscribe(index, "LOCKER", GLOBAL_SUBSCRIPTION)  # ends the workitems it subscribed the AE to
    assert _rows(index, uid) == (False, 0, 0)


def test_an_erasure_keeps_no_locked_workitem(index: Index) -> None:
    study_uid = generate_uid()
    uid = _workitem(index, study_uid)
    subscribe(index, "LOCKER", uid, deletion_lock=True)
    with index.session() as session:
        delete_study_rows(session, study_uid, keep_locked_workitems=False)
    assert _rows(index, uid) == (False, 0, 0)
