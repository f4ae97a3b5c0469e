"""Variants of the real series in ../shared/data, as scanners we have not seen would send them.

Pixels stay real: enhanced multi-frame copies come from highdicom's legacy converters, broken headers
are the real headers with raw bytes written into one attribute (as a scanner writes them, past
pydicom's checks), other character sets take their names from pydicom's own character-set files.
"""

from __future__ import annotations

import io
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import highdicom as hd
import numpy as np
import pydicom
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.tag import Tag
from pydicom.uid import generate_uid

from radrouter.inference.pipeline import Prediction

_CONVERTERS = {
    "MR": hd.legacy.LegacyConvertedEnhancedMRImage,
    "CT": hd.legacy.LegacyConvertedEnhancedCTImage,
    "PT": hd.legacy.LegacyConvertedEnhancedPETImage,
}


def enhanced_copy(sources: Sequence[Path], target: Path, study_uid: str | None = None) -> Path:
    """The series as one Legacy Converted Enhanced instance (new study, series and instance UIDs).

    Body Part Examined (General Series) is kept, as enhanced instances from scanners keep it; the
    converter moves it into a coded Frame Anatomy only."""
    datasets = [pydicom.dcmread(path) for path in sources]
    study = study_uid or generate_uid()
    for dataset in datasets:
        dataset.StudyInstanceUID = study
    converter = _CONVERTERS[str(datasets[0].Modality)]
    enhanced = converter(
        datasets,
        series_instance_uid=generate_uid(),
        series_number=int(datasets[0].get("SeriesNumber", 1) or 1),
        sop_instance_uid=generate_uid(),
        instance_number=1,
    )
    if "BodyPartExamined" in datasets[0]:
        enhanced.BodyPartExamined = datasets[0].BodyPartExamined
    enhanced.save_as(target, enforce_file_format=True)
    return target


def with_raw(dataset: Dataset, keyword: str, value: bytes | None) -> Dataset:
    """``dataset`` with ``keyword`` holding exactly these bytes (padded to even length), or removed."""
    tag = Tag(tag_for_keyword(keyword))
    if value is None:
        if tag in dataset:
            del dataset[tag]
        return dataset
    padded = value + (b"\x00" if dictionary_VR(tag) == "UI" else b" ") * (len(value) % 2)
    dataset[tag] = RawDataElement(tag, dictionary_VR(tag), len(padded), padded, 0, False, True)
    return dataset


def reread(dataset: Dataset) -> Dataset:
    """Through bytes and back, as the worker reads a stored file (raw elements, lazy conversion)."""
    buffer = io.BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    return pydicom.dcmread(io.BytesIO(buffer.getvalue()))


def in_character_set(dataset: Dataset, character_set: str | list[str], patient_name: bytes) -> Dataset:
    """The dataset declaring ``character_set`` and holding ``patient_name`` as these raw bytes."""
    dataset.SpecificCharacterSet = character_set
    recoded = reread(dataset)  # the declared set is now the one the bytes are read with
    return reread(with_raw(recoded, "PatientName", patient_name))


def threshold_prediction(volume: hd.Volume) -> Prediction:
    """A label map from the real intensities (above the mean): a stand-in for a model's output."""
    labels = (volume.array > volume.array.mean()).astype(np.uint8)
    return Prediction(labelmap=volume.with_array(labels), model_seconds=0.0)


def dciodvfy_elements(data: bytes) -> set[str]:
    """What dciodvfy calls an error, by the element it names (or the whole line when it names none)."""
    with tempfile.NamedTemporaryFile(suffix=".dcm") as handle:
        handle.write(data)
        handle.flush()
        # dciodvfy echoes values in the source's bytes: read its report leniently
        output = subprocess.run(["dciodvfy", handle.name], capture_output=True).stderr.decode(
            errors="replace"
        )
    found = set()
    for line in output.splitlines():
        if not line.startswith("Error"):
            continue
        if "Element=<" in line:
            found.add(line.split("Element=<", 1)[1].split(">", 1)[0])
        elif " - (0x" in line:
            found.add(line.split(" - (0x", 1)[1].split(")", 1)[0])
        elif "invalid data values for Value Representations" not in line:
            found.add(line)
    return found


def dataset_bytes(dataset: Dataset) -> bytes:
    buffer = io.BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


#: Set anew each time a result is built: Instance Creation, Content and Contribution Date Time, and
#: the Dimension Organization UID highdicom generates for a SEG.
BUILT_ANEW = ("00080012", "00080013", "00080023", "00080033", "0018A002", "00209164")


def comparable(dataset: Dataset, built_anew: Sequence[str] = BUILT_ANEW) -> Any:
    """A result as DICOM JSON without what is set anew at each build (tags as 8 hex digits)."""

    def without(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: without(v) for k, v in value.items() if k not in built_anew}
        if isinstance(value, list):
            return [without(v) for v in value]
        return value

    return without(dataset.to_json_dict())
