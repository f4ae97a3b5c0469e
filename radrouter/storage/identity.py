"""Who a study is about, read from one stored instance's header when a page asks.

The index keeps no patient data (only UIDs, states and times), so the reading list reads identity
from a file on disk at the moment it is shown. Reads are cached per file version (path, size and
modification time), so a page that refreshes reads each header once; nothing here is logged.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from datetime import date, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

import pydicom
from pydicom.errors import InvalidDicomError
from pydicom.valuerep import PersonName

#: The header attributes a reading list shows: read with ``specific_tags``, so pixels are never read.
IDENTITY_TAGS = [
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientAge",
    "PatientSex",
    "AccessionNumber",
    "StudyDescription",
    "StudyDate",
    "StudyTime",
    "BodyPartExamined",
]


@dataclass(frozen=True)
class StudyIdentity:
    """The patient and the study as the modality described them (empty strings where absent)."""

    patient_name: str
    patient_id: str
    accession_number: str
    study_description: str
    age: str
    sex: str
    body_part: str
    study_time: str | None  # ISO 8601, local time of the modality

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def formatted_name(value: object) -> str:
    """``FAMILY, Given Middle`` from a DICOM Person Name (its alphabetic group), as a list shows names."""
    name = value if isinstance(value, PersonName) else PersonName(str(value or ""))
    family, given = name.family_name.strip(), " ".join(p for p in (name.given_name, name.middle_name) if p)
    if family and given:
        return f"{family.upper()}, {given}"
    return family.upper() or given or str(name).replace("^", " ").strip()


def _dicom_date(value: str) -> date | None:
    try:
        return datetime.strptime(value[:8], "%Y%m%d").date() if len(value) >= 8 else None
    except ValueError:
        return None


def _age(header: pydicom.Dataset) -> str:
    """Patient's Age as written (``041Y`` -> ``41 y``), else computed from birth and study dates."""
    written = str(header.get("PatientAge", "") or "").strip()
    if len(written) == 4 and written[:3].isdigit() and written[3] in "DWMY":
        return f"{int(written[:3])} {written[3].lower()}"
    born, studied = (_dicom_date(str(header.get(k, "") or "")) for k in ("PatientBirthDate", "StudyDate"))
    if born is None or studied is None or studied < born:
        return ""
    years = studied.year - born.year - ((studied.month, studied.day) < (born.month, born.day))
    return f"{years} y"


def _study_time(header: pydicom.Dataset) -> str | None:
    day = _dicom_date(str(header.get("StudyDate", "") or ""))
    if day is None:
        return None
    clock = str(header.get("StudyTime", "") or "").split(".")[0].ljust(6, "0")[:6]
    try:
        return datetime.combine(day, datetime.strptime(clock, "%H%M%S").time()).isoformat()
    except ValueError:
        return day.isoformat()


def identity_of(header: pydicom.Dataset) -> StudyIdentity:
    def text(keyword: str) -> str:
        return str(header.get(keyword, "") or "").strip()

    return StudyIdentity(
        patient_name=formatted_name(header.get("PatientName", "")),
        patient_id=text("PatientID"),
        accession_number=text("AccessionNumber"),
        study_description=text("StudyDescription"),
        age=_age(header),
        sex=text("PatientSex"),
        body_part=text("BodyPartExamined"),
        study_time=_study_time(header),
    )


@lru_cache(maxsize=8192)
def _read(path: str, size: int, mtime_ns: int) -> StudyIdentity | None:
    """One header read per file version: size and mtime are in the key, so a replaced file is read again."""
    try:
        header = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=IDENTITY_TAGS)
    except (OSError, InvalidDicomError, ValueError):
        return None
    return identity_of(header)


def read_identity(path: Path) -> StudyIdentity | None:
    """The identity in the header of the instance at ``path``; None if it is gone (purged) or unreadable."""
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return _read(str(path), stat.st_size, stat.st_mtime_ns)
