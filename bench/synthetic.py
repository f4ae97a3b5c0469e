"""A synthetic CT series: the benchmark needs a fixed, large study that real test data cannot give."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid


def write_ct_series(folder: Path, slices: int, rows: int = 512, columns: int = 512) -> str:
    """Write ``slices`` CT slices of ``rows`` x ``columns`` 16-bit pixels (0.5 MB at 512 x 512).

    Returns the Study Instance UID; every call makes a new study, series and SOP Instance UIDs.
    """
    folder.mkdir(parents=True, exist_ok=True)
    study_uid, series_uid, frame_uid = generate_uid(), generate_uid(), generate_uid()
    noise = np.random.default_rng(0).integers(0, 2000, size=(rows, columns), dtype=np.uint16)
    for number in range(1, slices + 1):
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.SOPClassUID = CTImageStorage
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study_uid, series_uid, frame_uid
        ds.PatientName, ds.PatientID, ds.Modality = "BENCH^CT", "BENCH", "CT"
        ds.SeriesNumber, ds.InstanceNumber, ds.SeriesDescription = 1, number, "bench chest"
        ds.ImagePositionPatient = [0.0, 0.0, -float(number)]
        ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
        ds.PixelSpacing, ds.SliceThickness = [0.7, 0.7], 1.0
        ds.Rows, ds.Columns, ds.SamplesPerPixel = rows, columns, 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
        ds.RescaleIntercept, ds.RescaleSlope = -1024, 1
        ds.PixelData = np.roll(noise, number, axis=0).tobytes()
        ds.save_as(folder / f"{number:05d}.dcm", enforce_file_format=True)
    return str(study_uid)
