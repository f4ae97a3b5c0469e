"""The schema of routing rules: what a rule may say, validated before the node starts.

Evaluation lives in :mod:`radrouter.router.route.rules`; this module only describes and checks rules, so
that ``radrouter config check`` rejects a bad rule with its name and the reason. Nothing here is ever
evaluated as code: conditions are data (equals, regex, in, range, exists, missing) combined with
``all``, ``any`` and ``not``.
"""

from __future__ import annotations

import enum
import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydicom.datadict import keyword_dict


class SeriesKind(enum.StrEnum):
    """What a series is, derived from its header; only ``image`` series feed pipelines by default."""

    IMAGE = "image"
    LOCALIZER = "localizer"
    DOSE_REPORT = "dose_report"
    SECONDARY_CAPTURE = "secondary_capture"
    OTHER = "other"


class Orientation(enum.StrEnum):
    """The patient plane of a series' images, from ImageOrientationPatient."""

    AXIAL = "axial"
    SAGITTAL = "sagittal"
    CORONAL = "coronal"
    OBLIQUE = "oblique"


#: Match keys that are not DICOM keywords: facts about the association and values derived from the
#: header. Their names are lower case so that they can never clash with a (CamelCase) DICOM keyword.
DERIVED_KEYS: dict[str, str] = {
    "calling_ae": "AE title of the sender (calling AE) of the series.",
    "called_ae": "AE title the sender addressed (called AE).",
    "orientation": "axial, sagittal, coronal or oblique (from ImageOrientationPatient, within a tolerance).",
    "kind": "image, localizer, dose_report, secondary_capture or other (SR, SEG, PR, ...).",
    "slices": "Images in the series: instances, or the frames of one multi-frame instance.",
}

#: Values a derived key can take, where they are a closed set: a typo there is an error, not a no-match.
_DERIVED_VALUES: dict[str, set[str]] = {
    "orientation": {item.value for item in Orientation},
    "kind": {item.value for item in SeriesKind},
}


class Priority(enum.StrEnum):
    """Reading and computing urgency; maps onto Celery priorities, where 0 is served first on Redis."""

    STAT = "stat"
    URGENT = "urgent"
    ROUTINE = "routine"

    @property
    def rank(self) -> int:
        """0 is the most urgent; the order of declaration above is the one order every comparison uses."""
        return _PRIORITY_ORDER.index(self)

    @property
    def celery_priority(self) -> int:
        """Redis serves 0 first; steps of 3 leave room between classes."""
        return 3 * self.rank

    def more_urgent_than(self, other: Priority) -> bool:
        return self.rank < other.rank


_PRIORITY_ORDER: list[Priority] = list(Priority)


Scalar = str | int | float


class Condition(BaseModel):
    """One test on one attribute. A bare value in YAML means ``equals``; a bare list means ``in``.

    Strings compare case-insensitively; a missing attribute never matches (except ``exists: false``
    and ``missing: true``).
    """

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    equals: Scalar | None = Field(None, description="Equal to this value (strings: case-insensitive).")
    regex: str | None = Field(None, description="A Python regular expression found in the value.")
    in_: list[Scalar] | None = Field(None, alias="in", description="Equal to one of these values.")
    range: tuple[float | None, float | None] | None = Field(
        None,
        description="[low, high], inclusive; null for an open end (ages in years, dates as YYYYMMDD).",
    )
    exists: bool | None = Field(
        None, description="true: the attribute is present and not empty; false: it is not."
    )
    missing: bool | None = Field(None, description="true: the attribute is absent or empty.")

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
        if len(self.tests()) != 1:
            raise ValueError("a condition needs exactly one of equals, regex, in, range, exists, missing")
        return self

    def tests(self) -> list[str]:
        names = ("equals", "regex", "in_", "range", "exists", "missing")
        return [name for name in names if getattr(self, name) is not None]

    def expected_values(self) -> list[Scalar]:
        """The literal values this condition compares with (equals and in)."""
        return [self.equals] if self.equals is not None else list(self.in_ or [])

    @field_validator("regex")
    @classmethod
    def _regex_compiles(cls, pattern: str | None) -> str | None:
        if pattern is not None:
            try:
                re.compile(pattern)
            except re.error as error:
                raise ValueError(f"invalid regular expression {pattern!r}: {error}") from error
        return pattern


class Match(BaseModel):
    """Conditions that must all hold: ``Keyword: condition`` entries, plus ``all``, ``any``, ``not``.

    In YAML it is one flat mapping, e.g. ``{Modality: CT, any: [{...}, {...}], not: {kind: localizer}}``.
    An empty match holds for every series.
    """

    model_config = ConfigDict(extra="allow", populate_by_name=True)
    __pydantic_extra__: dict[str, Condition] = Field(init=False)

    all_: list[Match] = Field(
        default_factory=list, alias="all", description="A list of matches that must all hold."
    )
    any_: list[Match] = Field(
        default_factory=list, alias="any", description="A list of matches of which one must hold."
    )
    not_: Match | None = Field(None, alias="not", description="A match that must not hold.")

    @property
    def conditions(self) -> dict[str, Condition]:
        return dict(self.__pydantic_extra__)

    @model_validator(mode="after")
    def _known_keys(self) -> Match:
        known = keyword_dict.keys() | DERIVED_KEYS.keys()
        unknown = sorted(key for key in self.conditions if key not in known)
        if unknown:
            raise ValueError(
                f"not DICOM keywords: {unknown} (keywords are CamelCase, e.g. SeriesDescription; "
                f"other keys: {sorted(DERIVED_KEYS)}, all, any, not)"
            )
        for key, allowed in _DERIVED_VALUES.items():
            condition = self.conditions.get(key)
            wrong = [v for v in (condition.expected_values() if condition else []) if str(v) not in allowed]
            if wrong:
                raise ValueError(f"{key} cannot be {wrong}; it is one of {sorted(allowed)}")
        if any(group.is_empty() for group in self.any_):
            raise ValueError("an alternative in any is empty, so it would always hold")
        return self

    def is_empty(self) -> bool:
        return not (self.conditions or self.all_ or self.any_ or self.not_)

    def mentions(self, key: str) -> bool:
        """Whether ``key`` is tested anywhere in this match (e.g. a rule that asks for localizers)."""
        groups = [*self.all_, *self.any_, *([self.not_] if self.not_ else [])]
        return key in self.conditions or any(group.mentions(key) for group in groups)


class Completion(enum.StrEnum):
    """When a rule is applied: once the whole study is complete, or as soon as each series is."""

    STUDY = "study"
    SERIES = "series"


class SeriesChoice(enum.StrEnum):
    """Which of a pipeline's candidate series it runs on."""

    EACH = "each"
    THINNEST = "thinnest"
    MOST_SLICES = "most_slices"


class PipelineRequest(BaseModel):
    """A pipeline a rule asks for: its priority, and which of the matching series feed it."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, description="A pipeline name (`radrouter config check` lists them).")
    priority: Priority | None = Field(None, description="stat, urgent or routine; default: the rule's.")
    series: Match = Field(
        default_factory=Match,
        description="Further conditions a matching series must meet to feed this pipeline.",
    )
    select: SeriesChoice = Field(
        SeriesChoice.EACH,
        description=(
            "each: every candidate series; thinnest: the one with the smallest SliceThickness; "
            "most_slices: the one with the most images. Ties go to more slices, then lower SeriesNumber."
        ),
    )

    @model_validator(mode="before")
    @classmethod
    def _bare_name(cls, value: Any) -> Any:
        return {"name": value} if isinstance(value, str) else value


class RuleRetention(BaseModel):
    """How long the studies a rule matched keep their files, instead of ``retention.keep_*_h``."""

    model_config = ConfigDict(extra="forbid")

    keep_images_h: float | None = Field(
        None,
        ge=0,
        description="Hours the received instances of a study this rule matched stay once it is finished; "
        "the longest of the matching rules wins; default: retention.keep_images_h.",
    )
    keep_results_h: float | None = Field(
        None,
        ge=0,
        description="Hours its results stay; the longest of the matching rules wins; default: "
        "retention.keep_results_h.",
    )

    @model_validator(mode="after")
    def _says_something(self) -> RuleRetention:
        if self.keep_images_h is None and self.keep_results_h is None:
            raise ValueError("retention needs keep_images_h or keep_results_h")
        return self


class Rule(BaseModel):
    """Conditions on a series' header and what to do with the series when they all hold."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, description="Names the rule in logs, the audit trail and errors.")
    match: Match = Field(
        default_factory=Match,
        description="DICOM keyword (or a derived key) → condition, plus all/any/not groups; all must hold.",
    )
    pipelines: list[PipelineRequest] = Field(
        default_factory=list, description="Pipelines to run on the series."
    )
    priority: Priority = Field(
        Priority.ROUTINE,
        description="stat, urgent or routine: Celery priority (0, 3, 6) and the study's reading class.",
    )
    results_to: list[str] = Field(default_factory=list, description="Destinations that receive the results.")
    forward_to: list[str] = Field(
        default_factory=list,
        description="Destinations that receive the series' original instances, byte-for-byte.",
    )
    discard: bool = Field(
        False, description="Drop the series: no pipeline or forward from any rule, no default rule."
    )
    stop: bool = Field(False, description="When this rule matches a series, later rules are not tested.")
    default: bool = Field(False, description="Apply only to series that no other (non-default) rule matched.")
    completion: Completion = Field(
        Completion.STUDY,
        description="study: apply once the study is complete; series: apply to each series as soon as it"
        " is quiet, while the study's other series still arrive (select then sees one series at a time).",
    )
    retention: RuleRetention | None = Field(
        None,
        description="keep_images_h, keep_results_h: how long the studies this rule matched keep their "
        "files (e.g. research studies longer); the longest of the matching rules wins.",
    )

    @model_validator(mode="after")
    def _actions_make_sense(self) -> Rule:
        if self.discard and (self.pipelines or self.forward_to or self.results_to):
            raise ValueError("discard cannot be combined with pipelines, forward_to or results_to")
        # A priority alone is an action too: it sets the study's class on the reading list; and so is a
        # retention alone (how long the study's files stay).
        acts = self.discard or self.pipelines or self.forward_to or self.retention is not None
        if not (acts or "priority" in self.model_fields_set):
            raise ValueError("a rule needs an action: pipelines, forward_to, discard, priority or retention")
        if self.results_to and not self.pipelines:
            raise ValueError("results_to needs pipelines whose results it receives")
        return self


def rule_retention(matched: list[Rule]) -> tuple[float | None, float | None]:
    """The keep times (images, results, in hours) the rules that matched a study ask for: the longest
    of those that say one; None where none does (the global ``retention`` setting applies)."""
    images = [
        r.retention.keep_images_h for r in matched if r.retention and r.retention.keep_images_h is not None
    ]
    results = [
        r.retention.keep_results_h for r in matched if r.retention and r.retention.keep_results_h is not None
    ]
    return (max(images) if images else None, max(results) if results else None)


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
