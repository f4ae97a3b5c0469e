"""A study's base reading priority from what its sender, its order and the routing rules say."""

from __future__ import annotations

from pydicom.dataset import Dataset

from radrouter.config.rules import Priority, Rule
from radrouter.router.route.urgency import study_urgency


def header(**attributes: object) -> Dataset:
    dataset = Dataset()
    for keyword, value in attributes.items():
        setattr(dataset, keyword, value)
    return dataset


def requested(priority: str) -> Dataset:
    item = Dataset()
    item.RequestedProcedurePriority = priority
    return header(RequestAttributesSequence=[item])


def test_nothing_urgent_is_routine() -> None:
    urgency = study_urgency([header(Modality="MR")], False, [])
    assert (urgency.priority, urgency.source) == (Priority.ROUTINE, "header")


def test_the_order_priority_counts_at_the_top_level_or_in_the_request_attributes() -> None:
    assert study_urgency([header(RequestedProcedurePriority="stat ")], False, []).priority == Priority.STAT
    high = study_urgency([header(), requested("HIGH")], False, [])
    assert (high.priority, high.reason) == (Priority.URGENT, "RequestedProcedurePriority HIGH")
    assert study_urgency([requested("LOW"), requested("MEDIUM")], False, []).priority == Priority.ROUTINE


def test_the_most_urgent_of_sender_order_and_rules_wins() -> None:
    ed_head_ct = Rule.model_validate({"name": "ed-head-ct", "priority": "stat"})
    sent_high = study_urgency([requested("HIGH")], True, [])
    assert (sent_high.priority, sent_high.reason) == (Priority.URGENT, "C-STORE Priority (0000,0700) HIGH")
    by_rule = study_urgency([requested("HIGH")], True, [ed_head_ct])
    assert (by_rule.priority, by_rule.source, by_rule.reason) == (
        Priority.STAT,
        "rule",
        "routing rule ed-head-ct",
    )
