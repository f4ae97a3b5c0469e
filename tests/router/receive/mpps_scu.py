"""A modality's MPPS SCU (pynetdicom, a real association each time) and a study in two series."""

from __future__ import annotations

from pathlib import Path

import pydicom
from pydicom import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import generate_uid
from pynetdicom import AE
from pynetdicom.sop_class import ModalityPerformedProcedureStep  # type: ignore[attr-defined]

from tests.services import CT_HEAD


def two_series(folder: Path, first: int = 4) -> tuple[str, list[Path], list[Path]]:
    """The head CT as a new study: its first ``first`` slices series A, the rest series B."""
    study_uid, series_a, series_b = generate_uid(), generate_uid(), generate_uid()
    files: tuple[list[Path], list[Path]] = ([], [])
    for number, source in enumerate(sorted(CT_HEAD.glob("I*"))):
        dataset = pydicom.dcmread(source)
        dataset.StudyInstanceUID = study_uid
        dataset.SeriesInstanceUID = series_a if number < first else series_b
        dataset.SOPInstanceUID = dataset.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        path = folder / f"{number:03}.dcm"
        dataset.save_as(path)
        files[number >= first].append(path)
    return study_uid, *files


def _n_request(port: int, send: str, *args: object) -> int:
    ae = AE(ae_title="MODALITY")
    ae.add_requested_context(ModalityPerformedProcedureStep)
    assoc = ae.associate("127.0.0.1", port, ae_title="RADROUTER")
    assert assoc.is_established
    try:
        status, _attributes = getattr(assoc, send)(*args)
        return int(status.Status)
    finally:
        assoc.release()


def start_step(port: int, step_uid: str, study_uid: str) -> int:
    """N-CREATE: the step starts IN PROGRESS for ``study_uid``; returns the status."""
    step = Dataset()
    scheduled = Dataset()
    scheduled.StudyInstanceUID = study_uid
    scheduled.AccessionNumber = "MPPS1"
    step.ScheduledStepAttributesSequence = Sequence([scheduled])
    step.PatientName, step.PatientID = "MPPS^TEST", "MPPS1"
    step.PerformedProcedureStepID = "1"
    step.PerformedProcedureStepStatus = "IN PROGRESS"
    step.Modality = "CT"
    step.PerformedSeriesSequence = Sequence()
    return _n_request(port, "send_n_create", step, ModalityPerformedProcedureStep, step_uid)


def completed_step(files: list[Path], status: str = "COMPLETED") -> Dataset:
    """The N-SET that ends a step, listing the series and instances of ``files``."""
    series: dict[str, Dataset] = {}
    for path in files:
        header = pydicom.dcmread(path, stop_before_pixels=True)
        item = series.get(str(header.SeriesInstanceUID))
        if item is None:
            item = series[str(header.SeriesInstanceUID)] = Dataset()
            item.SeriesInstanceUID = header.SeriesInstanceUID
            item.ReferencedImageSequence = Sequence()
        image = Dataset()
        image.ReferencedSOPClassUID, image.ReferencedSOPInstanceUID = (
            header.SOPClassUID,
            header.SOPInstanceUID,
        )
        item.ReferencedImageSequence.append(image)
    changes = Dataset()
    changes.PerformedProcedureStepStatus = status
    changes.PerformedSeriesSequence = Sequence(list(series.values()))
    return changes


def send_step(port: int, step_uid: str, changes: Dataset) -> int:
    """N-SET ``changes`` on the step; returns the status."""
    return _n_request(port, "send_n_set", changes, ModalityPerformedProcedureStep, step_uid)


def end_step(port: int, step_uid: str, files: list[Path], status: str = "COMPLETED") -> int:
    """N-SET: the step ends, listing the series and instances of ``files``; returns the status."""
    return send_step(port, step_uid, completed_step(files, status))
