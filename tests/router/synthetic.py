"""Series the shared data lacks, made from its real files: a localizer, a dose report, a copied study.

The data holds no localizer and no radiation dose SR, so they are derived from real instances: the
pixel data and the patient, study and equipment attributes stay real; only what makes them a
localizer or a dose report, and new UIDs, are set here.
"""

from __future__ import annotations

import copy
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

XRAY_DOSE_SR = "1.2.840.10008.5.1.4.1.1.88.67"
SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"


def with_new_uids(dataset: Dataset, study_uid: str, series_uid: str) -> Dataset:
    """A copy of ``dataset`` in another study and series, with its own SOP Instance UID."""
    moved = copy.deepcopy(dataset)
    moved.StudyInstanceUID, moved.SeriesInstanceUID = study_uid, series_uid
    moved.SOPInstanceUID = generate_uid()
    moved.file_meta.MediaStorageSOPInstanceUID = moved.SOPInstanceUID
    return moved


def copied_series(files: list[Path], study_uid: str) -> list[Dataset]:
    """The instances of a real series, moved into ``study_uid`` (pixel data and headers unchanged)."""
    series_uid = generate_uid()
    return [with_new_uids(pydicom.dcmread(path), study_uid, series_uid) for path in files]


def localizer(source: Path, study_uid: str, count: int = 1) -> list[Dataset]:
    """A localizer series made from a real image: ImageType LOCALIZER, coronal, series number 1."""
    series_uid = generate_uid()
    images = []
    for number in range(1, count + 1):
        image = with_new_uids(pydicom.dcmread(source), study_uid, series_uid)
        image.ImageType = ["ORIGINAL", "PRIMARY", "LOCALIZER"]
        image.SeriesNumber, image.InstanceNumber = 1, number
        image.ImageOrientationPatient = [1, 0, 0, 0, 0, -1]
        images.append(image)
    return images


def dose_report(like: Dataset, study_uid: str) -> Dataset:
    """An X-Ray Radiation Dose SR (TID 10001 title only) in the study, for the patient of ``like``."""
    report = Dataset()
    for keyword in ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime"):
        if keyword in like:
            report.add(copy.deepcopy(like[keyword]))
    report.SOPClassUID, report.SOPInstanceUID = XRAY_DOSE_SR, generate_uid()
    report.StudyInstanceUID, report.SeriesInstanceUID = study_uid, generate_uid()
    report.Modality, report.SeriesNumber, report.InstanceNumber = "SR", 997, 1
    report.SeriesDescription = "Dose Report"
    title = Dataset()
    title.CodeValue, title.CodingSchemeDesignator = "113701", "DCM"
    title.CodeMeaning = "X-Ray Radiation Dose Report"
    report.ValueType, report.ConceptNameCodeSequence = "CONTAINER", Sequence([title])
    report.ContinuityOfContent, report.CompletionFlag, report.VerificationFlag = (
        "SEPARATE",
        "COMPLETE",
        "UNVERIFIED",
    )
    report.file_meta = FileMetaDataset()
    report.file_meta.MediaStorageSOPClassUID = XRAY_DOSE_SR
    report.file_meta.MediaStorageSOPInstanceUID = report.SOPInstanceUID
    report.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    return report


def write(datasets: list[Dataset], folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for dataset in datasets:
        path = folder / f"{dataset.SOPInstanceUID}.dcm"
        dataset.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths
