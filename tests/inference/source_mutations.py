"""Mutated real headers through the results' write path: what the Hypothesis test and
`bench/results_fuzz.py` both run.

A case takes 20 real MPRAGE slices and changes one to four of the attributes the SEG and SR copy:
a field example (``***`` dates, ``unknown`` ages, six-component names), random bytes, or removal.
The write path must then give a SEG and an SR that highdicom reads back and that dciodvfy finds no
error in that the mutated source does not already have; removing a type 1 attribute may instead
fail the job, with a reason that names the attribute.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from functools import cache

import highdicom as hd
import pydicom
from hypothesis import strategies as st
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from radrouter.inference.failures import JobFailed
from radrouter.inference.models.brain_extraction import BrainExtraction
from radrouter.inference.node_link import encode_file
from radrouter.inference.pipeline import PipelineInputError
from radrouter.inference.results.build import build_results
from radrouter.inference.results.content import ResultIdentity
from radrouter.inference.volume import load_volume
from tests.inference.variants import dataset_bytes, dciodvfy_elements, reread, threshold_prediction, with_raw
from tests.services import MPRAGE

#: Attributes of the Patient and Study modules (and the source geometry's frame) the results copy.
COPIED = (
    "PatientName", "PatientID", "IssuerOfPatientID", "PatientBirthDate", "PatientBirthTime", "PatientSex",
    "OtherPatientIDs", "EthnicGroup", "PatientComments", "PatientAge", "PatientSize", "PatientWeight",
    "Occupation", "AdditionalPatientHistory", "StudyDate", "StudyTime", "AccessionNumber", "StudyID",
    "ReferringPhysicianName", "StudyDescription", "AdmittingDiagnosesDescription", "PhysiciansOfRecord",
    "NameOfPhysiciansReadingStudy", "StudyInstanceUID", "PositionReferenceIndicator",
)  # fmt: skip
#: Type 1 among them: removing one may fail the job (with its name in the reason).
TYPE_1 = frozenset({"StudyInstanceUID"})

FIELD_VALUES = (
    b"***", b"00000000", b"unknown", b"70,5", b"1.7500000000000000001", b"A^B^C^D^E^F", b"1.2.03.4",
    b"2021.09.02", b"13:05:14", b"male", b"-", b"N/A", b"99999999", b"20211332", b"1e400", b"nan",
    b"\xff\xfe\x00A", b"x" * 70, b"^^^^^^", b"==^==", b"   ", b"\x1b$B$d$^$@\x1b(B",
)  # fmt: skip


@dataclass(frozen=True)
class Mutation:
    keyword: str
    value: bytes | None  # None: removed

    def __repr__(self) -> str:
        return f"{self.keyword}={'<removed>' if self.value is None else self.value!r}"


def mutations() -> st.SearchStrategy[list[Mutation]]:
    value = st.one_of(
        st.sampled_from(FIELD_VALUES),
        st.binary(min_size=0, max_size=80).map(lambda raw: raw.replace(b"\\", b"")),
        st.text(max_size=40).map(lambda text: text.encode("utf-8")),
        st.none(),
    )
    mutation = st.builds(Mutation, st.sampled_from(COPIED), value)
    return st.lists(mutation, min_size=1, max_size=4, unique_by=lambda m: m.keyword)


@cache
def _slices() -> tuple[bytes, ...]:
    return tuple(path.read_bytes() for path in sorted(MPRAGE.glob("*.dcm"))[75:95])


def mutated_series(case: list[Mutation]) -> list[Dataset]:
    series = []
    for raw in _slices():
        dataset = pydicom.dcmread(io.BytesIO(raw))
        for mutation in case:
            with_raw(dataset, mutation.keyword, mutation.value)
        series.append(reread(dataset))
    return series


@dataclass(frozen=True)
class Outcome:
    """One case: results written (and what dciodvfy found that the source lacks), or the reason."""

    written: bool
    new_errors: frozenset[str] = frozenset()
    reason: str = ""
    repairs: int = 0


def write_path(case: list[Mutation]) -> Outcome:
    """The worker's path from the read series to the SEG and SR bytes, then read back and validated."""
    series = mutated_series(case)
    source_errors = dciodvfy_elements(dataset_bytes(series[0]))
    try:
        volume = load_volume(series)
        identity = ResultIdentity(str(generate_uid()), "brain-extraction", "test", 9100)
        built = build_results(series, threshold_prediction(volume), BrainExtraction(), identity)
    except (JobFailed, PipelineInputError) as failure:
        return Outcome(written=False, reason=str(failure))
    new_errors: set[str] = set()
    for result in (built.segmentation, built.report):
        data = encode_file(result)
        new_errors |= dciodvfy_elements(data) - source_errors
    hd.seg.segread(io.BytesIO(encode_file(built.segmentation)))
    hd.sr.srread(io.BytesIO(encode_file(built.report)))
    return Outcome(written=True, new_errors=frozenset(new_errors), repairs=len(built.repairs))


def acceptable(case: list[Mutation], outcome: Outcome) -> bool:
    """Results without new validator errors; or, for a removed type 1 attribute, a reason naming it."""
    if outcome.written:
        return not outcome.new_errors
    removed = {m.keyword for m in case if m.value is None and m.keyword in TYPE_1}
    return any(keyword in outcome.reason for keyword in removed)
