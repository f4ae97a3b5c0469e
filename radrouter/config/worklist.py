"""The schema of the worklist: triage rules over AI results, waiting-time caps, and the RIS over HL7.

Evaluation lives in :mod:`radrouter.worklist.triage`; this module only describes and checks, so that
``radrouter config check`` rejects a bad triage rule with its name and the reason.
"""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field, model_validator

from radrouter.config.rules import Priority

_CODE = re.compile(r"^[A-Za-z0-9_.-]+:[^:\s]+$")


class FindingMatch(BaseModel):
    """A coded finding a pipeline reported, e.g. ``SCT:50960005`` (haemorrhage)."""

    model_config = ConfigDict(extra="forbid")

    code: str = Field(description="SCHEME:VALUE, e.g. SCT:50960005.")
    min_probability: float | None = Field(
        None, ge=0, le=1, description="Lowest probability that counts; none: any reported finding."
    )

    @model_validator(mode="after")
    def _code_has_a_scheme(self) -> FindingMatch:
        if not _CODE.match(self.code):
            raise ValueError(f"finding code {self.code!r} must be SCHEME:VALUE, e.g. SCT:50960005")
        return self


class MeasurementMatch(BaseModel):
    """A named measurement compared with thresholds, e.g. ``Brain volume`` above 1800 mL."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, description="The measurement's name, as the pipeline reports it.")
    above: float | None = Field(None, description="Matches a value strictly above this.")
    below: float | None = Field(None, description="Matches a value strictly below this.")

    @model_validator(mode="after")
    def _one_threshold(self) -> MeasurementMatch:
        if self.above is None and self.below is None:
            raise ValueError("a measurement condition needs above, below, or both")
        return self


class TriageRule(BaseModel):
    """One pipeline's finding or measurement that sets a study's reading priority."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, description="Names the rule in the worklist and the audit trail.")
    pipeline: str = Field(min_length=1, description="The pipeline whose result the rule reads.")
    finding: FindingMatch | None = Field(None, description="A coded finding to look for.")
    measurement: MeasurementMatch | None = Field(None, description="A measurement and its thresholds.")
    priority: Priority = Field(Priority.URGENT, description="The class a matching study moves up to.")
    reason: str = Field(min_length=1, max_length=200, description="Shown on the worklist and sent to RIS.")

    @model_validator(mode="after")
    def _exactly_one_test(self) -> TriageRule:
        if (self.finding is None) == (self.measurement is None):
            raise ValueError("a triage rule needs exactly one of finding, measurement")
        return self


class Hl7Settings(BaseModel):
    """The RIS that receives results (ORU^R01) and priority updates (OMI^O23) over MLLP."""

    host: str = Field("", description="RIS host; empty means no HL7 is sent.")
    port: int = Field(2575, ge=1, le=65535, description="MLLP port of the RIS.")
    sending_application: str = Field("RADROUTER", description="MSH-3.")
    sending_facility: str = Field("", description="MSH-4.")
    receiving_application: str = Field("RIS", description="MSH-5.")
    receiving_facility: str = Field("", description="MSH-6.")
    max_attempts: int = Field(8, ge=1, description="Attempts before a message is marked FAILED.")
    backoff_initial_s: float = Field(1.0, gt=0, description="Wait before the first resend.")
    backoff_max_s: float = Field(120.0, gt=0, description="Longest wait between resends.")
    timeout_s: float = Field(10.0, gt=0, description="Connect and ACK timeout of one attempt.")


class WorklistSettings(BaseModel):
    """The reading list: how results change priority, and how long each class may wait at most."""

    max_wait_stat_min: float = Field(30, gt=0, description="A STAT study is read next once it waited this.")
    max_wait_urgent_min: float = Field(
        120, gt=0, description="An URGENT study is read next once it waited this."
    )
    max_wait_routine_min: float = Field(
        480, gt=0, description="A ROUTINE study is read next once it waited this (no starvation)."
    )
    triage_rules: list[TriageRule] = Field(
        default_factory=list, description="Results that move studies up the worklist."
    )
    hl7: Hl7Settings = Hl7Settings()

    def max_wait_s(self) -> dict[Priority, float]:
        return {
            Priority.STAT: self.max_wait_stat_min * 60,
            Priority.URGENT: self.max_wait_urgent_min * 60,
            Priority.ROUTINE: self.max_wait_routine_min * 60,
        }
