"""Rule evaluation on real series headers: the MPRAGE goes to brain extraction, the head CT does not."""

from __future__ import annotations

from typing import Any

import pydicom
import pytest

from radrouter.config.rules import Priority, Rule, default_rules, rule_retention
from radrouter.router.route.conditions import evaluate_match
from radrouter.router.route.header import SeriesHeader
from radrouter.router.route.rules import PipelineRun, decide
from tests.router.synthetic import dose_report, localizer
from tests.services import CT_HEAD, DATA, MPRAGE

LIDC = DATA / "ct-chest-lidc0001-partial"

TOLERANCE = 20.0


@pytest.fixture(scope="module")
def mr() -> SeriesHeader:
    first = sorted(MPRAGE.glob("*.dcm"))[0]
    dataset = pydicom.dcmread(first, stop_before_pixels=True)
    return SeriesHeader(str(dataset.SeriesInstanceUID), dataset, calling_ae="MODALITY", called_ae="RADROUTER")


@pytest.fixture(scope="module")
def ct() -> SeriesHeader:
    dataset = pydicom.dcmread(CT_HEAD / "I10", stop_before_pixels=True)
    return SeriesHeader(
        str(dataset.SeriesInstanceUID), dataset, calling_ae="CTSCANNER", called_ae="RADROUTER"
    )


def rule(match: dict[str, Any], name: str = "test", **extra: Any) -> Rule:
    return Rule.model_validate({"name": name, "match": match, "pipelines": ["brain-extraction"], **extra})


def rule_matches(tested: Rule, header: SeriesHeader) -> bool:
    return evaluate_match(tested.match, header, TOLERANCE).held


def test_headers_are_what_the_tests_assume(mr: SeriesHeader, ct: SeriesHeader) -> None:
    assert (mr.dataset.Modality, mr.dataset.MRAcquisitionType) == ("MR", "3D")
    assert ct.dataset.Modality == "CT"
    assert "MRAcquisitionType" not in ct.dataset
    assert mr.series_uid != ct.series_uid


def test_default_rules_send_mprage_to_brain_extraction(mr: SeriesHeader) -> None:
    decision = decide(default_rules(), [mr], TOLERANCE)

    assert decision.runs == [
        PipelineRun(
            series_uid=mr.series_uid,
            pipeline="brain-extraction",
            priority=Priority.ROUTINE,
            rules=["brain-t1-3d"],
            results_to=["pacs"],
        )
    ]
    assert decision.matched == {mr.series_uid: ["brain-t1-3d"]}


def test_default_rules_do_not_match_head_ct(ct: SeriesHeader) -> None:
    decision = decide(default_rules(), [ct], TOLERANCE)

    assert decision.runs == []
    assert decision.matched == {}


def test_study_with_both_series_runs_only_on_the_mprage(mr: SeriesHeader, ct: SeriesHeader) -> None:
    decision = decide(default_rules(), [ct, mr], TOLERANCE)

    assert [(run.series_uid, run.pipeline) for run in decision.runs] == [(mr.series_uid, "brain-extraction")]
    assert list(decision.matched) == [mr.series_uid]


@pytest.mark.parametrize(
    "condition",
    [
        "3D",
        {"regex": "3D"},
        {"in": ["2D", "3D"]},
        {"range": [0, 10]},
        {"exists": True},
    ],
)
def test_missing_attribute_does_not_match_and_does_not_raise(ct: SeriesHeader, condition: Any) -> None:
    assert rule_matches(rule({"MRAcquisitionType": condition}), ct) is False


def test_empty_attribute_counts_as_missing(mr: SeriesHeader) -> None:
    assert "ContrastBolusAgent" in mr.dataset
    assert mr.dataset.ContrastBolusAgent == ""

    assert rule_matches(rule({"ContrastBolusAgent": {"exists": True}}), mr) is False
    assert rule_matches(rule({"ContrastBolusAgent": {"exists": False}}), mr) is True


def test_exists_false_matches_missing_attribute(mr: SeriesHeader, ct: SeriesHeader) -> None:
    no_mr_acquisition = rule({"MRAcquisitionType": {"exists": False}})

    assert rule_matches(no_mr_acquisition, ct) is True
    assert rule_matches(no_mr_acquisition, mr) is False


@pytest.mark.parametrize(
    ("bounds", "matches_ct", "matches_mr"),
    [
        ([4, 6], True, False),
        ([5, 5], True, False),
        ([None, 2], False, True),
        ([2, None], True, False),
        ([None, None], True, True),
        ([6, 10], False, False),
    ],
)
def test_range_on_slice_thickness(
    mr: SeriesHeader, ct: SeriesHeader, bounds: list[float | None], matches_ct: bool, matches_mr: bool
) -> None:
    thickness = rule({"SliceThickness": {"range": bounds}})

    assert rule_matches(thickness, ct) is matches_ct
    assert rule_matches(thickness, mr) is matches_mr


def test_range_on_non_numeric_attribute_does_not_match(mr: SeriesHeader) -> None:
    assert rule_matches(rule({"SeriesDescription": {"range": [0, 10]}}), mr) is False


def test_in_list(mr: SeriesHeader, ct: SeriesHeader) -> None:
    cross_sectional = rule({"Modality": {"in": ["CT", "MR"]}})
    bare_list = rule({"Modality": ["ct"]})
    radiographs = rule({"Modality": ["CR", "DX"]})

    assert rule_matches(cross_sectional, mr) and rule_matches(cross_sectional, ct)
    assert rule_matches(bare_list, ct) and not rule_matches(bare_list, mr)
    assert not rule_matches(radiographs, mr) and not rule_matches(radiographs, ct)


def test_in_list_with_numbers(ct: SeriesHeader) -> None:
    assert rule_matches(rule({"SliceThickness": [2.5, 5]}), ct) is True
    assert rule_matches(rule({"SliceThickness": [1, 2.5]}), ct) is False


@pytest.mark.parametrize("description", ["adni_sag3d mprage", "ADNI_SAG3D MPRAGE", " Adni_Sag3D Mprage "])
def test_equality_is_case_insensitive(mr: SeriesHeader, description: str) -> None:
    assert rule_matches(rule({"SeriesDescription": description}), mr) is True


def test_equality_does_not_match_a_different_value(mr: SeriesHeader) -> None:
    assert rule_matches(rule({"SeriesDescription": "adni_sag3d"}), mr) is False
    assert rule_matches(rule({"Modality": "mr"}), mr) is True


def test_equality_on_multi_valued_attribute_matches_any_value(mr: SeriesHeader, ct: SeriesHeader) -> None:
    ffe = rule({"ImageType": "m_ffe"})

    assert rule_matches(ffe, mr) is True
    assert rule_matches(ffe, ct) is False


def test_numeric_equality(ct: SeriesHeader) -> None:
    assert rule_matches(rule({"SliceThickness": 5}), ct) is True
    assert rule_matches(rule({"SliceThickness": 5.0}), ct) is True
    assert rule_matches(rule({"SliceThickness": 1}), ct) is False


def test_regex_searches_the_value(mr: SeriesHeader, ct: SeriesHeader) -> None:
    t1 = rule({"SeriesDescription": {"regex": r"(?i)mprage"}})
    case_sensitive = rule({"SeriesDescription": {"regex": "mprage"}})

    assert rule_matches(t1, mr) is True
    assert rule_matches(t1, ct) is False
    assert rule_matches(case_sensitive, mr) is False


def test_calling_ae_condition(mr: SeriesHeader, ct: SeriesHeader) -> None:
    from_modality = rule({"calling_ae": "modality"})
    to_us = rule({"called_ae": "RADROUTER", "calling_ae": {"in": ["CTSCANNER", "OTHER"]}})

    assert rule_matches(from_modality, mr) is True
    assert rule_matches(from_modality, ct) is False
    assert rule_matches(to_us, ct) is True
    assert rule_matches(to_us, mr) is False


def test_all_conditions_must_hold(mr: SeriesHeader) -> None:
    assert rule_matches(rule({"Modality": "MR", "MRAcquisitionType": "3D"}), mr) is True
    assert rule_matches(rule({"Modality": "MR", "MRAcquisitionType": "2D"}), mr) is False


def test_rule_without_conditions_matches_every_series(mr: SeriesHeader, ct: SeriesHeader) -> None:
    everything = rule({})

    assert rule_matches(everything, mr) and rule_matches(everything, ct)


@pytest.mark.parametrize("stat_first", [False, True])
def test_same_pipeline_from_two_rules_is_one_run_with_most_urgent_priority_and_all_destinations(
    mr: SeriesHeader, stat_first: bool
) -> None:
    routine = rule({"Modality": "MR"}, name="routine-mr", priority="routine", results_to=["pacs"])
    stat = rule({"MRAcquisitionType": "3D"}, name="stat-3d", priority="stat", results_to=["archive", "pacs"])
    rules = [stat, routine] if stat_first else [routine, stat]

    decision = decide(rules, [mr], TOLERANCE)

    assert len(decision.runs) == 1
    run = decision.runs[0]
    assert (run.series_uid, run.pipeline) == (mr.series_uid, "brain-extraction")
    assert run.priority is Priority.STAT
    assert sorted(run.results_to) == ["archive", "pacs"]
    assert sorted(run.rules) == ["routine-mr", "stat-3d"]
    assert sorted(decision.matched[mr.series_uid]) == ["routine-mr", "stat-3d"]


def test_pipeline_priority_overrides_rule_priority(mr: SeriesHeader) -> None:
    urgent = Rule.model_validate(
        {
            "name": "urgent-request",
            "match": {"Modality": "MR"},
            "priority": "routine",
            "pipelines": [{"name": "brain-extraction", "priority": "urgent"}],
        }
    )
    routine = rule({"Modality": "MR"}, name="plain", priority="routine")

    decision = decide([routine, urgent], [mr], TOLERANCE)

    assert [run.priority for run in decision.runs] == [Priority.URGENT]


def test_different_series_get_separate_runs(mr: SeriesHeader, ct: SeriesHeader) -> None:
    decision = decide([rule({})], [mr, ct], TOLERANCE)

    assert sorted(run.series_uid for run in decision.runs) == sorted([mr.series_uid, ct.series_uid])


@pytest.fixture(scope="module")
def mixed_ct(ct: SeriesHeader) -> list[SeriesHeader]:
    """A CT study as scanners send it: localizer, two axial recons (5 mm, 2.5 mm), dose report."""
    study = str(ct.dataset.StudyInstanceUID)
    thin = pydicom.dcmread(next(LIDC.glob("*.dcm")), stop_before_pixels=True)
    scout = localizer(CT_HEAD / "I10", study)[0]
    dose = dose_report(ct.dataset, study)
    return [
        SeriesHeader(str(scout.SeriesInstanceUID), scout, "CT1", "RADROUTER", 1),
        SeriesHeader(ct.series_uid, ct.dataset, "CT1", "RADROUTER", 28),
        SeriesHeader(str(thin.SeriesInstanceUID), thin, "CT1", "RADROUTER", 16),
        SeriesHeader(str(dose.SeriesInstanceUID), dose, "CT1", "RADROUTER", 1),
    ]


def ct_rule(**extra: Any) -> Rule:
    return Rule.model_validate({"name": "ct", "match": {"calling_ae": "CT1"}, **extra})


def runs_on(decision: Any) -> list[str]:
    return [run.series_uid for run in decision.runs]


def test_localizers_and_dose_reports_never_feed_a_pipeline_unless_asked(mixed_ct: list[SeriesHeader]) -> None:
    scout, head, thin, dose = mixed_ct
    decision = decide([ct_rule(pipelines=["brain-extraction"])], mixed_ct, TOLERANCE)

    assert runs_on(decision) == [head.series_uid, thin.series_uid]
    notes = {trace.series_uid: trace.notes for trace in decision.series}
    assert "not fed, a localizer series" in notes[scout.series_uid][0]
    assert "not fed, a dose_report series" in notes[dose.series_uid][0]

    asked = ct_rule(match={"calling_ae": "CT1", "kind": "localizer"}, pipelines=["brain-extraction"])
    assert runs_on(decide([asked], mixed_ct, TOLERANCE)) == [scout.series_uid]


def test_select_thinnest_with_enough_slices_runs_once(mixed_ct: list[SeriesHeader]) -> None:
    _, head, thin, _ = mixed_ct
    thinnest = {"name": "brain-extraction", "select": "thinnest", "series": {"orientation": "axial"}}
    decision = decide([ct_rule(pipelines=[thinnest])], mixed_ct, TOLERANCE)
    assert runs_on(decision) == [thin.series_uid]
    head_notes = next(t.notes for t in decision.series if t.series_uid == head.series_uid)
    assert head_notes == [
        f"brain-extraction (rule 'ct'): not fed, select thinnest chose series {thin.describe()!r}"
    ]

    at_least_20 = {**thinnest, "series": {"orientation": "axial", "slices": {"range": [20, None]}}}
    decision = decide([ct_rule(pipelines=[at_least_20])], mixed_ct, TOLERANCE)
    assert runs_on(decision) == [head.series_uid]
    thin_notes = next(t.notes for t in decision.series if t.series_uid == thin.series_uid)
    assert thin_notes == ["brain-extraction (rule 'ct'): not fed, slices = '16' is outside [20, inf]"]


def test_select_most_slices(mixed_ct: list[SeriesHeader]) -> None:
    most = {"name": "brain-extraction", "select": "most_slices"}
    assert runs_on(decide([ct_rule(pipelines=[most])], mixed_ct, TOLERANCE)) == [mixed_ct[1].series_uid]


def test_forward_sends_every_matched_series_of_any_kind_once(mixed_ct: list[SeriesHeader]) -> None:
    rules = [ct_rule(forward_to=["pacs"]), ct_rule(name="ct-again", forward_to=["pacs", "archive"])]
    decision = decide(rules, mixed_ct, TOLERANCE)

    assert len(decision.forwards) == 2 * len(mixed_ct)
    pacs = [f for f in decision.forwards if f.destination == "pacs"]
    assert [f.series_uid for f in pacs] == [h.series_uid for h in mixed_ct]
    assert all(f.rules == ["ct", "ct-again"] for f in pacs)


def test_stop_ends_testing_of_the_series(mr: SeriesHeader) -> None:
    first = rule({"Modality": "MR"}, name="first", stop=True, forward_to=["pacs"])
    second = rule({"Modality": "MR"}, name="second")
    decision = decide([first, second], [mr], TOLERANCE)

    assert decision.matched == {mr.series_uid: ["first"]}
    assert decision.runs == [PipelineRun(mr.series_uid, "brain-extraction", Priority.ROUTINE, ["first"])]
    verdict = decision.series[0].rules[1]
    assert (verdict.rule, verdict.outcome, verdict.reasons) == (
        "second",
        "not tested",
        ["rule 'first' has stop: true"],
    )


def test_a_default_rule_applies_only_where_nothing_else_matched(mr: SeriesHeader, ct: SeriesHeader) -> None:
    fallback = Rule.model_validate({"name": "fallback", "default": True, "forward_to": ["pacs"]})
    decision = decide(
        [fallback, *default_rules()], [mr, ct], TOLERANCE
    )  # position in the file does not matter

    assert [(f.series_uid, f.rules) for f in decision.forwards] == [(ct.series_uid, ["fallback"])]
    assert decision.matched == {mr.series_uid: ["brain-t1-3d"], ct.series_uid: ["fallback"]}
    mr_verdicts = {v.rule: (v.outcome, v.reasons) for v in decision.series[0].rules}
    assert mr_verdicts["fallback"] == ("not tested", ["default rule; matched: brain-t1-3d"])


def test_discard_drops_the_series_from_every_rule_and_from_default(
    mr: SeriesHeader, ct: SeriesHeader
) -> None:
    test_sender = Rule.model_validate(
        {"name": "test-sender", "match": {"calling_ae": "MODALITY"}, "discard": True}
    )
    fallback = Rule.model_validate({"name": "fallback", "default": True, "forward_to": ["pacs"]})
    decision = decide([*default_rules(), test_sender, fallback], [mr, ct], TOLERANCE)

    assert decision.discarded == [mr.series_uid]
    assert decision.runs == []
    assert [f.series_uid for f in decision.forwards] == [ct.series_uid]
    assert decision.series[0].notes == ["discarded by rule 'test-sender': no pipeline, no forward"]


def test_rule_retention_is_the_longest_of_the_matching_rules_that_say_one() -> None:
    rules = [
        Rule.model_validate({"name": "a", "retention": {"keep_images_h": 5}}),
        Rule.model_validate({"name": "b", "retention": {"keep_images_h": 50, "keep_results_h": 1}}),
        Rule.model_validate({"name": "c", "forward_to": ["pacs"]}),
    ]
    assert rule_retention(rules) == (50, 1)
    assert rule_retention(rules[2:]) == (None, None)
