"""Evaluates routing rules on a study's series headers and returns a :class:`RouteDecision`.

Pure: rules and headers in, decision out (no I/O), so the router, the rule tester and the web API
all get the same answer. Semantics, in order:

1. Each series is tested against the non-default rules in file order, then, only if none of them
   matched it, against the ``default: true`` rules. A matching rule with ``stop: true`` ends the
   testing of that series.
2. Every matching rule fires. ``discard`` drops the series from every action of every rule.
3. ``forward_to`` sends the matched series as received. ``pipelines`` take, among the series the rule
   matched, those that are images (localizers, dose reports, secondary captures and non-image
   objects only when the rule tests ``kind``) and meet the request's ``series`` conditions; ``select``
   then keeps each of them, or the thinnest, or the one with the most slices.
4. Duplicate work runs once: one run per (series, pipeline), with the most urgent priority and the
   results destinations of every rule that asked for it; one forward per (series, destination).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from radrouter.config.rules import PipelineRequest, Priority, Rule, SeriesChoice, SeriesKind
from radrouter.router.route.conditions import evaluate_match
from radrouter.router.route.header import SeriesHeader, orientation


@dataclass
class PipelineRun:
    """One pipeline to run on one series."""

    series_uid: str
    pipeline: str
    priority: Priority
    rules: list[str] = field(default_factory=list)
    results_to: list[str] = field(default_factory=list)


@dataclass
class Forward:
    """One series to send, as received, to one destination."""

    series_uid: str
    destination: str
    rules: list[str] = field(default_factory=list)


@dataclass
class RuleTrace:
    """What one rule made of one series: matched, not matched (and why), or not tested (and why)."""

    rule: str
    outcome: str
    reasons: list[str]


@dataclass
class SeriesTrace:
    """One series as the rules saw it, each rule's verdict, and notes on pipeline selection."""

    series_uid: str
    description: str
    modality: str
    kind: str
    orientation: str | None
    slices: int
    rules: list[RuleTrace] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass
class RouteDecision:
    """What a study's rules decided: pipeline runs, forwards, discarded series, and why."""

    runs: list[PipelineRun] = field(default_factory=list)
    forwards: list[Forward] = field(default_factory=list)
    discarded: list[str] = field(default_factory=list)
    matched: dict[str, list[str]] = field(default_factory=dict)
    series: list[SeriesTrace] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


MATCHED, NOT_MATCHED, NOT_TESTED = "matched", "not matched", "not tested"


def _trace(header: SeriesHeader, tolerance_deg: float) -> SeriesTrace:
    plane = orientation(header.dataset, tolerance_deg)
    return SeriesTrace(
        series_uid=header.series_uid,
        description=header.describe(),
        modality=str(header.dataset.get("Modality", "")),
        kind=header.kind.value,
        orientation=plane.value if plane else None,
        slices=header.slices,
    )


def _test_series(
    rules: Sequence[Rule], header: SeriesHeader, trace: SeriesTrace, tolerance_deg: float
) -> list[Rule]:
    """The rules that fire on one series, in evaluation order, recording each verdict in ``trace``."""
    ordered = [rule for rule in rules if not rule.default] + [rule for rule in rules if rule.default]
    fired: list[Rule] = []
    stopped_by: str | None = None
    for rule in ordered:
        if stopped_by is not None:
            trace.rules.append(RuleTrace(rule.name, NOT_TESTED, [f"rule {stopped_by!r} has stop: true"]))
            continue
        if rule.default and fired:
            names = ", ".join(r.name for r in fired)
            trace.rules.append(RuleTrace(rule.name, NOT_TESTED, [f"default rule; matched: {names}"]))
            continue
        outcome = evaluate_match(rule.match, header, tolerance_deg)
        if not outcome.held:
            trace.rules.append(RuleTrace(rule.name, NOT_MATCHED, outcome.failed))
            continue
        trace.rules.append(RuleTrace(rule.name, MATCHED, [outcome.reason]))
        fired.append(rule)
        if rule.stop:
            stopped_by = rule.name
    return fired


def _selection_key(choice: SeriesChoice, header: SeriesHeader) -> tuple[Any, ...]:
    thickness = header.thickness()
    thinnest = (thickness is None, thickness or 0.0)
    number = header.series_number()
    tail = (-header.slices, number is None, number or 0.0, header.series_uid)
    return (*thinnest, *tail) if choice == SeriesChoice.THINNEST else (tail[0], *thinnest, *tail[1:])


def _select(
    rule: Rule,
    request: PipelineRequest,
    series: list[SeriesHeader],
    traces: dict[str, SeriesTrace],
    tolerance_deg: float,
) -> list[SeriesHeader]:
    """The series ``request`` runs on, among those ``rule`` fired on; notes say why others do not."""
    asks_for_kind = rule.match.mentions("kind") or request.series.mentions("kind")
    label = f"{request.name} (rule {rule.name!r})"
    candidates: list[SeriesHeader] = []
    for header in series:
        if not asks_for_kind and header.kind != SeriesKind.IMAGE:
            traces[header.series_uid].notes.append(
                f"{label}: not fed, a {header.kind.value} series (a rule must test kind to ask for one)"
            )
            continue
        outcome = evaluate_match(request.series, header, tolerance_deg)
        if not outcome.held:
            traces[header.series_uid].notes.append(f"{label}: not fed, {outcome.reason}")
            continue
        candidates.append(header)
    if request.select == SeriesChoice.EACH or len(candidates) <= 1:
        return candidates
    best = min(candidates, key=lambda header: _selection_key(request.select, header))
    for header in candidates:
        if header is not best:
            traces[header.series_uid].notes.append(
                f"{label}: not fed, select {request.select.value} chose series {best.describe()!r}"
            )
    return [best]


def decide(rules: Sequence[Rule], headers: Sequence[SeriesHeader], tolerance_deg: float) -> RouteDecision:
    """Apply ``rules`` to a study's series ``headers``; ``tolerance_deg`` bounds axial/sagittal/coronal."""
    decision = RouteDecision()
    traces: dict[str, SeriesTrace] = {}
    fired_on: dict[int, list[SeriesHeader]] = {id(rule): [] for rule in rules}
    for header in headers:
        trace = traces[header.series_uid] = _trace(header, tolerance_deg)
        decision.series.append(trace)
        fired = _test_series(rules, header, trace, tolerance_deg)
        if fired:
            decision.matched[header.series_uid] = [rule.name for rule in fired]
        discarding = next((rule.name for rule in fired if rule.discard), None)
        if discarding is not None:
            decision.discarded.append(header.series_uid)
            trace.notes.append(f"discarded by rule {discarding!r}: no pipeline, no forward")
            continue
        for rule in fired:
            fired_on[id(rule)].append(header)

    runs: dict[tuple[str, str], PipelineRun] = {}
    forwards: dict[tuple[str, str], Forward] = {}
    for rule in rules:
        for header in fired_on[id(rule)]:
            for destination in rule.forward_to:
                forward = forwards.setdefault(
                    (header.series_uid, destination), Forward(header.series_uid, destination)
                )
                forward.rules.append(rule.name)
        for request in rule.pipelines:
            priority = request.priority or rule.priority
            for header in _select(rule, request, fired_on[id(rule)], traces, tolerance_deg):
                key = (header.series_uid, request.name)
                run = runs.setdefault(key, PipelineRun(header.series_uid, request.name, priority))
                run.priority = min(run.priority, priority, key=lambda each: each.rank)
                run.rules.append(rule.name)
                run.results_to.extend(d for d in rule.results_to if d not in run.results_to)
    decision.runs = list(runs.values())
    decision.forwards = list(forwards.values())
    return decision
