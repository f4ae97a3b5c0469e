"""What the rules see of a series: one instance's header, how the series arrived, and derived facts.

Derived facts (kind, orientation, slices) are computed here from the header, never from pixel data,
so routing costs one header read per series.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.multival import MultiValue

from radrouter.config.rules import Orientation, SeriesKind
from radrouter.storage.index import Index, Study

#: Dose reports (PS3.4 B.5): X-Ray, Radiopharmaceutical, Enhanced X-Ray, Patient Radiation Dose SR.
DOSE_SR_CLASSES = frozenset(
    {
        "1.2.840.10008.5.1.4.1.1.88.67",
        "1.2.840.10008.5.1.4.1.1.88.68",
        "1.2.840.10008.5.1.4.1.1.88.76",
        "1.2.840.10008.5.1.4.1.1.88.73",
    }
)
#: Secondary Capture Image Storage, and its multi-frame variants (PS3.4 B.5).
SECONDARY_CAPTURE_CLASSES = frozenset(
    {
        "1.2.840.10008.5.1.4.1.1.7",
        "1.2.840.10008.5.1.4.1.1.7.1",
        "1.2.840.10008.5.1.4.1.1.7.2",
        "1.2.840.10008.5.1.4.1.1.7.3",
        "1.2.840.10008.5.1.4.1.1.7.4",
    }
)
NON_IMAGE_MODALITIES = frozenset({"SR", "SEG", "PR", "KO", "REG", "RTSTRUCT", "RTPLAN", "RTRECORD", "DOC"})
_LOCALIZER_DESCRIPTION = re.compile(r"(?i)\b(locali[sz]er|scout|survey|topogram|surview|3.?plane)")
_DOSE_DESCRIPTION = re.compile(r"(?i)\bdose\b")

Value = str | float


@dataclass(frozen=True)
class SeriesHeader:
    """The header of one instance of a series, how many images the series holds, and who sent it."""

    series_uid: str
    dataset: Dataset
    calling_ae: str = ""
    called_ae: str = ""
    instances: int = 1

    @property
    def slices(self) -> int:
        """Images in the series: instances, or the frames of a single multi-frame instance."""
        frames = _number(self.dataset.get("NumberOfFrames"))
        return max(self.instances, int(frames) if frames and self.instances == 1 else 0)

    @property
    def kind(self) -> SeriesKind:
        return series_kind(self.dataset)

    def describe(self) -> str:
        number = self.dataset.get("SeriesNumber", "")
        text = self.dataset.get("SeriesDescription", "") or self.dataset.get("Modality", "")
        return f"{number} {text}".strip() or self.series_uid

    def thickness(self) -> float | None:
        return _number(self.dataset.get("SliceThickness"))

    def series_number(self) -> float | None:
        return _number(self.dataset.get("SeriesNumber"))


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _image_type(dataset: Dataset) -> list[str]:
    value = dataset.get("ImageType") or []
    return [str(item).upper() for item in (value if isinstance(value, MultiValue | list) else [value])]


def series_kind(dataset: Dataset) -> SeriesKind:
    """Localizer, dose report, secondary capture, other non-image object, or an image series."""
    sop_class = str(dataset.get("SOPClassUID", ""))
    description = str(dataset.get("SeriesDescription", "") or "")
    if sop_class in DOSE_SR_CLASSES:
        return SeriesKind.DOSE_REPORT
    if sop_class in SECONDARY_CAPTURE_CLASSES:
        dose_screen = _DOSE_DESCRIPTION.search(description) or "DOSE_INFO" in _image_type(dataset)
        return SeriesKind.DOSE_REPORT if dose_screen else SeriesKind.SECONDARY_CAPTURE
    if str(dataset.get("Modality", "")).upper() in NON_IMAGE_MODALITIES or "Rows" not in dataset:
        return SeriesKind.OTHER
    if "LOCALIZER" in _image_type(dataset) or _LOCALIZER_DESCRIPTION.search(description):
        return SeriesKind.LOCALIZER
    return SeriesKind.IMAGE


def _orientation_values(dataset: Dataset) -> Any:
    if "ImageOrientationPatient" in dataset:
        return dataset.ImageOrientationPatient
    for group in ("SharedFunctionalGroupsSequence", "PerFrameFunctionalGroupsSequence"):
        items = dataset.get(group) or []
        if items and items[0].get("PlaneOrientationSequence"):
            return items[0].PlaneOrientationSequence[0].get("ImageOrientationPatient")
    return None


def orientation(dataset: Dataset, tolerance_deg: float) -> Orientation | None:
    """The plane whose normal is within ``tolerance_deg`` of the image normal; None if unknowable."""
    raw = _orientation_values(dataset)
    numbers = [_number(v) for v in (raw if isinstance(raw, MultiValue | list) else [])]
    if len(numbers) != 6 or any(n is None for n in numbers):
        return None
    rx, ry, rz, cx, cy, cz = (float(n or 0.0) for n in numbers)
    normal = (ry * cz - rz * cy, rz * cx - rx * cz, rx * cy - ry * cx)
    length = math.sqrt(sum(n * n for n in normal))
    if length < 1e-6:
        return None
    axis = max(range(3), key=lambda i: abs(normal[i]))
    angle = math.degrees(math.acos(min(1.0, abs(normal[axis]) / length)))
    if angle > tolerance_deg:
        return Orientation.OBLIQUE
    return (Orientation.SAGITTAL, Orientation.CORONAL, Orientation.AXIAL)[axis]


def functional_group_holder(dataset: Dataset, key: str) -> Dataset | None:
    """Where an enhanced multi-frame instance keeps an attribute a classic slice has at the top level
    (e.g. MRAcquisitionType, SliceThickness, RepetitionTime): a functional group macro of the shared
    groups, else of the first frame (PS3.3 C.7.6.16)."""
    for group in ("SharedFunctionalGroupsSequence", "PerFrameFunctionalGroupsSequence"):
        items = dataset.get(group) or []
        if not items:
            continue
        for element in items[0]:
            if element.VR != "SQ":
                continue
            macro: Dataset
            for macro in element.value:
                if key in macro:
                    return macro
    return None


def values_of(header: SeriesHeader, key: str, tolerance_deg: float) -> list[Value] | None:
    """An attribute's values (a list: DICOM attributes can be multi-valued); None when missing or empty."""
    derived: dict[str, Any] = {"calling_ae": header.calling_ae, "called_ae": header.called_ae}
    if key in derived:
        return [derived[key]] if derived[key] else None
    if key == "kind":
        return [header.kind.value]
    if key == "slices":
        return [float(header.slices)]
    if key == "orientation":
        plane = orientation(header.dataset, tolerance_deg)
        return [plane.value] if plane else None
    holder = header.dataset if key in header.dataset else functional_group_holder(header.dataset, key)
    if holder is None:
        return None
    try:
        value = holder[key].value
    except (ValueError, TypeError, OverflowError):
        # A value pydicom cannot convert to its VR (e.g. "***" in a DS): test the raw text instead.
        raw = holder.get_item(key).value
        value = raw.decode("latin-1", "replace").strip(" \x00") if isinstance(raw, bytes) else raw
    if value is None or value == "" or (isinstance(value, MultiValue | list) and len(value) == 0):
        return None
    items = list(value) if isinstance(value, MultiValue | list) else [value]
    return [item if isinstance(item, int | float) else str(item) for item in items]


def read_header(path: str | Path) -> Dataset:
    return pydicom.dcmread(path, stop_before_pixels=True)


def headers_from_folder(folder: Path, calling_ae: str, called_ae: str) -> list[SeriesHeader]:
    """One header per series of the DICOM files under ``folder`` (other files are skipped)."""
    first: dict[str, Dataset] = {}
    counts: dict[str, int] = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        try:
            dataset = read_header(path)
            series_uid = str(dataset.SeriesInstanceUID)
        except (InvalidDicomError, AttributeError, OSError, ValueError, EOFError):
            continue
        first.setdefault(series_uid, dataset)
        counts[series_uid] = counts.get(series_uid, 0) + 1
    return [SeriesHeader(uid, first[uid], calling_ae, called_ae, counts[uid]) for uid in first]


@dataclass(frozen=True)
class StoredSeries:
    """Where to read a stored series' header, how many instances it has, and who sent it."""

    uid: str
    first_path: str
    instances: int
    calling_ae: str
    called_ae: str


def stored_series(study: Study, default_called_ae: str) -> list[StoredSeries]:
    """The series of a study as the index knows them (call inside a short transaction)."""
    return [
        StoredSeries(
            series.uid,
            series.instances[0].path,
            len(series.instances),
            series.calling_ae or study.calling_ae or "",
            series.called_ae or default_called_ae,
        )
        for series in study.series
        if series.instances
    ]


def read_stored_headers(series: list[StoredSeries]) -> list[SeriesHeader]:
    """Read one header per series from disk (outside any transaction: the SCP keeps indexing)."""
    return [
        SeriesHeader(s.uid, read_header(s.first_path), s.calling_ae, s.called_ae, s.instances) for s in series
    ]


def stored_study_headers(index: Index, study_uid: str, default_called_ae: str) -> list[SeriesHeader] | None:
    """The series headers of a stored study (for the rule tester and the API); None if unknown."""
    with index.session() as session:
        study = session.get(Study, study_uid)
        if study is None:
            return None
        sources = stored_series(study, default_called_ae)
    return read_stored_headers(sources)
