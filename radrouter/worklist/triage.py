"""The priority policy: AI results → priority class, and the reading order with a waiting-time cap.

Pure functions of their inputs (the clock is a parameter), so the node, the tests and the simulation
in ``bench/`` run exactly the same policy.

Reading order (after Baltruschat et al. 2021, where a cap stopped routine studies from starving):
a study that has waited its class's cap is overdue and goes to the top, overdue studies in the order
their caps ran out (earliest deadline first); the others follow by class (STAT, URGENT, ROUTINE),
first come first served within a class.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from radrouter.config.rules import Priority
from radrouter.config.worklist import TriageRule
from radrouter.inference.results.summary import FindingItem, MeasurementItem, ResultSummary


@dataclass(frozen=True)
class TriageMatch:
    """A triage rule that a result satisfied, and the observation (measurement or finding) it read."""

    rule: str
    priority: Priority
    reason: str
    observation: str


def _finding_matches(rule: TriageRule, finding: FindingItem) -> bool:
    assert rule.finding is not None
    if finding.code.casefold() != rule.finding.code.casefold():
        return False
    minimum = rule.finding.min_probability
    return minimum is None or (finding.probability is not None and finding.probability >= minimum)


def _measurement_matches(rule: TriageRule, measurement: MeasurementItem) -> bool:
    condition = rule.measurement
    assert condition is not None
    if measurement.name.casefold() != condition.name.casefold():
        return False
    above = condition.above is None or measurement.value > condition.above
    below = condition.below is None or measurement.value < condition.below
    return above and below


def evaluate(rules: Iterable[TriageRule], summary: ResultSummary) -> list[TriageMatch]:
    """Every rule for this summary's pipeline that one of its findings or measurements satisfies."""
    matches: list[TriageMatch] = []
    for rule in rules:
        if rule.pipeline != summary.pipeline:
            continue
        if rule.finding is not None:
            hits = [f.name for f in summary.findings if _finding_matches(rule, f)]
        else:
            hits = [m.name for m in summary.measurements if _measurement_matches(rule, m)]
        matches += [TriageMatch(rule.name, rule.priority, rule.reason, name) for name in hits[:1]]
    return matches


def most_urgent(matches: Sequence[TriageMatch]) -> TriageMatch | None:
    """The match that decides the class (the first of the most urgent ones), or None."""
    return min(matches, key=lambda match: match.priority.rank, default=None)


def abnormal_flag(observation: str, matches: Sequence[TriageMatch]) -> str:
    """HL7 OBX-8 (table 0078): AA (critical) for a STAT trigger, A for another trigger, else N."""
    classes = {match.priority for match in matches if match.observation == observation}
    if Priority.STAT in classes:
        return "AA"
    return "A" if classes else "N"


@dataclass(frozen=True)
class WaitingStudy:
    """What the reading order needs of one unread worklist item."""

    study_uid: str
    priority: Priority
    arrived_at: datetime


@dataclass(frozen=True)
class Placement:
    """A study's place in the reading order, with how long it has waited and whether it is overdue."""

    study: WaitingStudy
    waited_s: float
    overdue: bool


def reading_order(
    waiting: Iterable[WaitingStudy], now: datetime, max_wait_s: Mapping[Priority, float]
) -> list[Placement]:
    """Order ``waiting`` for reading at ``now``: overdue first by deadline, then class, then arrival."""
    placements = []
    for study in waiting:
        waited = (now - study.arrived_at).total_seconds()
        cap = max_wait_s.get(study.priority, float("inf"))
        placements.append(Placement(study, waited, waited >= cap))

    def key(placement: Placement) -> tuple[int, float, int, datetime]:
        study = placement.study
        if placement.overdue:
            return (0, max_wait_s[study.priority] - placement.waited_s, 0, study.arrived_at)
        return (1, 0.0, study.priority.rank, study.arrived_at)

    return sorted(placements, key=key)
