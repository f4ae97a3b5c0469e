"""Results from headers no scanner in ../shared/data writes: mutated copies of the real MPRAGE
(Hypothesis), the character sets of pydicom's real files, a series that cannot give a SEG."""

from __future__ import annotations

import io

import pydicom
import pytest
from hypothesis import HealthCheck, example, given, settings
from pydicom.data import get_charset_files

from radrouter.inference.models.brain_extraction import BrainExtraction
from radrouter.inference.node_link import encode_file
from radrouter.inference.results.build import build_results
from radrouter.inference.results.content import ResultIdentity
from radrouter.inference.results.sanitise import RepairRule
from radrouter.inference.volume import NoFrameOfReference, load_volume
from tests.inference.source_mutations import Mutation, acceptable, mutated_series, mutations, write_path
from tests.inference.variants import in_character_set, threshold_prediction, with_raw

#: A bounded run in CI; `python -m bench.results_fuzz` runs thousands.
CI_RUN = settings(max_examples=20, deadline=None, database=None, suppress_health_check=list(HealthCheck))


@CI_RUN
@given(case=mutations())
@example(case=[Mutation("StudyDate", b"***"), Mutation("PatientName", b"A^B^C^D^E^F")])
@example(case=[Mutation("PatientAge", b"unknown"), Mutation("PatientWeight", b"70,5")])
@example(case=[Mutation("StudyInstanceUID", b"1.2.03.4"), Mutation("PatientID", None)])
@example(case=[Mutation("StudyInstanceUID", None)])
def test_every_mutated_source_gives_valid_results_or_a_reason(case: list[Mutation]) -> None:
    outcome = write_path(case)
    assert acceptable(case, outcome), (case, outcome)


def _names() -> list[tuple[str, object, bytes]]:
    cases = []
    for path in sorted(get_charset_files("chr*.dcm")):
        source = pydicom.dcmread(path)
        if "PatientName" in source and "PixelData" in source:
            raw = pydicom.dcmread(path).get_item(0x00100010)
            assert raw is not None
            cases.append((path.rsplit("/", 1)[-1], source.SpecificCharacterSet, bytes(raw.value)))
    return cases


@pytest.mark.parametrize(("name", "character_set", "patient_name"), _names(), ids=lambda v: str(v)[:20])
def test_results_keep_the_text_and_the_character_set_of_the_source(
    name: str, character_set: str | list[str], patient_name: bytes
) -> None:
    series = [in_character_set(ds, character_set, patient_name) for ds in mutated_series([])[:4]]
    expected = str(series[0].PatientName)
    built = build_results(
        series,
        threshold_prediction(load_volume(series)),
        BrainExtraction(),
        ResultIdentity(name, "brain-extraction", "test", 9100),
    )
    for result in (built.segmentation, built.report):
        back = pydicom.dcmread(io.BytesIO(encode_file(result)))
        assert back.SpecificCharacterSet == character_set
        assert str(back.PatientName) == expected
    assert built.repairs == []


def test_text_that_does_not_decode_does_not_fail_the_job_and_the_results_say_utf8() -> None:
    series = [in_character_set(ds, "ISO_IR 999", b"M\xfcller^Hans") for ds in mutated_series([])[:4]]
    built = build_results(
        series,
        threshold_prediction(load_volume(series)),
        BrainExtraction(),
        ResultIdentity("undecodable", "brain-extraction", "test", 9100),
    )
    back = pydicom.dcmread(io.BytesIO(encode_file(built.report)))
    assert back.SpecificCharacterSet == "ISO_IR 192"
    assert str(back.PatientName).endswith("ller^Hans")
    assert ("SpecificCharacterSet", RepairRule.REENCODED) in {(r.attribute, r.rule) for r in built.repairs}


def test_a_series_without_a_frame_of_reference_is_refused_before_the_model_runs() -> None:
    series = [with_raw(ds, "FrameOfReferenceUID", None) for ds in mutated_series([])[:4]]
    with pytest.raises(NoFrameOfReference, match="4 of 4 instance"):
        load_volume(series)
