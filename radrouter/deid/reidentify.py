"""Re-identification of what comes back from an external destination.

An instance whose Patient ID is a pseudonym radrouter issued gets its original patient attributes,
its original UIDs (wherever a remapped UID appears, references included) and its original study
attributes back, so a result computed outside lands in the patient's real study.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from pydicom import Dataset

from radrouter.deid.profile import (
    PATIENT_KEYWORDS,
    PSEUDONYM,
    STUDY_KEYWORDS,
    IssuedPseudonym,
    instance_uids,
    remap_uids,
)
from radrouter.storage.index import PseudonymKind

#: Looks up the pseudonyms among the given values: {pseudonym: what it stands for}.
Lookup = Callable[[Iterable[str]], dict[str, IssuedPseudonym]]
_DEIDENTIFICATION_MARKS = (
    "PatientIdentityRemoved",
    "DeidentificationMethod",
    "DeidentificationMethodCodeSequence",
)


def is_pseudonymous(patient_id: object) -> bool:
    """Whether a Patient ID has the form of the pseudonyms radrouter issues (no look-up)."""
    return isinstance(patient_id, str) and PSEUDONYM.fullmatch(patient_id) is not None


def _restore(dataset: Dataset, keywords: tuple[str, ...], identity: dict[str, str]) -> None:
    for keyword in keywords:
        if keyword in identity:
            setattr(dataset, keyword, identity[keyword])
        elif keyword in dataset:
            del dataset[keyword]


def reidentify(dataset: Dataset, lookup: Lookup) -> bool:
    """Restore ``dataset`` in place if its Patient ID is a pseudonym we issued; say whether it was."""
    patient_id = str(dataset.get("PatientID", "") or "")
    if not is_pseudonymous(patient_id):
        return False
    uids = {
        str(v)
        for element in instance_uids(dataset)
        for v in (element.value if element.VM > 1 else [element.value])
    }
    found = lookup({patient_id, *uids})
    patient = found.get(patient_id)
    if patient is None or patient.kind != PseudonymKind.PATIENT:
        return False
    _restore(dataset, PATIENT_KEYWORDS, patient.identity)
    remap_uids(dataset, lambda uid: found[uid].original if uid in found else uid)
    study = found.get(str(dataset.get("StudyInstanceUID", ""))) or next(
        (issued for issued in found.values() if issued.kind == PseudonymKind.STUDY), None
    )
    if study is not None:
        dataset.StudyInstanceUID = study.original
        _restore(dataset, STUDY_KEYWORDS, study.identity)
    for keyword in _DEIDENTIFICATION_MARKS:
        if keyword in dataset:
            del dataset[keyword]
    return True
