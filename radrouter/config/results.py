"""What each destination receives of a job's results, and how the key images are chosen."""

from __future__ import annotations

import enum

from pydantic import BaseModel, Field


class ResultPart(enum.StrEnum):
    """A part of a job's results that a destination can be sent."""

    SEG = "seg"
    SR = "sr"
    #: Secondary Capture slices with the outlines and a legend burned in, and a Key Object Selection
    #: pointing at them: for PACS viewers that show neither DICOM-SEG nor TID 1500 SR.
    KEY_IMAGES = "key_images"


def default_result_parts() -> list[ResultPart]:
    return [ResultPart.SEG, ResultPart.SR]


class KeyImageSettings(BaseModel):
    """The key images written for destinations whose `results` list `key_images`."""

    spread_slices: int = Field(
        2,
        ge=0,
        le=20,
        description="Per segment, slices evenly spread over its extent, besides its largest slice.",
    )
    max_images: int = Field(
        24, ge=1, le=200, description="At most this many key images per job (largest slices first)."
    )
