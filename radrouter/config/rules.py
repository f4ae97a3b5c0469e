"""The schema of routing rules: what a rule may say, validated before the node starts.

Evaluation lives in :mod:`radrouter.router.rules`; this module only describes and checks rules, so
that ``radrouter config check`` rejects a bad rule with its name and the reason.
"""

from __future__ import annotations

import enum
import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydicom.datadict import keyword_dict

#: Match keys that are not DICOM keywords but facts about the association.
ASSOCIATION_KEYS = frozenset({"calling_ae", "called_ae"})


class Priority(enum.StrEnum):
    """Reading and computing urgency; maps onto Celery priorities, where 0 is served first on Redis."""

    STAT = "stat"
    URGENT = "urgent"
    ROUTINE = "routine"

    @property
    def celery_priority(self) -> int:
        return {Priority.STAT: 0, Priority.URGENT: 3, Priority.ROUTINE: 6}[self]


Scalar = str | int | float


class Condition(BaseModel):
    """One test on one attribute. A bare value in YAML means ``equals``; a bare list means ``in``.

    Strings compare case-insensitively; a missing attribute never matches (except ``exists: false``).
    """

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    equals: Scalar | None = Field(None, description="Equal to this value (strings: case-insensitive).")
    regex: str | None = Field(None, description="A Python regular expression found in the value.")
    in_: list[Scalar] | None = Field(None, alias="in", description="Equal to one of these values.")
    range: tuple[float | None, float | None] | None = Field(
        None, description="[low, high], inclusive; null for an open end."
    )
    exists: bool | None = Field(
        None, description="true: the attribute is present and not empty; false: it is not."
    )

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        if isinstance(value, bool):
            raise ValueError(
                "a bare true/false is ambiguous (YAML reads yes/no/on/off as such): use exists or quote it"
            )
        if isinstance(value, list):
            return {"in": value}
        if isinstance(value, str | int | float):
            return {"equals": value}
        return value

    @model_validator(mode="after")
    def _exactly_one_test(self) -> Condition:
        given = [
            name for name in ("equals", "regex", "in_", "range", "exists") if getattr(self, name) is not None
        ]
        if len(given) != 1:
            raise ValueError("a condition needs exactly one of equals, regex, in, range, exists")
        return self

    @field_validator("regex")
    @classmethod
    def _regex_compiles(cls, pattern: str | None) -> str | None:
        if pattern is not None:
            try:
                re.compile(pattern)
            except re.error as error:
                raise ValueError(f"invalid regular expression {pattern!r}: {error}") from error
        return pattern


class PipelineRequest(BaseModel):
    """A pipeline a rule asks for, optionally with its own priority."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, description="A pipeline name (`radrouter config check` lists them).")
    priority: Priority | None = Field(None, description="stat, urgent or routine; default: the rule's.")

    @model_validator(mode="before")
    @classmethod
    def _bare_name(cls, value: Any) -> Any:
        return {"name": value} if isinstance(value, str) else value


class Rule(BaseModel):
    """Conditions on a series' header and what to do with the series when they all hold."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, description="Names the rule in logs, the audit trail and errors.")
    match: dict[str, Condition] = Field(
        default_factory=dict,
        description="DICOM keyword (or calling_ae, called_ae) → condition; all must hold.",
    )
    pipelines: list[PipelineRequest] = Field(
        default_factory=list, description="Pipelines to run on the series."
    )
    priority: Priority = Field(Priority.ROUTINE, description="stat, urgent or routine (0, 3, 6 on Celery).")
    results_to: list[str] = Field(default_factory=list, description="Destinations that receive the results.")

    @field_validator("match")
    @classmethod
    def _known_keywords(cls, match: dict[str, Condition]) -> dict[str, Condition]:
        unknown = sorted(key for key in match if key not in keyword_dict and key not in ASSOCIATION_KEYS)
        if unknown:
            raise ValueError(
                f"not DICOM keywords: {unknown} (keywords are CamelCase, e.g. SeriesDescription)"
            )
        return match


def default_rules() -> list[Rule]:
    """3D T1-weighted brain MRI goes to brain extraction, and its results to the PACS."""
    return [
        Rule.model_validate(
            {
                "name": "brain-t1-3d",
                "match": {
                    "Modality": "MR",
                    "MRAcquisitionType": "3D",
                    "SeriesDescription": {"regex": r"(?i)(t1|mprage|bravo|spgr|tfe|tfl)"},
                },
                "pipelines": ["brain-extraction"],
                "results_to": ["pacs"],
            }
        )
    ]
