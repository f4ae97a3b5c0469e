"""The schema of de-identification for destinations marked external (DICOM PS3.15 Annex E)."""

from __future__ import annotations

import enum

from pydantic import BaseModel, ConfigDict, Field, SecretStr


class DateHandling(enum.StrEnum):
    """What happens to dates (PS3.15 E.3.6 Retain Longitudinal Temporal Information options)."""

    REMOVE = "remove"  #: the Basic Profile alone: dates emptied or replaced with dummies
    SHIFT = "shift"  #: Modified Dates Option: every date moved back by a per-patient keyed offset
    KEEP = "keep"  #: Full Dates Option: dates and times kept as they are


class Deidentification(BaseModel):
    """How the Basic Application Level Confidentiality Profile is applied on the way to a destination."""

    model_config = ConfigDict(extra="forbid")

    key: SecretStr = Field(
        min_length=16,
        description="Secret key of the keyed pseudonyms, UIDs and date offsets (HMAC-SHA256); the same "
        "key maps the same patient to the same pseudonym across studies.",
    )
    retain_uids: bool = Field(
        False,
        description="Keep study, series and instance UIDs (Retain UIDs Option), not remap them.",
    )
    dates: DateHandling = Field(
        DateHandling.SHIFT, description="Dates removed, shifted by a per-patient keyed offset, or kept."
    )
    max_date_shift_days: int = Field(
        365, ge=1, description="Dates are shifted back by 1 to this many days, the same for all of a patient."
    )
