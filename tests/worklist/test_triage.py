"""The priority policy on its own: triage rules over result summaries, and the reading order's cap."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

import pytest
from pydantic import ValidationError

from radrouter.config.rules import Priority
from radrouter.config.worklist import TriageRule, WorklistSettings
from radrouter.inference.results.summary import ResultSummary
from radrouter.worklist.triage import (
    WaitingStudy,
    abnormal_flag,
    evaluate,
    most_urgent,
    reading_order,
)

T0 = datetime(2026, 3, 2, 8, 0, 0)
HAEMORRHAGE = "SCT:50960005"


def summary(findings: Sequence[dict[str, object]] = (), volume: float = 1200.0) -> ResultSummary:
    """A result summary in the contract format every pipeline's SR row follows."""
    return ResultSummary.model_validate(
        {
            "pipeline": "ich-detect",
            "version": "test 1.0",
            "measurements": [
                {
                    "name": "Brain volume",
                    "code": "SCT:118565006",
                    "value": volume,
                    "unit": "mL",
                    "segment": "Brain",
                }
            ],
            "findings": list(findings),
        }
    )


def rule(**fields: object) -> TriageRule:
    base: dict[str, object] = {"name": "ich", "pipeline": "ich-detect", "priority": "stat", "reason": "Bleed"}
    return TriageRule.model_validate({**base, **fields})


def test_a_finding_code_above_the_minimum_probability_makes_the_study_stat() -> None:
    ich = rule(finding={"code": HAEMORRHAGE, "min_probability": 0.7})
    found = summary([{"name": "Intracranial haemorrhage", "code": HAEMORRHAGE, "probability": 0.91}])
    matches = evaluate([ich], found)
    assert [(m.rule, m.priority, m.observation) for m in matches] == [
        ("ich", Priority.STAT, "Intracranial haemorrhage")
    ]
    unsure = summary([{"name": "Intracranial haemorrhage", "code": HAEMORRHAGE, "probability": 0.4}])
    assert evaluate([ich], unsure) == []
    other_code = summary([{"name": "Infarct", "code": "SCT:432504007", "probability": 0.99}])
    assert evaluate([ich], other_code) == []


def test_a_finding_without_probability_matches_only_rules_without_a_minimum() -> None:
    yes_no = summary([{"name": "Intracranial haemorrhage", "code": HAEMORRHAGE, "probability": None}])
    assert evaluate([rule(finding={"code": HAEMORRHAGE})], yes_no)
    assert evaluate([rule(finding={"code": HAEMORRHAGE, "min_probability": 0.5})], yes_no) == []


def test_rules_read_only_their_own_pipeline() -> None:
    found = summary([{"name": "Intracranial haemorrhage", "code": HAEMORRHAGE, "probability": 1.0}])
    assert evaluate([rule(pipeline="other", finding={"code": HAEMORRHAGE})], found) == []


def test_measurement_thresholds_are_strict_and_can_bound_both_sides() -> None:
    small = rule(name="atrophy", measurement={"name": "brain volume", "below": 900}, priority="urgent")
    assert evaluate([small], summary(volume=899.9))
    assert evaluate([small], summary(volume=900.0)) == []
    band = rule(name="band", measurement={"name": "Brain volume", "above": 1000, "below": 1100})
    assert evaluate([band], summary(volume=1050))
    assert evaluate([band], summary(volume=1150)) == []


def test_the_most_urgent_match_decides_and_flags_follow_it() -> None:
    rules = [
        rule(
            name="large",
            measurement={"name": "Brain volume", "above": 1000},
            priority="urgent",
            reason="Large",
        ),
        rule(finding={"code": HAEMORRHAGE}),
    ]
    found = summary([{"name": "Intracranial haemorrhage", "code": HAEMORRHAGE, "probability": 0.8}])
    matches = evaluate(rules, found)
    decisive = most_urgent(matches)
    assert decisive is not None and (decisive.rule, decisive.priority) == ("ich", Priority.STAT)
    assert abnormal_flag("Intracranial haemorrhage", matches) == "AA"
    assert abnormal_flag("Brain volume", matches) == "A"
    assert abnormal_flag("Something else", matches) == "N"
    assert most_urgent([]) is None


@pytest.mark.parametrize(
    "fields",
    [
        {},
        {"finding": {"code": HAEMORRHAGE}, "measurement": {"name": "x", "above": 1}},
        {"finding": {"code": "50960005"}},
        {"measurement": {"name": "Brain volume"}},
        {"finding": {"code": HAEMORRHAGE, "min_probability": 1.5}},
    ],
)
def test_malformed_triage_rules_are_refused(fields: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        rule(**fields)


def caps(stat_min: float = 30, urgent_min: float = 120, routine_min: float = 480) -> dict[Priority, float]:
    return WorklistSettings(
        max_wait_stat_min=stat_min, max_wait_urgent_min=urgent_min, max_wait_routine_min=routine_min
    ).max_wait_s()


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def test_reading_order_is_class_then_arrival() -> None:
    waiting = [
        WaitingStudy("routine-early", Priority.ROUTINE, at(0)),
        WaitingStudy("urgent", Priority.URGENT, at(5)),
        WaitingStudy("stat-late", Priority.STAT, at(9)),
        WaitingStudy("stat-early", Priority.STAT, at(8)),
        WaitingStudy("routine-late", Priority.ROUTINE, at(1)),
    ]
    order = reading_order(waiting, at(10), caps())
    assert [p.study.study_uid for p in order] == [
        "stat-early",
        "stat-late",
        "urgent",
        "routine-early",
        "routine-late",
    ]
    assert [p.waited_s for p in order][:2] == [120.0, 60.0]
    assert not any(p.overdue for p in order)


def test_the_cap_lifts_a_routine_study_above_new_stat_ones_when_its_wait_reaches_it() -> None:
    """A controlled clock: the same list read one second before and at the routine cap."""
    waiting = [
        WaitingStudy("old-routine", Priority.ROUTINE, at(0)),
        WaitingStudy("stat", Priority.STAT, at(479)),
        WaitingStudy("urgent", Priority.URGENT, at(470)),
    ]
    before = reading_order(waiting, at(480) - timedelta(seconds=1), caps())
    assert [p.study.study_uid for p in before] == ["stat", "urgent", "old-routine"]
    on_cap = reading_order(waiting, at(480), caps())
    assert [p.study.study_uid for p in on_cap] == ["old-routine", "stat", "urgent"]
    assert on_cap[0].overdue and on_cap[0].waited_s == 480 * 60


def test_overdue_studies_are_read_earliest_deadline_first() -> None:
    waiting = [
        WaitingStudy("routine-due-at-100", Priority.ROUTINE, at(0)),
        WaitingStudy("stat-due-at-80", Priority.STAT, at(50)),
        WaitingStudy("routine-fresh", Priority.ROUTINE, at(119)),
    ]
    order = reading_order(waiting, at(120), caps(stat_min=30, routine_min=100))
    assert [(p.study.study_uid, p.overdue) for p in order] == [
        ("stat-due-at-80", True),
        ("routine-due-at-100", True),
        ("routine-fresh", False),
    ]
