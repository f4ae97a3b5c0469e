"""A job's result objects from its source series and prediction: sanitised sources in, SEG (with its
BINARY stand-in for a label map), TID 1500 SR and, when asked, key images out, in the source's
character set.

The order matters: the sources pass the sanitiser before highdicom copies from them, and each object
is built inside a :func:`~radrouter.inference.failures.stage`, so a failure names the object and the
attribute instead of the exception class.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import highdicom as hd
from pydicom.dataset import Dataset

from radrouter.inference.failures import series_name, stage
from radrouter.inference.pipeline import Pipeline, Prediction
from radrouter.inference.results.characters import carry_character_set
from radrouter.inference.results.content import ResultIdentity, drop_empty_inherited_sequences
from radrouter.inference.results.key_images import KeyImageRequest, build_key_images, build_key_objects
from radrouter.inference.results.measurements import reported_findings, reported_measurements, result_summary
from radrouter.inference.results.sanitise import Repair, sanitise_sources
from radrouter.inference.results.seg import build_segmentation
from radrouter.inference.results.sr import build_report, report_on_stand_in
from radrouter.inference.results.summary import ResultSummary


@dataclass(frozen=True)
class ResultObjects:
    """What one job writes: the SEG, its stand-in (LABELMAP SEGs only), the SR and the SR on the
    stand-in, the key images with their Key Object Selection (when asked), and what changed."""

    segmentation: hd.seg.Segmentation
    stand_in: hd.seg.Segmentation | None
    report: hd.sr.Comprehensive3DSR
    summary: ResultSummary
    repairs: list[Repair]
    #: Seconds spent building the SEG(s), the SR and the key images: ``seg_s``, ``sr_s``, ``key_images_s``.
    timings: dict[str, float] = field(default_factory=dict)
    key_images: list[hd.sc.SCImage] = field(default_factory=list)
    key_objects: hd.ko.KeyObjectSelectionDocument | None = None
    #: The same report referencing the stand-in: a destination that gets the stand-in gets this SR.
    stand_in_report: hd.sr.Comprehensive3DSR | None = None


def _finish(result: Dataset, source: Dataset, repairs: list[Repair]) -> None:
    """What highdicom leaves to the caller: no empty optional sequences, and the source's character
    set where the text fits it."""
    drop_empty_inherited_sequences(result)
    repair = carry_character_set(result, source)
    if repair is not None and repair not in repairs:
        repairs.append(repair)


def build_results(
    datasets: Sequence[Dataset],
    prediction: Prediction,
    pipeline: Pipeline,
    identity: ResultIdentity,
    replaces: Sequence[Dataset] = (),
    key_images: KeyImageRequest | None = None,
    segmentation_ready: Callable[[hd.seg.Segmentation, hd.seg.Segmentation | None], None] | None = None,
    label_map: bool = True,
) -> ResultObjects:
    """The SEG and SR of a job, and its key images with ``key_images``; raises
    :class:`~radrouter.inference.failures.JobFailed` with the reason.

    ``segmentation_ready`` gets the finished SEG (and its stand-in) before the SR is built, so they can
    be on their way meanwhile; its time is not counted as the SR's. Without ``label_map`` (no
    destination would take one), several labels give one BINARY SEG and no stand-in."""
    started = time.perf_counter()
    repairs = sanitise_sources(datasets)
    where = series_name(list(datasets))
    with stage("the SEG could not be written", where):
        binary = None if label_map else hd.seg.SegmentationTypeValues.BINARY
        segmentation = build_segmentation(datasets, prediction, pipeline.segments, identity, binary)
        stand_in = None
        if segmentation.SegmentationType == "LABELMAP":
            stand_in = build_segmentation(
                datasets, prediction, pipeline.segments, identity, hd.seg.SegmentationTypeValues.BINARY
            )
    for finished in (segmentation, stand_in):
        if finished is not None:
            _finish(finished, datasets[0], repairs)
    built_seg = time.perf_counter()
    if segmentation_ready is not None:
        segmentation_ready(segmentation, stand_in)
    handed_off = time.perf_counter()
    measurements = reported_measurements(pipeline, prediction)
    findings = reported_findings(pipeline, prediction)
    with stage("the SR could not be written", where):
        report = build_report(
            datasets, segmentation, measurements, findings, pipeline.procedure, identity, replaces=replaces
        )
        _finish(report, datasets[0], repairs)
        # The report on the stand-in differs only in what it references: copied, not built again.
        stand_in_report = (
            report_on_stand_in(report, segmentation, stand_in, identity) if stand_in is not None else None
        )
    built_sr = time.perf_counter()
    images: list[hd.sc.SCImage] = []
    key_objects = None
    if key_images is not None:
        with stage("the key images could not be written", where):
            labels = prediction.labelmap.array
            images = build_key_images(datasets, labels, pipeline.segments, measurements, identity, key_images)
            key_objects = build_key_objects(images, identity) if images else None
        for drawn in (*images, key_objects):
            if drawn is not None:
                _finish(drawn, datasets[0], repairs)
    timings = {"seg_s": round(built_seg - started, 3), "sr_s": round(built_sr - handed_off, 3)}
    if key_images is not None:
        timings["key_images_s"] = round(time.perf_counter() - built_sr, 3)
    summary = result_summary(pipeline, measurements, findings)
    return ResultObjects(
        segmentation, stand_in, report, summary, repairs, timings, images, key_objects, stand_in_report
    )
