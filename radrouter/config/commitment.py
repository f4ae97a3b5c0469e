"""The schema of Storage Commitment (PS3.4 Annex J): where the node's reports go, and how long a
delivery waits for a destination's."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class CommitmentPeer(BaseModel):
    """Where a requester that has released its association takes its N-EVENT-REPORT."""

    model_config = ConfigDict(extra="forbid")

    host: str = Field(description="Host name or address of the requester's SCP.")
    port: int = Field(ge=1, le=65535, description="DICOM port of the requester's SCP.")


class CommitmentSettings(BaseModel):
    """Storage Commitment Push Model, as SCP (modalities ask the node) and as requester (destinations)."""

    requesters: dict[str, CommitmentPeer] = Field(
        default_factory=dict,
        description="Requesters by AE title: a report whose requester has released the association is "
        "sent on a new association to this address (the node asks for the SCP role); none: on the "
        "request's association only.",
    )
    timeout_s: float = Field(
        120.0,
        gt=0,
        le=86400,
        description="How long a delivery to a destination with `storage_commitment` waits for its "
        "N-EVENT-REPORT before the attempt counts as failed.",
    )
    report_answer_timeout_s: float = Field(
        5.0,
        gt=0,
        le=600,
        description="How long a report sent on the request's own association waits for the "
        "requester's answer before it goes on a new association (a requester that released at once "
        "never answers).",
    )
