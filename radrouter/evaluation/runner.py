"""Runs a pipeline (or reads a model's saved outputs) over evaluation cases and scores it, by subgroup.

The pipeline runs on the worker's code path: stored series → :func:`load_volume` → the registry's
loaded pipeline → label map, so what is scored is what the node would deliver.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import highdicom as hd
import numpy as np

from radrouter.config.settings import Settings
from radrouter.evaluation.cases import (
    FINDINGS_FILE,
    Case,
    Labels,
    SegmentMask,
    read_labels,
    seg_files,
    segment_masks,
)
from radrouter.evaluation.scores import FindingScores, dice, finding_scores, hausdorff95
from radrouter.inference.registry import WarmPipelines
from radrouter.inference.results.measurements import reported_findings
from radrouter.inference.volume import load_volume, read_series


@dataclass(frozen=True)
class ModelOutput:
    """What a model said about one case: masks on the input grid and finding probabilities by code."""

    masks: list[SegmentMask]
    findings: dict[str, float]


class Predictor(Protocol):
    """Where predictions come from: a pipeline run now, or files a model wrote before."""

    description: str

    def predict(self, case: Case, volume: hd.Volume) -> ModelOutput: ...


class PipelinePredictor:
    """Runs a pipeline (built-in, entry point or from config) as a worker does; a finding the pipeline
    does not report counts as probability 0."""

    def __init__(self, settings: Settings, name: str) -> None:
        self.pipeline = WarmPipelines(settings).get(name)
        self.description = f"{name} ({self.pipeline.version})"

    def predict(self, case: Case, volume: hd.Volume) -> ModelOutput:
        prediction = self.pipeline.predict(volume)
        labels = np.asarray(prediction.labelmap.array)
        masks = [
            SegmentMask(spec.name, spec.property_type, labels == spec.label)
            for spec in self.pipeline.segments
        ]
        findings = {
            f"{finding.code.scheme_designator}:{finding.code.value}": finding.probability
            if finding.probability is not None
            else float(finding.present)
            for finding in reported_findings(self.pipeline, prediction)
        }
        return ModelOutput(masks, findings)


class SavedPredictor:
    """A model's outputs saved before: ``<folder>/<case>/`` SEG files and ``<folder>/findings.csv``."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.description = f"predictions in {folder}"
        findings_csv = folder / FINDINGS_FILE
        self.findings = read_labels(findings_csv, "probability") if findings_csv.is_file() else Labels()

    def predict(self, case: Case, volume: hd.Volume) -> ModelOutput:
        case_folder = self.folder / case.name
        masks = segment_masks(seg_files(case_folder) if case_folder.is_dir() else [], volume)
        return ModelOutput(masks, dict(self.findings.values.get(case.name, {})))


@dataclass
class CaseScores:
    """One case's figures: Dice and HD95 per reference segment, and (truth, probability) per finding."""

    case: str
    descriptors: dict[str, str]
    segments: dict[str, tuple[float, float]] = field(default_factory=dict)
    findings: dict[str, tuple[bool, float]] = field(default_factory=dict)


@dataclass(frozen=True)
class SegmentSummary:
    """Mean Dice and HD95 of one segment over a group of cases (HD95 over cases where it is finite)."""

    cases: int
    dice_mean: float
    dice_min: float
    hd95_mean: float | None


@dataclass
class GroupScores:
    """The figures of one group of cases (all, or one subgroup such as manufacturer = GE)."""

    cases: int
    segments: dict[str, SegmentSummary]
    findings: dict[str, FindingScores]


@dataclass
class Evaluation:
    """The whole report: per-case figures, the overall group, and every subgroup by descriptor."""

    source: str
    threshold: float
    cases: list[CaseScores]
    overall: GroupScores
    subgroups: dict[str, dict[str, GroupScores]]


def score_case(case: Case, predictor: Predictor, labels: Labels) -> CaseScores:
    """Predict one case and compare each reference segment with the predicted one of the same concept."""
    volume = load_volume(read_series(case.series_paths))
    output = predictor.predict(case, volume)
    scores = CaseScores(case.name, case.descriptors)
    for reference in segment_masks(case.seg_paths, volume):
        predicted = next((m for m in output.masks if m.property_type == reference.property_type), None)
        if predicted is None:
            continue
        scores.segments[reference.name] = (
            dice(predicted.mask, reference.mask),
            hausdorff95(predicted.mask, reference.mask, volume.spacing),
        )
    for code, label in labels.values.get(case.name, {}).items():
        scores.findings[code] = (label == 1.0, output.findings.get(code, 0.0))
    return scores


def summarise(cases: Iterable[CaseScores], threshold: float) -> GroupScores:
    group = list(cases)
    per_segment: dict[str, list[tuple[float, float]]] = defaultdict(list)
    per_finding: dict[str, list[tuple[bool, float]]] = defaultdict(list)
    for scores in group:
        for name, pair in scores.segments.items():
            per_segment[name].append(pair)
        for code, outcome in scores.findings.items():
            per_finding[code].append(outcome)
    segments = {}
    for name, pairs in sorted(per_segment.items()):
        dices = [d for d, _ in pairs]
        finite = [h for _, h in pairs if math.isfinite(h)]
        segments[name] = SegmentSummary(
            cases=len(pairs),
            dice_mean=float(np.mean(dices)),
            dice_min=float(np.min(dices)),
            hd95_mean=float(np.mean(finite)) if finite else None,
        )
    findings = {
        code: finding_scores([t for t, _ in pairs], [p for _, p in pairs], threshold)
        for code, pairs in sorted(per_finding.items())
    }
    return GroupScores(len(group), segments, findings)


def evaluate(cases: list[Case], predictor: Predictor, labels: Labels, threshold: float = 0.5) -> Evaluation:
    """Score every case, then the whole set and each subgroup of every input descriptor."""
    scored = [score_case(case, predictor, labels) for case in cases]
    subgroups: dict[str, dict[str, GroupScores]] = {}
    for descriptor in sorted({key for scores in scored for key in scores.descriptors}):
        values = sorted({scores.descriptors[descriptor] for scores in scored})
        subgroups[descriptor] = {
            value: summarise((s for s in scored if s.descriptors[descriptor] == value), threshold)
            for value in values
        }
    return Evaluation(predictor.description, threshold, scored, summarise(scored, threshold), subgroups)
