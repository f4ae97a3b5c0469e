"""Runs one job: series → volume → model → SEG + SR on disk and in the index, with per-hop timings."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import highdicom as hd
import pydicom
import torch
from pydicom.dataset import Dataset
from sqlalchemy import select
from sqlalchemy.orm import Session

from radrouter.config.results import ResultPart
from radrouter.config.settings import Settings, config_file_from_environment
from radrouter.inference.failures import REASON_LENGTH, JobFailed, in_words, series_name, stage
from radrouter.inference.handoff import HandOff, ResultHandOff
from radrouter.inference.node_link import encode_file, node_link
from radrouter.inference.pipeline import Pipeline, PipelineInputError, Prediction
from radrouter.inference.prepare import check_input
from radrouter.inference.registry import WarmPipelines
from radrouter.inference.results.build import build_results
from radrouter.inference.results.content import ResultIdentity, job_key
from radrouter.inference.results.key_images import KeyImageRequest
from radrouter.inference.results.sanitise import Repair
from radrouter.inference.results.summary import ResultSummary
from radrouter.inference.stored_series import load_series, read_stored_series
from radrouter.inference.volume import NoFrameOfReference
from radrouter.logs import study
from radrouter.router.route.rulebook import RuleBook
from radrouter.storage import workitems
from radrouter.storage.index import (
    Hop,
    Index,
    Job,
    JobState,
    Result,
    ResultKind,
    Series,
    StudyState,
    settle_study,
    utcnow,
)
from radrouter.storage.label_maps import LABEL_MAP_SEGMENTATION, refuses_label_maps
from radrouter.storage.slices import SliceRecord
from radrouter.storage.store import InstanceStore

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class JobOutcome:
    """What a finished job leaves for delivery."""

    job_id: int
    delivery_ids: list[int]


class JobRunner:
    """Executes jobs for a worker; the pipeline models stay loaded in the process between jobs."""

    def __init__(
        self, settings: Settings, index: Index, store: InstanceStore, pipelines: WarmPipelines
    ) -> None:
        self.settings = settings
        self.index = index
        self.store = store
        self.pipelines = pipelines
        self.node = node_link(settings, store)
        #: Destinations as the config file says now, as the delivery workers read them.
        self.rulebook = RuleBook(settings, config_file_from_environment())

    def run(
        self,
        job_id: int,
        worker: str = "",
        incarnation: str | None = None,
        hand_off: HandOff | None = None,
        credential: str | None = None,
    ) -> JobOutcome:
        """Compute job ``job_id``; ``worker`` (the Celery worker's name) and its ``incarnation`` (this
        start of it) are recorded with the job and in the audit trail. ``hand_off`` gets each result's
        delivery IDs as soon as it is stored (the SEG before the SR is built); without it, the outcome
        lists them. ``credential`` is the job's, for results returned over DICOMweb."""
        with self.index.session() as session:
            job = session.get(Job, job_id)
            if job is None:
                raise LookupError(f"job {job_id} is not in the index")
            if job.state == JobState.DONE:
                # Redelivered after the work was done (acks late): deliver what exists, compute nothing.
                return JobOutcome(job_id, [d.id for r in job.results for d in r.deliveries])
            if not workitems.job_started(session, job_id, worker):
                return JobOutcome(job_id, [])  # an outside Task Performer claimed it over UPS-RS
            job.state, job.started_at, job.error = JobState.RUNNING, utcnow(), None
            job.worker, job.incarnation = worker[:200] or None, incarnation
            job.study.state = StudyState.PROCESSING
            self.index.record_event(
                session,
                job.study_uid,
                Hop.INFERENCE_STARTED,
                job=job_id,
                pipeline=job.pipeline,
                worker=worker,
            )
            series = session.get(Series, job.series_uid)
            assert series is not None
            recorded = {instance.sop_uid: instance.path for instance in series.instances}
            # Fetched copies (DICOMweb) are written anew: the index's Pixel Data offsets are the node's.
            slices = [
                SliceRecord.of_instance(instance) if self.node.files_as_received else None
                for instance in series.instances
            ]
            study_uid, series_uid, pipeline_name, revision = (
                job.study_uid,
                job.series_uid,
                job.pipeline,
                job.revision,
            )
            results_to: list[str] = list(job.destinations.get("results_to", []))
            if job.pipeline in self.settings.monitoring.shadow_pipelines:
                results_to = []  # shadow mode: stored and monitored, never sent
            parts = {name: self._parts(name) for name in results_to}
            label_map = _label_map_wanted(session, job, parts)
            replaced = _earlier_reports(session, job)
            waited = (job.started_at - job.queued_at).total_seconds() if job.started_at else 0.0

        recorder = ResultHandOff(self.index, parts, hand_off)
        try:
            paths = [str(path) for path in self.node.series_files(study_uid, series_uid, recorded)]
            key_images = any(ResultPart.KEY_IMAGES in wanted for wanted in parts.values())
            timings, summary, repairs = self._compute(
                job_id,
                study_uid,
                series_uid,
                pipeline_name,
                revision,
                paths,
                slices,
                replaced,
                recorder,
                key_images,
                credential,
                label_map,
            )
        except Exception as error:
            reason = (
                str(error)
                if isinstance(error, JobFailed | PipelineInputError)
                else f"the job failed: {in_words(error)}"
            )[:REASON_LENGTH]
            with self.index.session() as session:
                failed = session.get(Job, job_id)
                assert failed is not None
                failed.state, failed.finished_at, failed.error = JobState.FAILED, utcnow(), reason
                workitems.job_ended(session, job_id, None, reason)
                self.index.record_event(session, study_uid, Hop.INFERENCE_FAILED, job=job_id, reason=reason)
                settle_study(session, study_uid)
            log.warning("job %d (%s) failed: %s", job_id, pipeline_name, reason, extra=study(study_uid))
            log.debug("job %d (%s) failed", job_id, pipeline_name, exc_info=error, extra=study(study_uid))
            raise JobFailed(reason) from error

        timings["queue_wait_s"] = round(waited, 3)
        with self.index.session() as session:
            done = session.get(Job, job_id)
            assert done is not None
            results: list[Result] = []
            for result_id in recorder.result_ids:
                result = session.get(Result, result_id)
                assert result is not None
                result.summary = summary.as_row()  # known once the SR's measurements are
                results.append(result)
            done.state, done.finished_at, done.timings = JobState.DONE, utcnow(), timings
            outputs = [
                {"series_uid": r.series_uid, "sop_class_uid": r.sop_class_uid, "sop_uid": r.sop_uid}
                for r in results
            ]
            workitems.job_ended(session, job_id, outputs, None)
            done.aftercare_sent_at = done.finished_at  # its triage and monitoring are sent next
            done.repairs = [repair.as_row() for repair in repairs]
            session.flush()
            self.index.record_event(
                session,
                study_uid,
                Hop.INFERRED,
                job=job_id,
                pipeline=pipeline_name,
                model_version=self.pipelines.entry(pipeline_name).version,
                results=[r.sop_uid for r in results],
                timings=timings,
                repairs=done.repairs,
            )
            settle_study(session, study_uid)
            return JobOutcome(job_id, recorder.kept)

    def _parts(self, destination: str) -> set[ResultPart]:
        """What ``destination`` receives of a job's results (for one no longer configured, the defaults:
        its delivery then fails with the reason)."""
        configured = self.rulebook.current().destinations.get(destination)
        return set(configured.results) if configured is not None else {ResultPart.SEG, ResultPart.SR}

    def _compute(
        self,
        job_id: int,
        study_uid: str,
        series_uid: str,
        pipeline_name: str,
        revision: int,
        paths: list[str],
        slices: list[SliceRecord | None],
        replaced: list[str],
        recorder: ResultHandOff,
        key_images: bool = False,
        credential: str | None = None,
        label_map: bool = True,
    ) -> tuple[dict[str, Any], ResultSummary, list[Repair]]:
        timings: dict[str, Any] = {}
        clock = time.perf_counter()

        def lap(name: str) -> None:
            nonlocal clock
            now = time.perf_counter()
            timings[name] = round(now - clock, 3)
            clock = now

        with stage("the pipeline could not be loaded"):
            pipeline = self.pipelines.get(pipeline_name)
        lap("model_load_s")
        with stage("the series could not be read"):
            stored = read_stored_series(paths, slices)
        where = series_name(stored.headers)
        try:
            datasets, volume = load_series(stored)
        except NoFrameOfReference as error:
            reason = f"the SEG could not be written: FrameOfReferenceUID is missing in {where} ({error})"
            raise PipelineInputError(reason) from error
        except ValueError as error:
            raise PipelineInputError(f"{where} is not a regular volume: {error}") from error
        check_input(pipeline.input, datasets, volume)
        lap("volume_load_s")
        with stage("the model failed", where):
            prediction = self._predict(pipeline, volume)
        lap("predict_s")
        timings["model_s"] = round(prediction.model_seconds, 3)

        identity = ResultIdentity(
            job_key=job_key(series_uid, pipeline_name, revision),
            pipeline=pipeline_name,
            algorithm_version=pipeline.version,
            series_number=pipeline.series_number,
        )
        earlier = [self.store.resolve(path) for path in replaced]
        writing = 0.0

        def store_result(kind: ResultKind, dataset: Dataset, stand_in: Dataset | None) -> None:
            """Write one result (and its stand-in), return it to the node, record and hand it off."""
            nonlocal writing
            started = time.perf_counter()
            with stage(f"the {kind.value} could not be stored", where):
                path = self.store.result_path(study_uid, dataset.SOPInstanceUID)
                written: list[Path] = []
                fallback_path = None
                if stand_in is not None:
                    fallback_path = self.store.result_path(study_uid, stand_in.SOPInstanceUID)
                    self.store.write(fallback_path, encode_file(stand_in))
                    written.append(fallback_path)
                self.store.write(path, encode_file(dataset))
                written.append(path)
            with stage("the results could not be returned to the node"):
                self.node.return_results(written, credential)
            recorder.record(
                Result(
                    job_id=job_id,
                    kind=kind,
                    sop_uid=dataset.SOPInstanceUID,
                    sop_class_uid=dataset.SOPClassUID,
                    series_uid=dataset.SeriesInstanceUID,
                    path=self.node.recorded_result_path(path),
                    fallback_path=self.node.recorded_result_path(fallback_path) if fallback_path else None,
                )
            )
            writing += time.perf_counter() - started

        built = build_results(
            datasets,
            prediction,
            pipeline,
            identity,
            replaces=[pydicom.dcmread(path) for path in earlier if path.is_file()],
            key_images=KeyImageRequest(
                volume, self.settings.key_images.spread_slices, self.settings.key_images.max_images
            )
            if key_images
            else None,
            segmentation_ready=lambda seg, stand_in: store_result(ResultKind.SEG, seg, stand_in),
            label_map=label_map,
        )
        timings.update(built.timings)
        store_result(ResultKind.SR, built.report, built.stand_in_report)
        for image in built.key_images:
            store_result(ResultKind.KEY_IMAGE, image, None)
        if built.key_objects is not None:
            store_result(ResultKind.KEY_OBJECTS, built.key_objects, None)
        timings["write_s"] = round(writing, 3)
        log.info(
            "job %d (%s) on series %s: %s", job_id, pipeline_name, series_uid, timings, extra=study(study_uid)
        )
        return timings, built.summary, built.repairs

    def _predict(self, pipeline: Pipeline, volume: hd.Volume) -> Prediction:
        """Run the model, alone on the device; out of memory, free the other warm models and try again."""
        with self.pipelines.device_lock:
            try:
                return pipeline.predict(volume)
            except torch.OutOfMemoryError:
                if not self.pipelines.evict_others(pipeline.name):
                    raise
                log.warning("out of memory in %s; evicted the other models and retrying", pipeline.name)
                return pipeline.predict(volume)


def _label_map_wanted(session: Session, job: Job, parts: dict[str, set[ResultPart]]) -> bool:
    """Whether a multi-label SEG is written as a label map (with its BINARY stand-in) or as the BINARY
    SEG alone: alone when every destination that gets the SEG refused label maps on its last delivery
    of one. A job run again writes what its first attempt wrote (its results' UIDs depend on it)."""
    earlier = [result.sop_class_uid for result in job.results if result.kind == ResultKind.SEG]
    if earlier:
        return earlier[0] == LABEL_MAP_SEGMENTATION
    receiving = [name for name, wanted in parts.items() if ResultPart.SEG in wanted]
    return not receiving or not all(refuses_label_maps(session, name) for name in receiving)


def _earlier_reports(session: Session, job: Job) -> list[str]:
    """Recorded paths of the SRs the same pipeline wrote for this series on the latest earlier revision."""
    earlier = session.scalars(
        select(Result)
        .join(Job)
        .where(
            Job.series_uid == job.series_uid,
            Job.pipeline == job.pipeline,
            Job.revision < job.revision,
            Result.kind == ResultKind.SR,
        )
        .order_by(Job.revision.desc())
    ).all()
    latest = [r for r in earlier if r.job.revision == earlier[0].job.revision] if earlier else []
    return [result.path for result in latest]
