"""Which destinations take the Label Map Segmentation class, as their last delivery of one found.

A destination that refuses the class in negotiation (Orthanc 1.10) is sent the label map's BINARY
stand-in; the delivery records which version went (``Delivery.sent_variant``). A worker asks here
before it builds a multi-label SEG: when every destination that gets the SEG refused the class last
time, it builds the BINARY SEG alone, not a label map nobody would receive and its stand-in.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from radrouter.storage.index import Delivery, DeliveryState, Result, ResultKind, SentVariant

#: Label Map Segmentation Storage (PS3.4 B.5, 2024).
LABEL_MAP_SEGMENTATION = "1.2.840.10008.5.1.4.1.1.66.7"


def refuses_label_maps(session: Session, destination: str) -> bool:
    """Whether ``destination`` was sent the stand-in on its latest delivered label-map SEG (False when
    none was delivered to it yet: it may take them)."""
    latest = session.scalars(
        select(Delivery.sent_variant)
        .join(Result, Delivery.result_id == Result.id)
        .where(
            Delivery.destination == destination,
            Delivery.state == DeliveryState.DELIVERED,
            Result.kind == ResultKind.SEG,
            Result.sop_class_uid == LABEL_MAP_SEGMENTATION,
        )
        .order_by(Delivery.delivered_at.desc())
        .limit(1)
    ).first()
    return latest == SentVariant.STAND_IN
