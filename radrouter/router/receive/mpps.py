"""The Modality Performed Procedure Step SCP (PS3.4 Annex F): N-CREATE and N-SET on the node's port.

Each step is recorded in the index (``storage/steps.py``, UIDs and status only) before the answer,
and the assembler is told, so a study completes when its modality says it is done instead of when a
timer guesses so; then it is forwarded to the destinations with ``forward_mpps``.
"""

from __future__ import annotations

import enum
import logging
from typing import Any

from pydicom import Dataset
from sqlalchemy.exc import SQLAlchemyError

from radrouter.logs import study
from radrouter.router.assemble import ArrivalSink
from radrouter.router.deliver.mpps_forward import MPPS_SOP_CLASS, StepForwarder, StepMessage
from radrouter.storage.steps import StepBook, StepChange, StepStatus
from radrouter.storage.store import InvalidUID, validate_uid

log = logging.getLogger(__name__)

__all__ = ["MPPS_SOP_CLASS", "PerformedStepSCP", "StepStatusCode"]


class StepStatusCode(enum.IntEnum):
    """The N-CREATE and N-SET statuses the MPPS SCP answers (PS3.4 F.7.2, PS3.7 C.4)."""

    SUCCESS = 0x0000
    PROCESSING_FAILURE = 0x0110  # also: a COMPLETED or DISCONTINUED step may no longer be updated
    DUPLICATE_INSTANCE = 0x0111
    NO_SUCH_INSTANCE = 0x0112
    INVALID_ATTRIBUTE_VALUE = 0x0106
    MISSING_ATTRIBUTE = 0x0120


_ANSWERS = {
    StepChange.RECORDED: StepStatusCode.SUCCESS,
    StepChange.DUPLICATE: StepStatusCode.DUPLICATE_INSTANCE,
    StepChange.NO_SUCH_STEP: StepStatusCode.NO_SUCH_INSTANCE,
    StepChange.ENDED: StepStatusCode.PROCESSING_FAILURE,
}


def _status(code: StepStatusCode, comment: str | None = None) -> Dataset:
    answer = Dataset()
    answer.Status = int(code)
    if comment:
        answer.ErrorComment = comment[:64]
    return answer


def performed_instances(attributes: Dataset) -> dict[str, list[str]] | None:
    """Performed Series Sequence as series UID → its listed SOP Instance UIDs; None when absent."""
    if "PerformedSeriesSequence" not in attributes:
        return None
    performed: dict[str, list[str]] = {}
    for series in attributes.PerformedSeriesSequence:
        uids = performed.setdefault(validate_uid(str(series.SeriesInstanceUID), "SeriesInstanceUID"), [])
        for keyword in ("ReferencedImageSequence", "ReferencedNonImageCompositeSOPInstanceSequence"):
            for item in series.get(keyword, []):
                uids.append(validate_uid(str(item.ReferencedSOPInstanceUID), "ReferencedSOPInstanceUID"))
    return performed


class PerformedStepSCP:
    """The N-CREATE and N-SET handlers; each returns its status and the attributes it recorded."""

    def __init__(self, steps: StepBook, arrivals: ArrivalSink, forwarder: StepForwarder) -> None:
        self.steps = steps
        self.arrivals = arrivals
        self.forwarder = forwarder

    def handle_create(self, event: Any) -> tuple[Dataset, Dataset | None]:
        uid = event.request.AffectedSOPInstanceUID
        if uid is None:
            return _status(StepStatusCode.MISSING_ATTRIBUTE, "no Affected SOP Instance UID"), None
        attributes: Dataset = event.attribute_list
        status = str(attributes.get("PerformedProcedureStepStatus", ""))
        if status != StepStatus.IN_PROGRESS:
            return _status(StepStatusCode.INVALID_ATTRIBUTE_VALUE, "a step starts IN PROGRESS"), None
        scheduled = attributes.get("ScheduledStepAttributesSequence") or []
        if not scheduled or not scheduled[0].get("StudyInstanceUID"):
            return _status(StepStatusCode.MISSING_ATTRIBUTE, "no Study Instance UID"), None
        try:
            study_uid = validate_uid(str(scheduled[0].StudyInstanceUID), "StudyInstanceUID")
            change = self.steps.create(validate_uid(str(uid)), study_uid, event.assoc.requestor.ae_title)
        except InvalidUID as error:
            return _status(StepStatusCode.INVALID_ATTRIBUTE_VALUE, str(error)), None
        except SQLAlchemyError:
            log.exception("cannot record MPPS %s", uid)
            return _status(StepStatusCode.PROCESSING_FAILURE), None
        return self._answer(change, study_uid, StepMessage(True, str(uid), attributes))

    def handle_set(self, event: Any) -> tuple[Dataset, Dataset | None]:
        uid = str(event.request.RequestedSOPInstanceUID)
        attributes: Dataset = event.attribute_list
        status = attributes.get("PerformedProcedureStepStatus")
        if status is not None and status not in set(StepStatus):
            return _status(StepStatusCode.INVALID_ATTRIBUTE_VALUE, f"no status {status!r}"), None
        try:
            change, study_uid = self.steps.update(
                uid, StepStatus(status) if status else None, performed_instances(attributes)
            )
        except InvalidUID as error:
            return _status(StepStatusCode.INVALID_ATTRIBUTE_VALUE, str(error)), None
        except AttributeError as error:  # a performed series or instance without its UID
            return _status(StepStatusCode.MISSING_ATTRIBUTE, str(error)), None
        except SQLAlchemyError:
            log.exception("cannot record MPPS %s", uid)
            return _status(StepStatusCode.PROCESSING_FAILURE), None
        return self._answer(change, study_uid, StepMessage(False, uid, attributes))

    def _answer(
        self, change: StepChange, study_uid: str | None, message: StepMessage
    ) -> tuple[Dataset, Dataset | None]:
        uid, attributes = message.uid, message.attributes
        code = _ANSWERS[change]
        if code != StepStatusCode.SUCCESS:
            log.warning("MPPS %s refused: %s", uid, change.name)
            comment = (
                "the step has ended; it may no longer be updated" if change == StepChange.ENDED else None
            )
            return _status(code, comment), None
        assert study_uid is not None  # a recorded step has its study
        log.info(
            "MPPS %s %s",
            uid,
            attributes.get("PerformedProcedureStepStatus", "updated"),
            extra=study(study_uid),
        )
        self.arrivals.steps_changed(study_uid)
        self.forwarder.forward(message)
        return _status(code), attributes
