"""A folder of evaluation cases: one sub-folder per case with its input series and reference results.

Layout::

    cases/
      labels.csv            optional: case,code,label  (label 1 = finding present, 0 = absent)
      case-001/             any tree of DICOM files: the image series (the input) and reference SEGs
      case-002/ ...

A prediction folder (instead of running a pipeline) has the same shape: ``<case>/`` with the model's
SEG files and an optional ``findings.csv`` (case,code,probability).
"""

from __future__ import annotations

import csv
import os
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.sr.coding import Code

from radrouter.evaluation.scores import Mask
from radrouter.monitoring.descriptors import input_descriptors

LABELS_FILE = "labels.csv"
FINDINGS_FILE = "findings.csv"


class CaseError(ValueError):
    """A case folder or a CSV that cannot be evaluated, with the reason."""


@dataclass
class Case:
    """One case: its input series (paths in stored order), reference SEG files and input descriptors."""

    name: str
    series_paths: list[Path]
    seg_paths: list[Path]
    descriptors: dict[str, str]


@dataclass(frozen=True)
class SegmentMask:
    """One segment of a SEG, as a boolean mask on the input series' grid."""

    name: str
    property_type: Code
    mask: Mask


@dataclass
class Labels:
    """Per case and finding code, the reference label (True = present) or a predicted probability."""

    values: dict[str, dict[str, float]] = field(default_factory=lambda: defaultdict(dict))

    def get(self, case: str, code: str) -> float | None:
        return self.values.get(case, {}).get(code)

    def codes(self) -> list[str]:
        return sorted({code for per_case in self.values.values() for code in per_case})


def _dicom_files(folder: Path) -> list[tuple[Path, Dataset]]:
    found: list[tuple[Path, Dataset]] = []
    for directory, _, names in os.walk(folder, followlinks=True):
        for name in sorted(names):
            path = Path(directory) / name
            try:
                found.append((path, pydicom.dcmread(path, stop_before_pixels=True)))
            except (InvalidDicomError, OSError):
                continue
    return found


def read_case(folder: Path) -> Case:
    """The largest image series of ``folder`` is the input; every SEG in it is a reference."""
    series: dict[str, list[tuple[Path, Dataset]]] = defaultdict(list)
    segs: list[Path] = []
    for path, header in _dicom_files(folder):
        if header.get("Modality") == "SEG":
            segs.append(path)
        elif "PixelData" in header or header.get("Rows"):
            series[str(header.SeriesInstanceUID)].append((path, header))
    if not series:
        raise CaseError(f"{folder}: no image series found")
    instances = max(series.values(), key=len)
    return Case(
        name=folder.name,
        series_paths=[path for path, _ in instances],
        seg_paths=segs,
        descriptors=input_descriptors(instances[0][1]),
    )


def seg_files(folder: Path) -> list[Path]:
    """Every DICOM-SEG under ``folder`` (other files are ignored)."""
    return [path for path, header in _dicom_files(folder) if header.get("Modality") == "SEG"]


def read_cases(folder: Path) -> list[Case]:
    """Every sub-folder of ``folder`` that holds DICOM files is a case, in name order."""
    if not folder.is_dir():
        raise CaseError(f"{folder} is not a folder")
    cases = [read_case(sub) for sub in sorted(folder.iterdir()) if sub.is_dir()]
    if not cases:
        raise CaseError(f"{folder}: no case folders found")
    return cases


def segment_masks(seg_paths: list[Path], grid: hd.Volume) -> list[SegmentMask]:
    """Every segment of every SEG in ``seg_paths``, resampled-free onto ``grid`` (same frame of reference)."""
    masks = []
    for path in seg_paths:
        seg = hd.seg.segread(path)
        for description in seg.SegmentSequence:
            number = int(description.SegmentNumber)
            volume = seg.get_volume(segment_numbers=[number], combine_segments=True, relabel=True)
            try:
                on_grid = volume.match_geometry(grid)
            except RuntimeError as error:
                raise CaseError(f"{path}: segment {number} is not on the input series' grid") from error
            concept = description.SegmentedPropertyTypeCodeSequence[0]
            masks.append(
                SegmentMask(
                    name=str(description.SegmentLabel),
                    property_type=Code(
                        concept.CodeValue, concept.CodingSchemeDesignator, concept.CodeMeaning
                    ),
                    mask=np.asarray(on_grid.array > 0),
                )
            )
    return masks


def read_labels(path: Path, column: str) -> Labels:
    """``case,code,<column>`` rows (``label`` 0/1 or ``probability``); a bad row is named by line."""
    labels = Labels()
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        missing = {"case", "code", column} - set(reader.fieldnames or [])
        if missing:
            raise CaseError(f"{path}: missing column(s) {sorted(missing)}")
        for line, row in enumerate(reader, start=2):
            try:
                value = float(row[column])
            except ValueError as error:
                raise CaseError(f"{path}, line {line}: {column} {row[column]!r} is not a number") from error
            if column == "label" and value not in (0.0, 1.0):
                raise CaseError(f"{path}, line {line}: label must be 0 or 1, not {row[column]!r}")
            labels.values[row["case"]][row["code"]] = value
    return labels
