"""Each result on its way as soon as it is stored: the SEG goes to its destinations while the SR is
still being built, so the destination shows the segmentation first.

A result is recorded in the index with one delivery per destination in its own transaction, then its
delivery IDs are handed off (the inference task queues them). A job that fails after its SEG was
handed off has sent that SEG; the failure is recorded as before. A job run again after its worker
died finds the results of its first attempt by SOP Instance UID (derived from the job, so the same
objects) and hands off only the deliveries still pending.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import select

from radrouter.config.results import ResultPart
from radrouter.storage.index import Delivery, DeliveryState, Index, Result, ResultKind

#: Takes the IDs of deliveries ready to be sent.
HandOff = Callable[[list[int]], None]

#: Which part of a destination's ``results`` each kind of result belongs to.
RESULT_PART = {
    ResultKind.SEG: ResultPart.SEG,
    ResultKind.SR: ResultPart.SR,
    ResultKind.KEY_IMAGE: ResultPart.KEY_IMAGES,
    ResultKind.KEY_OBJECTS: ResultPart.KEY_IMAGES,
}


@dataclass
class ResultHandOff:
    """Records a job's results one by one and hands their deliveries off at once (or keeps them)."""

    index: Index
    #: The parts of the results each destination receives.
    destinations: dict[str, set[ResultPart]]
    hand_off: HandOff | None = None
    #: Results recorded so far, by row ID.
    result_ids: list[int] = field(default_factory=list)
    #: Delivery IDs recorded but not handed off (no ``hand_off``: the caller sends them).
    kept: list[int] = field(default_factory=list)

    def record(self, result: Result) -> None:
        """Record ``result`` and its deliveries; hand the pending ones off."""
        with self.index.session() as session:
            row = session.scalars(select(Result).where(Result.sop_uid == result.sop_uid)).one_or_none()
            if row is None:
                session.add(result)
                session.flush()
                row = result
            else:  # written again by this job's next attempt, at the same place
                row.job_id, row.path, row.fallback_path = result.job_id, result.path, result.fallback_path
            by_destination = {delivery.destination: delivery for delivery in row.deliveries}
            pending: list[Delivery] = []
            for destination, parts in self.destinations.items():
                if RESULT_PART[row.kind] not in parts:
                    continue
                delivery = by_destination.get(destination)
                if delivery is None:
                    delivery = Delivery(result_id=row.id, destination=destination)
                    session.add(delivery)
                if delivery.state in (None, DeliveryState.PENDING):
                    pending.append(delivery)
            session.flush()
            ids = [delivery.id for delivery in pending]
            self.result_ids.append(row.id)
        if self.hand_off is None:
            self.kept.extend(ids)
        elif ids:
            self.hand_off(ids)
