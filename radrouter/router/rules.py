"""Evaluates routing rules against series headers and turns matches into a :class:`RouteDecision`.

Semantics: a rule matches a series when every one of its conditions holds for that series' header
(a missing attribute does not match). Every matching rule fires; two rules asking the same pipeline
on the same series produce one run, with the most urgent priority and the union of destinations.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

from radrouter.config.rules import Condition, Priority, Rule


@dataclass(frozen=True)
class SeriesHeader:
    """The header of one instance of a series, and how the series reached us."""

    series_uid: str
    dataset: Dataset
    calling_ae: str = ""
    called_ae: str = ""


@dataclass
class PipelineRun:
    """One pipeline to run on one series."""

    series_uid: str
    pipeline: str
    priority: Priority
    rules: list[str] = field(default_factory=list)
    results_to: list[str] = field(default_factory=list)


@dataclass
class RouteDecision:
    """What a study's rules decided: the runs, and which rule matched which series."""

    runs: list[PipelineRun] = field(default_factory=list)
    matched: dict[str, list[str]] = field(default_factory=dict)


_URGENCY = [Priority.STAT, Priority.URGENT, Priority.ROUTINE]


def _values(header: SeriesHeader, key: str) -> list[str | float] | None:
    if key == "calling_ae":
        return [header.calling_ae]
    if key == "called_ae":
        return [header.called_ae]
    if key not in header.dataset:
        return None
    value = header.dataset[key].value
    if value is None or value == "":
        return None
    items = list(value) if isinstance(value, MultiValue | list) else [value]
    return [item if isinstance(item, int | float) else str(item) for item in items]


def _equal(actual: str | float, expected: str | float) -> bool:
    if isinstance(expected, str):
        return str(actual).strip().casefold() == expected.strip().casefold()
    try:
        return float(actual) == float(expected)
    except ValueError:
        return False


def condition_holds(condition: Condition, values: list[str | float] | None) -> bool:
    """Whether ``condition`` holds for an attribute's values (None when the attribute is missing)."""
    if condition.exists is not None:
        return (values is not None) == condition.exists
    if values is None:
        return False
    if condition.equals is not None:
        return any(_equal(value, condition.equals) for value in values)
    if condition.in_ is not None:
        return any(_equal(value, expected) for value in values for expected in condition.in_)
    if condition.regex is not None:
        pattern = re.compile(condition.regex)
        return any(pattern.search(str(value)) for value in values)
    if condition.range is not None:
        low, high = condition.range
        try:
            numbers = [float(value) for value in values]
        except ValueError:
            return False
        return any((low is None or n >= low) and (high is None or n <= high) for n in numbers)
    return False


def rule_matches(rule: Rule, header: SeriesHeader) -> bool:
    return all(condition_holds(condition, _values(header, key)) for key, condition in rule.match.items())


def decide(rules: Sequence[Rule], headers: Sequence[SeriesHeader]) -> RouteDecision:
    """Apply every rule to every series; merge duplicate (series, pipeline) runs."""
    decision = RouteDecision()
    runs: dict[tuple[str, str], PipelineRun] = {}
    for header in headers:
        for rule in rules:
            if not rule_matches(rule, header):
                continue
            decision.matched.setdefault(header.series_uid, []).append(rule.name)
            for request in rule.pipelines:
                priority = request.priority or rule.priority
                key = (header.series_uid, request.name)
                run = runs.setdefault(key, PipelineRun(header.series_uid, request.name, priority))
                run.priority = min(run.priority, priority, key=_URGENCY.index)
                run.rules.append(rule.name)
                run.results_to.extend(d for d in rule.results_to if d not in run.results_to)
    decision.runs = list(runs.values())
    return decision
