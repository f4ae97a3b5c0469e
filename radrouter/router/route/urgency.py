"""The reading priority a study brings with it: what the sender and the order say, and routing rules.

Sources: the C-STORE request's Priority (0000,0700) HIGH; Requested Procedure Priority (0040,1003), at
the top level or in the Request Attributes Sequence (STAT, HIGH, ROUTINE, MEDIUM, LOW); and the
priority of every routing rule that matched (e.g. STAT for ED head CT). The most urgent wins.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from pydicom.dataset import Dataset

from radrouter.config.rules import Priority, Rule

#: Requested Procedure Priority values that ask for more than routine reading.
REQUESTED_PRIORITY = {"STAT": Priority.STAT, "HIGH": Priority.URGENT}


@dataclass(frozen=True)
class StudyUrgency:
    """A study's base class on the worklist, where it came from, and why."""

    priority: Priority
    source: str
    reason: str


def _requested_priorities(dataset: Dataset) -> list[str]:
    holders = [dataset, *dataset.get("RequestAttributesSequence", [])]
    return [
        str(holder.RequestedProcedurePriority).strip().upper()
        for holder in holders
        if holder.get("RequestedProcedurePriority")
    ]


def study_urgency(
    headers: Sequence[Dataset], sent_as_high_priority: bool, fired_rules: Sequence[Rule]
) -> StudyUrgency:
    """The most urgent of what the headers, the sender and the fired routing rules ask for."""
    candidates = [StudyUrgency(Priority.ROUTINE, "header", "routine: nothing asked for more")]
    if sent_as_high_priority:
        candidates.append(StudyUrgency(Priority.URGENT, "header", "C-STORE Priority (0000,0700) HIGH"))
    for value in sorted({value for header in headers for value in _requested_priorities(header)}):
        if value in REQUESTED_PRIORITY:
            candidates.append(
                StudyUrgency(REQUESTED_PRIORITY[value], "header", f"RequestedProcedurePriority {value}")
            )
    for rule in fired_rules:
        candidates.append(StudyUrgency(rule.priority, "rule", f"routing rule {rule.name}"))
    return min(candidates, key=lambda candidate: candidate.priority.rank)
