"""The one gate between a source's headers and highdicom: values repaired per VR (PS3.5 6.2).

Scanners write values that do not conform to their VR (``***`` in a date, ``unknown`` in an age, a
DS with a comma, a PN with six components); highdicom copies them into the SEG and SR and refuses to
build, or pydicom cannot even read them. Every public attribute of every source instance passes here
first. A value is repaired where a lossless repair exists (a DS longer than 16 characters
re-formatted, ``2021.09.02`` as ``20210902``, lower case CS in upper case), else emptied where the
attribute is type 2 in the modules the results copy, else dropped. UIDs that identify or reference
the source are kept as sent: the results must point at what PACS holds. Each change is a
:class:`Repair` (attribute and rule, never the value), which the job records.
"""

from __future__ import annotations

import datetime
import enum
import logging
import math
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from pydicom.charset import convert_encodings
from pydicom.datadict import dictionary_VR, keyword_for_tag
from pydicom.dataelem import DataElement, RawDataElement, convert_raw_data_element
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.tag import BaseTag
from pydicom.valuerep import format_number_as_ds

log = logging.getLogger(__name__)


class RepairRule(enum.StrEnum):
    """What the sanitiser did to one attribute."""

    REFORMATTED = "reformatted"
    UPPERCASED = "uppercased"
    EMPTIED = "emptied"
    DROPPED = "dropped"
    KEPT = "kept as sent (identifies the source)"
    UNDECODABLE = "undecodable characters replaced"
    REENCODED = "written as UTF-8"


@dataclass(frozen=True)
class Repair:
    """One attribute the results do not carry as the source had it, and why (no value: PHI)."""

    attribute: str
    rule: RepairRule
    reason: str

    def as_row(self) -> dict[str, str]:
        return {"attribute": self.attribute, "rule": self.rule.value, "reason": self.reason}


#: Type 2 attributes of the Patient and General Study modules (C.7.1.1, C.7.2.1), which highdicom
#: reads from the source and every result carries: a source without one gets it empty.
STUDY_TYPE_2 = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "StudyDate",
    "StudyTime",
    "ReferringPhysicianName",
    "StudyID",
    "AccessionNumber",
)

#: Every type 2 attribute of the modules a SEG and an SR copy (those two, plus Clinical Trial
#: Subject/Study C.7.1.3/C.7.2.3, General Series C.7.3.1, Frame of Reference C.7.4.1, General
#: Equipment C.7.5.1, General Image C.7.6.1): emptied, never dropped.
TYPE_2 = frozenset(
    {
        *STUDY_TYPE_2,
        "ClinicalTrialProtocolName",
        "ClinicalTrialSiteID",
        "ClinicalTrialSiteName",
        "SeriesNumber",
        "PositionReferenceIndicator",
        "Manufacturer",
        "InstanceNumber",
        "PatientOrientation",
        "ContentDate",
        "ContentTime",
    }
)

#: Attributes with enumerated values that highdicom checks (PS3.3 C.7.1.1 Patient's Sex).
ENUMERATED = {"PatientSex": frozenset({"M", "F", "O"})}

#: VRs whose bytes decode with the Specific Character Set; the others are ASCII by definition.
TEXT_VRS = frozenset({"SH", "LO", "ST", "LT", "UC", "UT", "PN"})
#: Single-valued VRs: a backslash is text, not a value delimiter.
SINGLE_VALUED = frozenset({"ST", "LT", "UT", "UR"})
MAX_LENGTH = {"AE": 16, "CS": 16, "SH": 16, "LO": 64, "ST": 1024, "LT": 10240, "UI": 64, "AS": 4}

_UID = re.compile(r"(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*")
_DS = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?")
_IS = re.compile(r"[+-]?[0-9]+")
_AS = re.compile(r"([0-9]{1,3})([DWMY])")
_TM = re.compile(r"([0-9]{2})(?::?([0-9]{2})(?::?([0-9]{2})(\.[0-9]{1,6})?)?)?")
_DT = re.compile(
    r"([0-9]{4})([0-9]{2})?([0-9]{2})?([0-9]{2})?([0-9]{2})?([0-9]{2})?(\.[0-9]{1,6})?([+-][0-9]{4})?"
)
_DA_SEPARATED = re.compile(r"([0-9]{4})[.\-/]([0-9]{2})[.\-/]([0-9]{2})")
_CS = re.compile(r"[A-Z0-9 _]*")
#: Control characters: ESC (ISO 2022 escapes) is allowed everywhere; LF, FF, CR and TAB in long text.
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1a\x1c-\x1f\x7f]")
_CONTROL_IN_TEXT = re.compile(r"[\x00-\x08\x0b\x0e-\x1a\x1c-\x1f\x7f]")

_INT_RANGE = (-(2**31), 2**31 - 1)


class _Invalid(Exception):
    """A value that cannot be repaired without changing its meaning; the message is the reason."""


def _valid_date(year: int, month: int, day: int) -> bool:
    try:
        datetime.date(year, month, day)
    except ValueError:
        return False
    return True


def _repair_da(value: str) -> str:
    if re.fullmatch(r"[0-9]{8}", value) and _valid_date(int(value[:4]), int(value[4:6]), int(value[6:])):
        return value
    if (match := _DA_SEPARATED.fullmatch(value)) and _valid_date(*(int(g) for g in match.groups())):
        return "".join(match.groups())
    raise _Invalid("DA: not a calendar date YYYYMMDD")


def _repair_tm(value: str) -> str:
    match = _TM.fullmatch(value)
    if not match:
        raise _Invalid("TM: not a time HHMMSS.FFFFFF")
    hours, minutes, seconds, fraction = match.groups()
    if int(hours) > 23 or int(minutes or 0) > 59 or int(seconds or 0) > 60:
        raise _Invalid("TM: hours, minutes or seconds out of range")
    return "".join(part for part in (hours, minutes, seconds, fraction) if part)


def _repair_dt(value: str) -> str:
    match = _DT.fullmatch(value)
    if not match:
        raise _Invalid("DT: not a date-time YYYYMMDDHHMMSS.FFFFFF&ZZXX")
    year, month, day, hours, minutes, seconds = (int(g) if g else None for g in match.groups()[:6])
    if not _valid_date(year or 1, month or 1, day or 1) or (year or 0) < 1:
        raise _Invalid("DT: not a calendar date")
    if (hours or 0) > 23 or (minutes or 0) > 59 or (seconds or 0) > 60:
        raise _Invalid("DT: hours, minutes or seconds out of range")
    return value


def _repair_as(value: str) -> str:
    match = _AS.fullmatch(value)
    if not match:
        raise _Invalid("AS: not an age nnnD/W/M/Y")
    return f"{int(match.group(1)):03d}{match.group(2)}"


def _repair_ds(value: str) -> str:
    if not _DS.fullmatch(value) or not math.isfinite(float(value)):
        raise _Invalid("DS: not a decimal number")
    return value if len(value) <= 16 else format_number_as_ds(float(value))


def _repair_is(value: str) -> str:
    if _IS.fullmatch(value):
        number = int(value)
    elif _DS.fullmatch(value) and float(value).is_integer():
        number = int(float(value))
    else:
        raise _Invalid("IS: not an integer")
    if not _INT_RANGE[0] <= number <= _INT_RANGE[1]:
        raise _Invalid("IS: out of the 32-bit range")
    return value if _IS.fullmatch(value) and len(value) <= 12 else str(number)


def _repair_ui(value: str) -> str:
    if len(value) > 64 or not _UID.fullmatch(value):
        raise _Invalid("UI: not a UID (digits and dots, no leading zeros, at most 64 characters)")
    return value


def _repair_cs(value: str) -> str:
    if len(value) > 16:
        raise _Invalid("CS: longer than 16 characters")
    if _CS.fullmatch(value):
        return value
    if _CS.fullmatch(value.upper()):
        return value.upper()
    raise _Invalid("CS: characters other than A-Z, 0-9, space and underscore")


def _repair_pn(value: str) -> str:
    groups = value.split("=")
    if len(groups) > 3:
        raise _Invalid("PN: more than three component groups")
    for group in groups:
        if len(group.split("^")) > 5:
            raise _Invalid("PN: more than five components")
        if len(group) > 64:
            raise _Invalid("PN: a component group longer than 64 characters")
    if _CONTROL.search(value):
        raise _Invalid("PN: control characters")
    return value


def _repair_text(vr: str, value: str) -> str:
    limit = MAX_LENGTH.get(vr)
    if limit is not None and len(value) > limit:
        raise _Invalid(f"{vr}: longer than {limit} characters")
    if (_CONTROL_IN_TEXT if vr in {"ST", "LT", "UT"} else _CONTROL).search(value):
        raise _Invalid(f"{vr}: control characters")
    return value


_REPAIRS = {
    "DA": _repair_da,
    "TM": _repair_tm,
    "DT": _repair_dt,
    "AS": _repair_as,
    "DS": _repair_ds,
    "IS": _repair_is,
    "UI": _repair_ui,
    "CS": _repair_cs,
    "PN": _repair_pn,
}


def _strip(vr: str, value: str) -> str:
    """Remove padding (trailing NUL or spaces; leading spaces where the VR says they are padding)."""
    value = value.rstrip("\x00 ")
    return value.lstrip(" ") if vr in {"AE", "CS", "DS", "IS", "SH", "LO", "AS", "DA", "TM", "DT"} else value


def _as_text(element: DataElement) -> list[str]:
    """The element's values as strings, as they were sent (pydicom's string forms keep the original)."""
    value = element.value
    if value is None or value == "":
        return []
    if isinstance(value, MultiValue | list | tuple):
        return [str(v) for v in value]
    return [str(value)]


def _vr(item: DataElement | RawDataElement | None, tag: BaseTag) -> str | None:
    if item is None or isinstance(item, Dataset):
        return None
    try:
        return str(item.VR or dictionary_VR(tag))
    except KeyError:
        return None


def _element(dataset: Dataset, tag: BaseTag, vr: str, encodings: list[str]) -> tuple[str, list[str]] | None:
    """(VR, values as text) without the conversion that fails on a non-conforming DS, IS or date."""
    item = dataset.get_item(tag)
    if item is None or isinstance(item, Dataset):
        return None
    if vr not in _REPAIRS and vr not in TEXT_VRS and vr not in MAX_LENGTH:
        return None
    if isinstance(item, RawDataElement):
        raw = item.value or b""
        if vr in TEXT_VRS:
            converted = convert_raw_data_element(item._replace(VR=vr), encoding=encodings, ds=dataset)
            return vr, _as_text(converted)
        text = raw.decode("latin-1") if isinstance(raw, bytes) else str(raw)
        values = [text] if vr in SINGLE_VALUED else text.split("\\")
        return vr, [] if text.strip("\x00 ") == "" else values
    return vr, _as_text(item)


def _sanitise_element(
    dataset: Dataset, tag: BaseTag, vr: str, encodings: list[str], keep: frozenset[str]
) -> Repair | None:
    found = _element(dataset, tag, vr, encodings)
    if found is None:
        return None
    vr, values = found
    keyword = keyword_for_tag(tag) or str(tag)
    repaired: list[str] = []
    rule: RepairRule | None = None
    try:
        for value in values:
            stripped = _strip(vr, value)
            if "\ufffd" in stripped:
                rule = RepairRule.UNDECODABLE
            fixed = _REPAIRS[vr](stripped) if vr in _REPAIRS else _repair_text(vr, stripped)
            if keyword in ENUMERATED and fixed not in ENUMERATED[keyword]:
                raise _Invalid(f"{vr}: not one of {'/'.join(sorted(ENUMERATED[keyword]))}")
            if fixed != stripped and rule is None:
                uppercased = fixed == stripped.upper()
                rule = RepairRule.UPPERCASED if uppercased else RepairRule.REFORMATTED
            repaired.append(fixed)
    except _Invalid as invalid:
        if vr == "UI" and keyword in keep:
            return Repair(keyword, RepairRule.KEPT, str(invalid))
        if keyword in TYPE_2:
            dataset[tag] = DataElement(tag, vr, "")
            return Repair(keyword, RepairRule.EMPTIED, str(invalid))
        del dataset[tag]
        return Repair(keyword, RepairRule.DROPPED, str(invalid))
    if rule is not None:
        new: str | list[str] = repaired[0] if len(repaired) == 1 else repaired if repaired else ""
        dataset[tag] = DataElement(tag, vr, new)
        return Repair(keyword, rule, f"{vr}: {rule.value}")
    return None


#: UIDs that name the source or what it references: the results' references must match them.
IDENTIFYING_UIDS = frozenset(
    {
        "StudyInstanceUID",
        "SeriesInstanceUID",
        "SOPInstanceUID",
        "SOPClassUID",
        "FrameOfReferenceUID",
        "ReferencedSOPInstanceUID",
        "ReferencedSOPClassUID",
        "ReferencedFrameOfReferenceUID",
        "MediaStorageSOPInstanceUID",
        "DimensionOrganizationUID",
    }
)


#: A value already found conforming: (tag, VR, its raw bytes or, once pydicom has converted it, its
#: values as text, the source's encodings and, with raw bytes, the data set's transfer encoding).
_Conforming = set[tuple[BaseTag, str, bytes | tuple[str, ...], tuple[str, ...]]]


def _conforming_key(
    item: DataElement | RawDataElement, tag: BaseTag, vr: str, context: tuple[str, ...]
) -> tuple[BaseTag, str, bytes | tuple[str, ...], tuple[str, ...]] | None:
    """What the check of this element depends on: its bytes as read, or its values as text where
    pydicom has converted it (a slice's rescale, read for the volume, is checked once for the series);
    ``context``: the source's encodings, then the data set's transfer encoding (which a sequence's
    bytes are read in)."""
    if isinstance(item, RawDataElement):
        return (tag, vr, item.value, context) if isinstance(item.value, bytes) else None
    if vr in TEXT_VRS or vr == "SQ":
        return None  # decoded text or a parsed sequence: checked each time
    return tag, vr, tuple(_as_text(item)), context[:-1]


def _walk(dataset: Dataset, encodings: list[str], conforming: _Conforming) -> Iterator[Repair]:
    """Each public element through its VR's rules; a value already seen conforming on an earlier
    slice (most of a series' header repeats slice after slice) is not checked again."""
    context = (*encodings, str(dataset.original_encoding))
    for tag in list(dataset.keys()):
        if tag.is_private or tag.group in (0x0002, 0x7FE0) or tag.element == 0:
            continue
        item = dataset.get_item(tag)  # once per element: this runs on every attribute of every slice
        vr = _vr(item, tag)
        if item is None or vr is None:
            continue
        if vr == "SQ":
            key = _conforming_key(item, tag, vr, context)  # a sequence still as read: its bytes
            if key is not None and key in conforming:
                continue
            repaired = False
            for nested in dataset[tag].value:
                for inner in _walk(nested, encodings, conforming):
                    repaired = True
                    yield inner
            if key is not None and not repaired:
                conforming.add(key)
            continue
        key = _conforming_key(item, tag, vr, context)
        if key is not None and key in conforming:
            continue
        try:
            repair = _sanitise_element(dataset, tag, vr, encodings, IDENTIFYING_UIDS)
        except Exception:  # a value this gate has no rule for: leave it to highdicom, whose failure
            log.debug("sanitiser: %s left as sent", tag, exc_info=True)  # is then the job's reason
            continue
        if repair is not None:
            yield repair
        elif key is not None:
            conforming.add(key)


def source_encodings(dataset: Dataset) -> list[str]:
    """Python codecs of the instance's Specific Character Set; an unknown one reads as Latin-1 (the
    commonest declared-wrong case), so no text is lost to a decoding error."""
    try:
        return list(convert_encodings(dataset.get("SpecificCharacterSet") or "ISO_IR 6"))
    except (LookupError, ValueError, TypeError):
        return ["latin_1"]


def sanitise_sources(datasets: Iterable[Dataset]) -> list[Repair]:
    """Repair the source instances in place, before highdicom copies from them; one repair per
    attribute and rule, however many instances had it."""
    repairs: dict[tuple[str, RepairRule], Repair] = {}
    conforming: _Conforming = set()
    for number, dataset in enumerate(datasets):
        encodings = source_encodings(dataset)
        for repair in _walk(dataset, encodings, conforming):
            repairs.setdefault((repair.attribute, repair.rule), repair)
        if number > 0:
            continue  # the results copy patient and study from the first instance (storage.slices)
        for keyword in STUDY_TYPE_2:
            if keyword not in dataset:
                setattr(dataset, keyword, "")
                repair = Repair(keyword, RepairRule.EMPTIED, "type 2: missing in the source")
                repairs.setdefault((keyword, RepairRule.EMPTIED), repair)
    return list(repairs.values())
