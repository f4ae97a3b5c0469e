"""One delivery as the API, the dashboard and the CLI show it: UIDs, destination, state and attempts."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel

from radrouter.storage.index import Delivery, DeliveryState, ResultKind, SentVariant, utc_iso

ORIGINAL_SERIES = "original series"


class DeliveryView(BaseModel):
    """A delivery without patient data: what it sends (a result's kind, or a series' originals), where to,
    how it stands."""

    id: int
    study_uid: str
    kind: ResultKind | Literal["original series"]
    result_id: int | None
    result_sop_uid: str | None
    series_uid: str | None
    revision: int | None
    rule: str | None
    destination: str
    state: DeliveryState
    attempts: int
    last_error: str | None
    sent_sop_class_uid: str | None
    sent_variant: SentVariant | None
    pending_since: str | None
    delivered_at: str | None

    @classmethod
    def of(cls, delivery: Delivery) -> DeliveryView:
        result = delivery.result
        return cls(
            id=delivery.id,
            study_uid=delivery.owning_study_uid,
            kind=result.kind if result is not None else ORIGINAL_SERIES,
            result_id=delivery.result_id,
            result_sop_uid=result.sop_uid if result is not None else None,
            series_uid=delivery.series_uid,
            revision=delivery.revision,
            rule=delivery.rule,
            destination=delivery.destination,
            state=delivery.state,
            attempts=delivery.attempts,
            last_error=delivery.last_error,
            sent_sop_class_uid=delivery.sent_sop_class_uid,
            sent_variant=delivery.sent_variant,
            pending_since=utc_iso(delivery.pending_since),
            delivered_at=utc_iso(delivery.delivered_at),
        )

    def as_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json")
