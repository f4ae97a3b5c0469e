"""Each result is handed off for delivery as soon as it is stored: the SEG before the SR is built.

A real job on the chest CT (ct-lung, 16 slices) through the worker's own runner, on a real index and
store; the hand-off records what the index and the store hold at the moment each result leaves.
"""

from __future__ import annotations

from pathlib import Path

import pydicom
import pytest
from pydicom.uid import SegmentationStorage
from sqlalchemy import select

from radrouter.config.rules import Priority
from radrouter.config.settings import Settings
from radrouter.inference.registry import WarmPipelines
from radrouter.inference.run import JobRunner
from radrouter.storage.index import (
    Delivery,
    DeliveryState,
    Index,
    Job,
    JobState,
    Result,
    ResultKind,
    SentVariant,
    utcnow,
)
from radrouter.storage.ingest import ReceivedInstance, record_instance
from radrouter.storage.label_maps import LABEL_MAP_SEGMENTATION
from radrouter.storage.store import InstanceStore
from tests.services import CT_CHEST, as_new_study


@pytest.fixture(scope="module")
def runner(tmp_path_factory: pytest.TempPathFactory) -> JobRunner:
    # Override: the storage root in a temporary folder, as every test's (the default is the cwd).
    settings = Settings(storage={"root": tmp_path_factory.mktemp("node")})
    index = Index(settings.storage.resolved_index_url(), migrate=True)
    return JobRunner(settings, index, InstanceStore(settings.storage.root), WarmPipelines(settings))


def _job(runner: JobRunner, sources: list[Path] | None = None, destination: str = "pacs") -> int:
    instances = []
    for source in sources or sorted(CT_CHEST.glob("*.dcm")):  # into the store, where the SCP files them
        header = pydicom.dcmread(source, stop_before_pixels=True)
        path = runner.store.instance_path(
            header.StudyInstanceUID, header.SeriesInstanceUID, header.SOPInstanceUID
        )
        runner.store.write(path, source.read_bytes())
        instances.append(ReceivedInstance.of_stored_file(path))
        record_instance(runner.index, instances[-1])
    with runner.index.session() as session:
        job = Job(
            study_uid=instances[0].study_uid,
            series_uid=instances[0].series_uid,
            pipeline="ct-lung",
            priority=Priority.ROUTINE,
            rule="chest-ct",
            destinations={"results_to": [destination]},
        )
        session.add(job)
        session.flush()
        return job.id


def test_the_seg_is_handed_off_before_the_sr_is_built_and_a_rerun_sends_only_what_is_pending(
    runner: JobRunner,
) -> None:
    job_id = _job(runner)
    seen: list[tuple[list[str], list[str], int]] = []

    def hand_off(delivery_ids: list[int]) -> None:
        """What leaves, what the index holds, and how many result files the store holds by then."""
        with runner.index.session() as session:
            leaving = [session.get(Delivery, d).result.kind.value for d in delivery_ids]  # type: ignore[union-attr]
            recorded = [r.kind.value for r in session.scalars(select(Result).where(Result.job_id == job_id))]
        seen.append((leaving, recorded, len(list((runner.store.root / "results").rglob("*.dcm")))))

    outcome = runner.run(job_id, hand_off=hand_off)
    assert outcome.delivery_ids == []  # all handed off already
    # ct-lung's SEG is a LABELMAP with a BINARY stand-in: 2 files when the SEG leaves, no SR yet; then
    # the SR and the SR that references the stand-in.
    assert seen == [(["SEG"], ["SEG"], 2), (["SR"], ["SEG", "SR"], 4)]

    # The worker dies after the SEG was delivered; the job runs again and sends only the SR.
    with runner.index.session() as session:
        job = session.get(Job, job_id)
        assert job is not None
        job.state = JobState.QUEUED
        for result in job.results:
            if result.kind == ResultKind.SEG:
                result.deliveries[0].state = DeliveryState.DELIVERED
    seen.clear()
    runner.run(job_id, hand_off=hand_off)
    assert [leaving for leaving, _, _ in seen] == [["SR"]]
    with runner.index.session() as session:
        job = session.get(Job, job_id)
        assert job is not None and job.state == JobState.DONE
        assert sorted(r.kind.value for r in job.results) == ["SEG", "SR"]
        assert all(r.summary for r in job.results)  # the measurements, on every result


def _seg_of(runner: JobRunner, job_id: int) -> tuple[str, bool]:
    """The job's SEG: its SOP class, and whether it has a stand-in."""
    with runner.index.session() as session:
        (seg,) = [
            r for r in session.scalars(select(Result).where(Result.job_id == job_id)) if r.kind == "SEG"
        ]
        return seg.sop_class_uid, seg.fallback_path is not None


def _delivered(runner: JobRunner, job_id: int, variant: SentVariant) -> None:
    """As the delivery worker records a SEG delivered: the label map itself, or its stand-in."""
    with runner.index.session() as session:
        for result in session.scalars(select(Result).where(Result.job_id == job_id)):
            for delivery in result.deliveries:
                delivery.state, delivery.delivered_at = DeliveryState.DELIVERED, utcnow()
                delivery.sent_variant = variant


def test_a_destination_that_refused_label_maps_gets_the_binary_seg_alone(
    runner: JobRunner, tmp_path: Path
) -> None:
    """Once the destination refused the label map (it was sent the stand-in), the next job writes the
    BINARY SEG alone; after it took a label map as it is, label maps again."""
    folders = [tmp_path / str(n) for n in range(3)]
    studies = [as_new_study(sorted(CT_CHEST.glob("*.dcm")), f) for f in folders if not f.mkdir()]
    first = _job(runner, studies[0], "old-pacs")
    runner.run(first)
    assert _seg_of(runner, first) == (LABEL_MAP_SEGMENTATION, True)  # not known yet: both
    _delivered(runner, first, SentVariant.STAND_IN)

    second = _job(runner, studies[1], "old-pacs")
    runner.run(second)
    assert _seg_of(runner, second) == (SegmentationStorage, False)
    with runner.index.session() as session:
        results = list(session.scalars(select(Result).where(Result.job_id == second)))
        (report,) = [r for r in results if r.kind == ResultKind.SR]
        (seg,) = [r for r in results if r.kind == ResultKind.SEG]
        assert report.fallback_path is None
        sr = pydicom.dcmread(runner.store.resolve(report.path))
    evidence = {
        str(item.ReferencedSOPInstanceUID)
        for study in sr.CurrentRequestedProcedureEvidenceSequence
        for series in study.ReferencedSeriesSequence
        for item in series.ReferencedSOPSequence
    }
    assert seg.sop_uid in evidence  # the SR is on the BINARY SEG

    with runner.index.session() as session:  # the destination was upgraded: it took a label map
        job = session.get(Job, first)
        assert job is not None
        for result in job.results:
            for delivery in result.deliveries:
                delivery.sent_variant, delivery.delivered_at = SentVariant.PRIMARY, utcnow()
    third = _job(runner, studies[2], "old-pacs")
    runner.run(third)
    assert _seg_of(runner, third) == (LABEL_MAP_SEGMENTATION, True)
