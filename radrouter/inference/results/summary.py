"""The index's summary of a result: the one typed contract between the pipelines and its readers.

``inference`` writes it on every SR result row; the worklist's triage, the HL7 messages and the
monitoring series read it back through this model, never by raw keys.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class MeasurementItem(BaseModel):
    """One measurement (a code is given only when the pipeline declared a standard one)."""

    name: str
    code: str | None = None
    value: float
    unit: str
    segment: str | None = None


class FindingItem(BaseModel):
    """One coded finding that is present; probability is None for a yes/no finding."""

    name: str
    code: str
    probability: float | None = None


class ResultSummary(BaseModel):
    """What a pipeline (at one model version) measured and found in one series."""

    pipeline: str
    version: str
    measurements: list[MeasurementItem] = Field(default_factory=list)
    findings: list[FindingItem] = Field(default_factory=list)

    @classmethod
    def of_row(cls, summary: dict[str, Any]) -> ResultSummary:
        """Read a result row's ``summary`` column."""
        return cls.model_validate(summary)

    def as_row(self) -> dict[str, Any]:
        """What the ``summary`` column holds."""
        return self.model_dump(mode="json")
