"""De-identification on the way to an external destination: DICOM PS3.15 Annex E.

The Basic Application Level Confidentiality Profile (Table E.1-1, 2026c, as data from
``dicom-anonymizer``) is applied to the top level and to every sequence item, with these choices:

- Patient ID and Patient's Name become a keyed pseudonym (HMAC-SHA256 of the Patient ID), so one
  patient keeps one pseudonym across studies and sends;
- instance UIDs (every UI value that is not a well-known UID of the standard, nested references
  included) are remapped to ``2.25.<keyed hash>``, the same for the same UID every time, unless the
  Retain UIDs Option is chosen;
- dates are removed (the Basic Profile), shifted back by a per-patient keyed offset (Retain
  Longitudinal Temporal Information with Modified Dates Option) or kept (Full Dates Option);
- private elements are removed; Content Sequence items are cleaned rather than replaced, so an SR's
  measurements survive.

Every pseudonym issued is returned with what it stands for, to be recorded for re-identification.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

from dicomanonymizer.simpledicomanonymizer import (
    anonymize_dataset,
    initialize_actions,
    keep,
)
from pydicom import Dataset
from pydicom._uid_dict import UID_dictionary
from pydicom.datadict import dictionary_VR
from pydicom.dataelem import DataElement
from pydicom.sequence import Sequence
from pydicom.tag import Tag

from radrouter.config.deidentification import DateHandling, Deidentification
from radrouter.storage.index import PseudonymKind

#: The edition of PS3.15 Table E.1-1 applied.
PROFILE_EDITION = "dicomfields_2026c"
#: Pseudonymous Patient IDs look like this: "RR" and 20 hexadecimal digits.
PSEUDONYM = re.compile(r"RR[0-9A-F]{20}")
#: Patient attributes recorded before they are removed, and put back by re-identification.
PATIENT_KEYWORDS = (
    "PatientName",
    "PatientID",
    "IssuerOfPatientID",
    "PatientBirthDate",
    "PatientSex",
    "PatientAge",
    "OtherPatientIDs",
)
#: Study attributes recorded and put back in the same way.
STUDY_KEYWORDS = (
    "StudyDate",
    "StudyTime",
    "AccessionNumber",
    "StudyID",
    "StudyDescription",
    "ReferringPhysicianName",
)
CONTENT_SEQUENCE = (0x0040, 0xA730)
#: Not retained by the temporal options (PS3.15 E.3.6): the profile always removes it.
PATIENT_BIRTH_DATE = (0x0010, 0x0030)
#: PS3.16 CID 7050 De-identification Method codes.
BASIC_PROFILE, RETAIN_UIDS, RETAIN_FULL_DATES, RETAIN_MODIFIED_DATES = (
    ("113100", "Basic Application Confidentiality Profile"),
    ("113110", "Retain UIDs Option"),
    ("113106", "Retain Longitudinal Temporal Information Full Dates Option"),
    ("113107", "Retain Longitudinal Temporal Information Modified Dates Option"),
)

Action = Callable[[Dataset, tuple[int, ...]], None]
_PROFILE: dict[tuple[int, ...], Action] = initialize_actions(PROFILE_EDITION)


def _vr(tag: tuple[int, ...]) -> str:
    """The VR of a tag of the table; "" for a range of tags or one newer than pydicom's dictionary."""
    try:
        return dictionary_VR(tag) if len(tag) == 2 else ""
    except KeyError:
        return ""


_VRS = {tag: _vr(tag) for tag in _PROFILE}


@dataclass(frozen=True)
class IssuedPseudonym:
    """A value radrouter put in place of an original one, and the attributes it hides."""

    pseudonym: str
    kind: PseudonymKind
    original: str
    identity: dict[str, Any] = field(default_factory=dict)


class Keys:
    """The keyed functions of one secret: pseudonyms, UIDs and date offsets."""

    def __init__(self, options: Deidentification) -> None:
        self._key = options.key.get_secret_value().encode()
        self.max_shift_days = options.max_date_shift_days

    def _digest(self, purpose: str, value: str) -> bytes:
        return hmac.new(self._key, f"{purpose}:{value}".encode(), hashlib.sha256).digest()

    def patient(self, patient_id: str) -> str:
        return "RR" + self._digest("patient", patient_id).hex()[:20].upper()

    def uid(self, uid: str) -> str:
        return "2.25." + str(int.from_bytes(self._digest("uid", uid)[:16], "big"))

    def date_shift_days(self, patient_id: str) -> int:
        return 1 + int.from_bytes(self._digest("dates", patient_id)[:4], "big") % self.max_shift_days


def _shift(value: str, days: int) -> str:
    """A DA (or the date of a DT) moved back ``days``; a value that is not a date is emptied."""
    try:
        moved = date(int(value[:4]), int(value[4:6]), int(value[6:8])) - timedelta(days=days)
    except ValueError:
        return ""
    return moved.strftime("%Y%m%d") + value[8:]


def _date_rule(handling: DateHandling, days: int) -> Action | None:
    if handling == DateHandling.KEEP:
        return keep  # type: ignore[no-any-return]
    if handling == DateHandling.REMOVE:
        return None

    def shift(dataset: Dataset, tag: tuple[int, ...]) -> None:
        element = dataset.get(Tag(tag[0], tag[1]))
        if element is None or element.VR not in ("DA", "DT") or not element.value:
            return  # times are kept by the Modified Dates Option
        values = element.value if element.VM > 1 else [element.value]
        shifted = [_shift(str(v), days) for v in values]
        element.value = shifted if element.VM > 1 else shifted[0]

    return shift


def _rules(options: Deidentification, days: int) -> dict[tuple[int, ...], Action]:
    """The profile's actions, with UIDs left to the remapping walk and dates as the options say."""
    rules: dict[tuple[int, ...], Action] = {CONTENT_SEQUENCE: keep}
    date_rule = _date_rule(options.dates, days)
    for tag, vr in _VRS.items():
        if vr == "UI":
            rules[tag] = keep
        elif vr in ("DA", "DT", "TM") and date_rule is not None and tag != PATIENT_BIRTH_DATE:
            rules[tag] = keep if vr == "TM" else date_rule
    return rules


def _apply_profile(dataset: Dataset, rules: dict[tuple[int, ...], Action]) -> None:
    """The profile on ``dataset`` and, depth first, on every item of the sequences it keeps."""
    anonymize_dataset(
        dataset,
        extra_anonymization_rules=rules,
        base_rules_gen=lambda: dict(_PROFILE),
        delete_private_tags=True,
    )
    for element in list(dataset):
        if element.VR == "SQ":
            for item in element.value:
                _apply_profile(item, rules)


def instance_uids(dataset: Dataset) -> list[DataElement]:
    """Every UI element of ``dataset`` (nested too) that holds instance UIDs, not well-known ones."""
    found: list[DataElement] = []

    def visit(_dataset: Dataset, element: DataElement) -> None:
        if element.VR == "UI" and element.value:
            values = element.value if element.VM > 1 else [element.value]
            if any(str(v) not in UID_dictionary for v in values):
                found.append(element)

    dataset.walk(visit)
    return found


def remap_uids(dataset: Dataset, mapping: Callable[[str], str]) -> None:
    """Replace each instance UID of ``dataset`` by ``mapping(uid)``; the file meta follows."""
    for element in instance_uids(dataset):
        if element.VM > 1:
            element.value = [v if str(v) in UID_dictionary else mapping(str(v)) for v in element.value]
        else:
            element.value = mapping(str(element.value))
    if "SOPInstanceUID" in dataset and hasattr(dataset, "file_meta"):
        dataset.file_meta.MediaStorageSOPInstanceUID = dataset.SOPInstanceUID


def _kept(dataset: Dataset, keywords: tuple[str, ...]) -> dict[str, Any]:
    return {k: str(dataset[k].value) for k in keywords if k in dataset and dataset[k].value not in (None, "")}


def _method_codes(options: Deidentification) -> Sequence:
    codes = [BASIC_PROFILE]
    if options.retain_uids:
        codes.append(RETAIN_UIDS)
    if options.dates == DateHandling.KEEP:
        codes.append(RETAIN_FULL_DATES)
    elif options.dates == DateHandling.SHIFT:
        codes.append(RETAIN_MODIFIED_DATES)
    items = []
    for value, meaning in codes:
        item = Dataset()
        item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, "DCM", meaning
        items.append(item)
    return Sequence(items)


def deidentify(dataset: Dataset, options: Deidentification) -> list[IssuedPseudonym]:
    """De-identify ``dataset`` in place (pixel data untouched); return the pseudonyms issued."""
    keys = Keys(options)
    patient_id = str(dataset.get("PatientID", "") or "")
    pseudonym = keys.patient(patient_id)
    study_uid = str(dataset.get("StudyInstanceUID", ""))
    new_study_uid = study_uid if options.retain_uids else keys.uid(study_uid)
    issued = [
        IssuedPseudonym(pseudonym, PseudonymKind.PATIENT, patient_id, _kept(dataset, PATIENT_KEYWORDS)),
        IssuedPseudonym(new_study_uid, PseudonymKind.STUDY, study_uid, _kept(dataset, STUDY_KEYWORDS)),
    ]
    _apply_profile(dataset, _rules(options, keys.date_shift_days(patient_id)))
    if not options.retain_uids:
        remapped: dict[str, str] = {}

        def mapping(uid: str) -> str:
            remapped[uid] = keys.uid(uid)
            return remapped[uid]

        remap_uids(dataset, mapping)
        issued += [
            IssuedPseudonym(new, PseudonymKind.UID, old) for old, new in remapped.items() if old != study_uid
        ]
    dataset.PatientID = dataset.PatientName = pseudonym
    dataset.PatientIdentityRemoved = "YES"
    dataset.DeidentificationMethod = f"PS3.15 E.1-1 ({PROFILE_EDITION[-5:]}) by radrouter"
    dataset.DeidentificationMethodCodeSequence = _method_codes(options)
    return issued
