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
from sqlalchemy import select
from sqlalchemy.orm import Session

from radrouter.config.results import ResultPart
from radrouter.config.settings import Settings, config_file_from_environment
from radrouter.inference.failures import REASON_LENGTH, JobFailed, in_words, series_name, stage
from radrouter.inference.node_link import encode_file, node_link
from radrouter.inference.pipeline import Pipeline, PipelineInputError, Prediction
from radrouter.inference.prepare import check_input
from radrouter.inference.registry import WarmPipelines
from radrouter.inference.results.build import build_results
from radrouter.inference.results.content import ResultIdentity
from radrouter.inference.results.key_images import KeyImageRequest
from radrouter.inference.results.sanitise import Repair
from radrouter.inference.volume import NoFrameOfReference, load_volume, read_series
from radrouter.logs import study
from radrouter.router.route.rulebook import RuleBook
from radrouter.storage import workitems
from radrouter.storage.index import (
    Delivery,
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
from radrouter.storage.store import InstanceStore

log = logging.getLogger(__name__)

#: Which part of a destination's ``results`` each kind of result belongs to.
RESULT_PART = {
    ResultKind.SEG: ResultPart.SEG,
    ResultKind.SR: ResultPart.SR,
    ResultKind.KEY_IMAGE: ResultPart.KEY_IMAGES,
    ResultKind.KEY_OBJECTS: ResultPart.KEY_IMAGES,
}


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

    def run(self, job_id: int, worker: str = "", incarnation: str | None = None) -> JobOutcome:
        """Compute job ``job_id``; ``worker`` (the Celery worker's name) and its ``incarnation`` (this
        start of it) are recorded with the job and in the audit trail."""
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
            replaced = _earlier_reports(session, job)
            waited = (job.started_at - job.queued_at).total_seconds() if job.started_at else 0.0

        try:
            paths = [str(path) for path in self.node.series_files(study_uid, series_uid, recorded)]
            key_images = any(ResultPart.KEY_IMAGES in wanted for wanted in parts.values())
            timings, results, repairs = self._compute(
                job_id, study_uid, series_uid, pipeline_name, revision, paths, replaced, key_images
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
            delivery_rows: list[Delivery] = []
            for result in results:
                session.add(result)
                session.flush()
                for destination in results_to:
                    if RESULT_PART[result.kind] not in parts[destination]:
                        continue
                    delivery = Delivery(result_id=result.id, destination=destination)
                    session.add(delivery)
                    delivery_rows.append(delivery)
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
            return JobOutcome(job_id, [d.id for d in delivery_rows])

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
        replaced: list[str],
        key_images: bool = False,
    ) -> tuple[dict[str, Any], list[Result], list[Repair]]:
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
            datasets = read_series(paths)
        where = series_name(datasets)
        try:
            volume = load_volume(datasets)
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
            job_key=f"{series_uid}/{pipeline_name}/{revision}",
            pipeline=pipeline_name,
            algorithm_version=pipeline.version,
            series_number=pipeline.series_number,
        )
        earlier = [self.store.resolve(path) for path in replaced]
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
        )
        timings.update(built.timings)
        clock = time.perf_counter()
        summary = built.summary
        results: list[Result] = []
        written: list[Path] = []
        for kind, dataset, stand_in in (
            (ResultKind.SEG, built.segmentation, built.stand_in),
            (ResultKind.SR, built.report, built.stand_in_report),
            *((ResultKind.KEY_IMAGE, image, None) for image in built.key_images),
            *([(ResultKind.KEY_OBJECTS, built.key_objects, None)] if built.key_objects else []),
        ):
            with stage(f"the {kind.value} could not be stored", where):
                path = self.store.result_path(study_uid, dataset.SOPInstanceUID)
                fallback_path = None
                if stand_in is not None:
                    fallback_path = self.store.result_path(study_uid, stand_in.SOPInstanceUID)
                    self.store.write(fallback_path, encode_file(stand_in))
                    written.append(fallback_path)
                self.store.write(path, encode_file(dataset))
                written.append(path)
            results.append(
                Result(
                    job_id=job_id,
                    kind=kind,
                    sop_uid=dataset.SOPInstanceUID,
                    sop_class_uid=dataset.SOPClassUID,
                    series_uid=dataset.SeriesInstanceUID,
                    path=self.node.recorded_result_path(path),
                    fallback_path=self.node.recorded_result_path(fallback_path) if fallback_path else None,
                    summary=summary.as_row(),
                )
            )
        with stage("the results could not be returned to the node"):
            self.node.return_results(written)
        lap("write_s")
        log.info(
            "job %d (%s) on series %s: %s", job_id, pipeline_name, series_uid, timings, extra=study(study_uid)
        )
        return timings, results, built.repairs

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
