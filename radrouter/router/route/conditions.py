"""Tests a rule's conditions on a series header and says why each one held or failed.

Every outcome comes with a reason in words, which the rule tester and the routing API show. A missing
attribute or an odd value (``***`` in an age or a date) makes a condition fail, never raise.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache

from radrouter.config.rules import Condition, Match
from radrouter.router.route.header import SeriesHeader, Value, values_of

#: Attributes that identify the patient: the tester names them but never prints their values.
IDENTIFYING = frozenset(
    {
        "PatientName",
        "PatientID",
        "PatientBirthDate",
        "OtherPatientIDs",
        "OtherPatientNames",
        "PatientAddress",
        "PatientTelephoneNumbers",
        "PatientMotherBirthName",
        "IssuerOfPatientID",
        "AccessionNumber",
        "ReferringPhysicianName",
    }
)
_AGE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([DWMY]?)\s*$", re.IGNORECASE)
_DAYS_PER_UNIT = {"D": 1.0, "W": 7.0, "M": 365.25 / 12, "Y": 365.25, "": 365.25}


@dataclass(frozen=True)
class Outcome:
    """Whether a condition (or group) held, and why, in words."""

    held: bool
    reason: str
    failed: list[str] = field(default_factory=list)


@lru_cache(maxsize=512)
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def _number(key: str, value: Value) -> float | None:
    """A value as a number; ages (AS, e.g. ``041Y``) in years. None when it is not a number."""
    if isinstance(value, int | float):
        return float(value)
    if key == "PatientAge" or key.endswith("Age"):
        age = _AGE.match(value)
        return float(age.group(1)) * _DAYS_PER_UNIT[age.group(2).upper()] / 365.25 if age else None
    try:
        return float(value)
    except ValueError:
        return None


def _equal(key: str, actual: Value, expected: str | float) -> bool:
    if isinstance(expected, str):
        return str(actual).strip().casefold() == expected.strip().casefold()
    number = _number(key, actual)
    return number is not None and number == float(expected)


def _shown(key: str, values: list[Value]) -> str:
    if key in IDENTIFYING:
        return "(value hidden)"
    text = "\\".join(f"{v:g}" if isinstance(v, float) else str(v) for v in values)
    return repr(text if len(text) <= 60 else text[:57] + "...")


def evaluate_condition(key: str, condition: Condition, values: list[Value] | None) -> Outcome:
    """Whether ``condition`` holds for an attribute's ``values`` (None when the attribute is missing)."""
    present = values is not None
    if condition.exists is not None or condition.missing is not None:
        wanted = condition.exists if condition.exists is not None else not condition.missing
        state = "present" if present else "missing"
        return Outcome(present == wanted, f"{key} is {state}")
    if values is None:
        return Outcome(False, f"{key} is missing")
    shown = f"{key} = {_shown(key, values)}"
    if condition.equals is not None or condition.in_ is not None:
        expected = condition.expected_values()
        held = any(_equal(key, value, wanted) for value in values for wanted in expected)
        target = f"{expected[0]!r}" if condition.equals is not None else f"one of {expected}"
        return Outcome(held, f"{shown} {'equals' if held else 'is not'} {target}")
    if condition.regex is not None:
        pattern = _compiled(condition.regex)
        held = any(pattern.search(str(value)) for value in values)
        return Outcome(held, f"{shown} {'matches' if held else 'does not match'} /{condition.regex}/")
    assert condition.range is not None
    low, high = condition.range
    numbers = [_number(key, value) for value in values]
    if all(number is None for number in numbers):
        return Outcome(False, f"{shown} is not a number")
    held = any(n is not None and (low is None or n >= low) and (high is None or n <= high) for n in numbers)
    bounds = f"[{'-inf' if low is None else f'{low:g}'}, {'inf' if high is None else f'{high:g}'}]"
    return Outcome(held, f"{shown} {'is within' if held else 'is outside'} {bounds}")


def evaluate_match(match: Match, header: SeriesHeader, tolerance_deg: float) -> Outcome:
    """All conditions and groups of ``match``; ``failed`` lists the reason of each failed part."""
    passed: list[str] = []
    failed: list[str] = []
    for key, condition in match.conditions.items():
        outcome = evaluate_condition(key, condition, values_of(header, key, tolerance_deg))
        (passed if outcome.held else failed).append(outcome.reason)
    for group in match.all_:
        outcome = evaluate_match(group, header, tolerance_deg)
        (passed if outcome.held else failed).extend([outcome.reason] if outcome.held else outcome.failed)
    if match.any_:
        alternatives = [evaluate_match(group, header, tolerance_deg) for group in match.any_]
        held = next((outcome for outcome in alternatives if outcome.held), None)
        if held is not None:
            passed.append(f"any: {held.reason}")
        else:
            failed.append("none of any: " + " | ".join("; ".join(o.failed) for o in alternatives))
    if match.not_ is not None:
        outcome = evaluate_match(match.not_, header, tolerance_deg)
        (failed if outcome.held else passed).append(f"not ({outcome.reason})")
    if failed:
        return Outcome(False, "; ".join(failed), failed)
    return Outcome(True, "; ".join(passed) or "no conditions: every series")
