"""Retention: only finished studies are purged, files then rows, and a crash mid-purge is finished."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, update
from typer.testing import CliRunner

from radrouter import cli
from radrouter.config.rules import Priority
from radrouter.config.settings import RetentionSettings
from radrouter.storage import retention
from radrouter.storage.index import (
    AuditEvent,
    Delivery,
    DeliveryKind,
    DeliveryState,
    Hop,
    Index,
    Instance,
    Job,
    JobState,
    Result,
    ResultKind,
    Series,
    Study,
    StudyState,
    utcnow,
)
from radrouter.storage.ingest import ReceivedInstance, record_instance
from radrouter.storage.retention import DiskUsage, Purger, finished_studies
from radrouter.storage.steps import PerformedStep, StepStatus
from radrouter.storage.store import InstanceStore
from radrouter.storage.workitems import UpsPriority, UpsState, Workitem, WorkitemEvent
from tests.storage.commands import config_for

KEEP = RetentionSettings(keep_images_h=72, keep_results_h=168)
QUIET_DISK = DiskUsage(total=10**12, used=10**11, free=9 * 10**11)


@pytest.fixture
def node(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Index, InstanceStore]:
    monkeypatch.setattr(retention, "disk_usage", lambda store: QUIET_DISK)
    return Index(f"sqlite:///{tmp_path / 'index.sqlite3'}"), InstanceStore(tmp_path / "data", fsync=False)


def _study(
    index: Index,
    store: InstanceStore,
    n: int,
    state: StudyState = StudyState.DONE,
    settled_h_ago: float = 100,
    job: JobState | None = None,
    delivery: DeliveryState | None = None,
    forward: DeliveryState | None = None,
    instances: int = 3,
) -> str:
    """Study ``1.2.<n>`` with real instance files, optionally a job with a result file and deliveries."""
    uid, series_uid = f"1.2.{n}", f"1.2.{n}.1"
    settled = utcnow() - timedelta(hours=settled_h_ago)
    with index.session() as session:
        session.add(Study(uid=uid, state=state, settled_at=settled, last_received_at=settled))
        session.add(Series(uid=series_uid, study_uid=uid, modality="CT"))
        for k in range(instances):
            path = store.instance_path(uid, series_uid, f"{series_uid}.{k}")
            store.write(path, b"DICM" * 250)
            os.utime(path, (settled.timestamp() - 3600,) * 2)
            session.add(
                Instance(
                    sop_uid=f"{series_uid}.{k}",
                    series_uid=series_uid,
                    sop_class_uid="1.2.840.10008.5.1.4.1.1.2",
                    transfer_syntax_uid="1.2.840.10008.1.2.1",
                    path=str(path),
                    size=1000,
                    received_at=settled - timedelta(hours=1),
                )
            )
        session.flush()
        if job is not None:
            row = Job(
                study_uid=uid,
                series_uid=series_uid,
                pipeline="brain-extraction",
                priority=Priority.ROUTINE,
                rule="r",
                state=job,
            )
            session.add(row)
            session.flush()
            result_path = store.result_path(uid, f"{series_uid}.99")
            store.write(result_path, b"SEG")
            result = Result(
                job_id=row.id,
                kind=ResultKind.SEG,
                sop_uid=f"{series_uid}.99",
                sop_class_uid="1.2.840.10008.5.1.4.1.1.66.4",
                series_uid=f"{series_uid}.9",
                path=str(result_path.relative_to(store.root)),
                created_at=settled,
            )
            session.add(result)
            session.flush()
            if delivery is not None:
                session.add(Delivery(result_id=result.id, destination="pacs", state=delivery))
        if forward is not None:
            session.add(
                Delivery(
                    kind=DeliveryKind.ORIGINAL,
                    study_uid=uid,
                    series_uid=series_uid,
                    revision=0,
                    destination="pacs",
                    state=forward,
                )
            )
    return uid


def _files(store: InstanceStore, uid: str) -> list[Path]:
    return sorted((store.root / "instances" / uid).rglob("*.dcm"))


def _rows(index: Index, uid: str) -> int:
    with index.session() as session:
        return len(session.scalars(select(Instance).join(Series).where(Series.study_uid == uid)).all())


def test_only_finished_studies_with_nothing_in_flight_are_candidates(
    node: tuple[Index, InstanceStore],
) -> None:
    index, store = node
    due = _study(index, store, 1, job=JobState.DONE, delivery=DeliveryState.DELIVERED)
    recent = _study(index, store, 2, settled_h_ago=1)
    failed = _study(index, store, 3, state=StudyState.FAILED, forward=DeliveryState.FAILED)
    for state in (StudyState.RECEIVING, StudyState.COMPLETE, StudyState.ROUTED, StudyState.PROCESSING):
        _study(index, store, 10 + list(StudyState).index(state), state=state)
    _study(index, store, 20, delivery=DeliveryState.PENDING, job=JobState.DONE)  # result still going
    _study(index, store, 21, forward=DeliveryState.PENDING)  # a forward still going
    _study(index, store, 22, job=JobState.RUNNING)  # DONE, but a job of a later revision runs

    candidates = {c.study_uid: c for c in finished_studies(index, KEEP)}
    assert set(candidates) == {due, recent, failed}
    assert candidates[due].images_due and not candidates[due].results_due
    assert not candidates[recent].images_due
    assert candidates[failed].images_due and candidates[failed].image_bytes == 3000


def test_a_purge_removes_files_then_rows_and_leaves_the_rest(node: tuple[Index, InstanceStore]) -> None:
    index, store = node
    old = _study(index, store, 1, job=JobState.DONE, delivery=DeliveryState.DELIVERED, settled_h_ago=200)
    kept = _study(index, store, 2, settled_h_ago=1)
    busy = _study(index, store, 3, state=StudyState.PROCESSING, settled_h_ago=500)

    report = Purger(KEEP, index, store).run_once()

    assert [item.study_uid for item in report.purged] == [old]
    assert (report.instances_removed, report.bytes_removed, report.results_removed) == (3, 3000, 1)
    assert _files(store, old) == [] and _rows(index, old) == 0
    assert not (store.root / "instances" / old).exists()
    assert not (store.root / "results" / old).exists()
    for other in (kept, busy):
        assert len(_files(store, other)) == 3 and _rows(index, other) == 3
    with index.session() as session:
        study = session.get(Study, old)
        assert study is not None and study.images_purged_at and study.results_purged_at
        assert study.purging_images_since is None and study.state == StudyState.DONE
        result = session.scalars(select(Result)).one()
        assert result.purged_at is not None
        event = session.scalars(select(AuditEvent).where(AuditEvent.hop == Hop.PURGED)).one()
        assert event.detail == {"instances": 3, "bytes": 3000, "results": 1, "reason": "due"}
    assert Purger(KEEP, index, store).run_once().purged == []


def test_a_purge_a_crash_interrupted_is_finished_by_the_next_pass(
    node: tuple[Index, InstanceStore],
) -> None:
    index, store = node
    marked_only = _study(index, store, 1)
    files_gone = _study(index, store, 2)
    purger = Purger(KEEP, index, store)
    plan = {
        item.study_uid: item for item in retention.plan_purge(finished_studies(index, KEEP), KEEP, QUIET_DISK)
    }
    assert purger._mark(plan[marked_only]) is not None  # killed right after marking
    assert purger._mark(plan[files_gone]) is not None
    for path in _files(store, files_gone)[:2]:  # killed halfway through the files
        path.unlink()

    report = Purger(KEEP, index, store).run_once()

    assert sorted(report.resumed) == [marked_only, files_gone]
    for uid in (marked_only, files_gone):
        assert _files(store, uid) == [] and _rows(index, uid) == 0
        with index.session() as session:
            study = session.get(Study, uid)
            assert study is not None and study.purging_images_since is None and study.images_purged_at


def test_above_the_high_watermark_the_oldest_finished_studies_go_first(
    node: tuple[Index, InstanceStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    index, store = node
    oldest = _study(index, store, 1, settled_h_ago=3)
    older = _study(index, store, 2, settled_h_ago=2)
    newest = _study(index, store, 3, settled_h_ago=1)
    busy = _study(index, store, 4, state=StudyState.PROCESSING, settled_h_ago=10)
    # 90 % of 10 kB used, down to 6 % (600 bytes): every finished study goes (3 kB each), never the busy one.
    settings = RetentionSettings(high_watermark_pct=85, low_watermark_pct=6)
    monkeypatch.setattr(retention, "disk_usage", lambda store: DiskUsage(10_000, 9_000, 1_000))
    report = Purger(settings, index, store).run_once()
    assert [item.study_uid for item in report.purged] == [oldest, older, newest]
    assert {item.reason for item in report.purged} == {"watermark"}
    assert _rows(index, busy) == 3

    for n in (5, 6, 7):
        _study(index, store, n, settled_h_ago=10 - n)
    monkeypatch.setattr(retention, "disk_usage", lambda store: DiskUsage(10_000, 9_500, 500))
    # 9500 used, down to 6000 (60 %): 3500 bytes, so the two oldest (3000 bytes each).
    report = Purger(RetentionSettings(high_watermark_pct=80, low_watermark_pct=60), index, store).run_once()
    assert [item.study_uid for item in report.purged] == ["1.2.5", "1.2.6"]
    assert _rows(index, "1.2.7") == 3


def test_a_late_instance_after_a_purge_reopens_the_study(node: tuple[Index, InstanceStore]) -> None:
    index, store = node
    uid = _study(index, store, 1)
    Purger(KEEP, index, store).run_once()
    path = store.instance_path(uid, f"{uid}.1", f"{uid}.1.7")
    store.write(path, b"DICM late")
    record_instance(
        index,
        ReceivedInstance(
            study_uid=uid,
            series_uid=f"{uid}.1",
            sop_uid=f"{uid}.1.7",
            sop_class_uid="1.2.840.10008.5.1.4.1.1.2",
            transfer_syntax_uid="1.2.840.10008.1.2.1",
            modality="CT",
            series_number=1,
            series_description=None,
            path=str(path),
            size=9,
            calling_ae="CT",
        ),
    )
    with index.session() as session:
        study = session.get(Study, uid)
        assert study is not None and (study.state, study.revision) == (StudyState.RECEIVING, 1)
    assert finished_studies(index, KEEP) == []
    assert Purger(KEEP, index, store).run_once().purged == [] and path.is_file()


def test_purge_dry_run_lists_and_deletes_nothing(
    node: tuple[Index, InstanceStore], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    index, store = node
    uid = _study(index, store, 1)
    config = config_for(store, tmp_path, monkeypatch)
    runner = CliRunner()
    dry = runner.invoke(cli.app, ["purge", "--dry-run", "--config", str(config)])
    assert dry.exit_code == 0, dry.output
    assert uid in dry.output and "1 study(ies) would be purged" in dry.output
    assert len(_files(store, uid)) == 3 and _rows(index, uid) == 3

    status = runner.invoke(cli.app, ["storage", "status", "--config", str(config)])
    assert status.exit_code == 0, status.output
    assert "DONE" in status.output and "instances due" in status.output

    done = runner.invoke(cli.app, ["purge", "--config", str(config)])
    assert done.exit_code == 0, done.output
    assert "purged 1 study(ies): 3 instance(s)" in done.output
    assert _files(store, uid) == []


def test_a_rule_retention_keeps_its_studies_longer_or_shorter(node: tuple[Index, InstanceStore]) -> None:
    """``retention:`` on a rule, recorded on the study when routed, instead of the global keep (72 h)."""
    index, store = node
    research, external, plain = (_study(index, store, n, settled_h_ago=100) for n in (1, 2, 3))
    recent = _study(index, store, 4, settled_h_ago=10)
    with index.session() as session:
        for uid, keep in ((research, 720.0), (external, 200.0), (recent, 1.0)):
            study = session.get(Study, uid)
            assert study is not None
            study.keep_images_h = keep
        external_study = session.get(Study, external)
        assert external_study is not None
        external_study.keep_images_h = None
        external_study.keep_results_h = 24.0
    due = {c.study_uid: c.images_due for c in finished_studies(index, KEEP)}
    assert due == {research: False, external: True, plain: True, recent: True}

    Purger(KEEP, index, store).run_once()
    assert _files(store, research) and not _files(store, recent) and not _files(store, plain)


def test_the_rows_of_a_study_purged_keep_records_days_ago_are_deleted(
    node: tuple[Index, InstanceStore],
) -> None:
    """Once every file of a finished study is gone, its rows (jobs, results, deliveries, audit events)
    stay ``retention.keep_records_days``; then the pass deletes them, and only them."""
    index, store = node
    keep = RetentionSettings(keep_images_h=72, keep_results_h=72, keep_records_days=30)
    old = _study(index, store, 1, job=JobState.DONE, delivery=DeliveryState.DELIVERED, settled_h_ago=100)
    young = _study(index, store, 2, job=JobState.DONE, delivery=DeliveryState.DELIVERED, settled_h_ago=100)
    only_images = _study(index, store, 3, job=JobState.DONE, delivery=DeliveryState.DELIVERED)
    with index.session() as session:  # its job's UPS workitem with a state report, and its MPPS
        job_id = session.scalars(select(Job.id).where(Job.study_uid == old)).one()
        session.add(
            Workitem(uid="1.2.1.77", job_id=job_id, study_uid=old, pipeline="p", priority=UpsPriority.MEDIUM)
        )
        session.add(WorkitemEvent(workitem_uid="1.2.1.77", event_type=1, state=UpsState.COMPLETED))
        session.add(PerformedStep(uid="1.2.1.88", study_uid=old, status=StepStatus.COMPLETED))
    purger = Purger(keep, index, store)
    assert {item.study_uid for item in purger.run_once().purged} == {old, young, only_images}
    with index.session() as session:
        for uid, days_ago in ((old, 31), (young, 29), (only_images, 31)):
            study = session.get(Study, uid)
            assert study is not None
            study.images_purged_at = utcnow() - timedelta(days=days_ago)
            study.results_purged_at = utcnow() - timedelta(days=days_ago)
        # a result of this one still stored (say, one a re-run wrote after the purge)
        session.execute(update(Result).where(Result.sop_uid == "1.2.3.1.99").values(purged_at=None))

    assert purger.run_once(dry_run=True).forgotten == [old]
    report = purger.run_once()
    assert report.forgotten == [old]
    with index.session() as session:
        assert session.get(Study, old) is None
        for table, column in (
            (Job, Job.study_uid),
            (AuditEvent, AuditEvent.study_uid),
            (Series, Series.study_uid),
            (Workitem, Workitem.study_uid),
            (PerformedStep, PerformedStep.study_uid),
        ):
            assert session.scalars(select(table).where(column == old)).all() == []
        assert session.scalars(select(WorkitemEvent)).all() == []
        assert session.scalars(select(Delivery)).all() != []  # the others' deliveries stay
        assert {uid for uid in session.scalars(select(Study.uid))} == {young, only_images}
    assert purger.run_once().forgotten == []


def test_a_file_that_cannot_be_deleted_stops_its_study_purge_alone(node: tuple[Index, InstanceStore]) -> None:
    index, store = node
    stuck, other = _study(index, store, 1, settled_h_ago=200), _study(index, store, 2, settled_h_ago=100)
    blocked = _files(store, stuck)[-1]
    blocked.unlink()
    blocked.mkdir()  # unlink() of it fails, as a busy mount point's would
    report = Purger(KEEP, index, store).run_once()
    assert [item.study_uid for item in report.purged] == [other] and not _files(store, other)
    with index.session() as session:
        study = session.get(Study, stuck)
        assert study is not None and study.purging_images_since is not None  # tried again next pass
    blocked.rmdir()
    assert Purger(KEEP, index, store).run_once().resumed == [stuck]
    assert _rows(index, stuck) == 0
