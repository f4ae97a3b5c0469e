"""Building blocks shared by the SEG and the SR: identity of the algorithm, UIDs, equipment."""

from __future__ import annotations

from dataclasses import dataclass

import highdicom as hd
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.uid import generate_uid

import radrouter

#: IHE AI Results: the Contributing Equipment item that marks a processing algorithm.
PROCESSING_ALGORITHM = hd.sr.CodedConcept("Newcode1", "99IHE", "Processing Algorithm")
MANUFACTURER = "radrouter"
#: The character set results are built in (UTF-8 holds any text); the one they carry is set after.
UTF8 = "ISO_IR 192"


@dataclass(frozen=True)
class ResultIdentity:
    """What names one job's results; UIDs are derived, so a retried job rewrites the same objects."""

    job_key: str
    pipeline: str
    algorithm_version: str
    series_number: int

    def uid(self, role: str) -> str:
        return str(generate_uid(entropy_srcs=["radrouter", self.job_key, role]))

    @property
    def model_name(self) -> str:
        return f"radrouter {self.pipeline}"[:64]

    def algorithm_sequence(self) -> hd.AlgorithmIdentificationSequence:
        return hd.AlgorithmIdentificationSequence(
            name=self.pipeline, family=codes.DCM.ArtificialIntelligence, version=self.algorithm_version[:64]
        )

    def tid4019(self) -> hd.sr.AlgorithmIdentification:
        return hd.sr.AlgorithmIdentification(
            name=self.pipeline, version=self.algorithm_version[:64], manufacturer=MANUFACTURER
        )

    def device_observer(self) -> hd.sr.ObserverContext:
        """The pipeline as the observer (TID 1004) of the SR and the key object selection."""
        return hd.sr.ObserverContext(
            observer_type=codes.DCM.Device,
            observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
                uid=self.uid("device"),
                name=self.model_name,
                manufacturer_name=MANUFACTURER,
                model_name=self.pipeline[:64],
            ),
        )

    def contributing_equipment(self) -> hd.ContributingEquipment:
        """The IHE AIR item; highdicom only admits DCM purposes, so the IHE code is set after building."""
        equipment = hd.ContributingEquipment(
            manufacturer=MANUFACTURER,
            purpose_of_reference=codes.DCM.ProcessingEquipment,
            manufacturer_model_name=self.model_name,
            software_versions=radrouter.__version__,
            contribution_description=f"{self.pipeline} {self.algorithm_version}"[:64],
        )
        equipment.PurposeOfReferenceCodeSequence = [PROCESSING_ALGORITHM]
        return equipment


#: Optional (type 3) Patient and General Study sequences: an empty one copied from the source is an error.
_OPTIONAL_STUDY_SEQUENCES = (
    "ProcedureCodeSequence",
    "ReferencedStudySequence",
    "ReferencedPatientSequence",
    "AdmittingDiagnosesCodeSequence",
    "PhysiciansOfRecordIdentificationSequence",
    "ReferringPhysicianIdentificationSequence",
    "IssuerOfAccessionNumberSequence",
)


def drop_empty_inherited_sequences(dataset: Dataset) -> None:
    """Remove empty optional sequences inherited from a source whose headers had them (seen: Philips)."""
    for keyword in _OPTIONAL_STUDY_SEQUENCES:
        if keyword in dataset and len(dataset[keyword].value) == 0:
            del dataset[keyword]
