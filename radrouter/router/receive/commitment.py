"""The Storage Commitment Push Model SCP (PS3.4 Annex J) on the node's port, and the reports the
node's own commitment requests get back on a new association.

A modality asks (N-ACTION) before it deletes its copies; the node answers the request at once and,
once that answer is sent, reports (N-EVENT-REPORT) which instances it holds durably stored and
indexed, and which not with their reason: on the request's association while it is open, else on a
new one to the requester's address in ``commitment.requesters``.
"""

from __future__ import annotations

import enum
import logging
import threading
from dataclasses import dataclass
from typing import Any

from pydicom import Dataset
from pydicom.sequence import Sequence
from pynetdicom import AE, build_role
from pynetdicom.dimse_messages import N_ACTION_RSP

from radrouter.config.settings import Settings
from radrouter.router.deliver.commitment import COMMITMENT_INSTANCE, COMMITMENT_SOP_CLASS, record_report
from radrouter.storage.commitments import Kept, kept
from radrouter.storage.index import Index
from radrouter.storage.store import InstanceStore

log = logging.getLogger(__name__)

REQUEST_COMMITMENT = 1  # Action Type ID


class ReportType(enum.IntEnum):
    """Event Type ID of the N-EVENT-REPORT (PS3.4 J.3.3)."""

    ALL_COMMITTED = 1
    FAILURES = 2


class ActionStatus(enum.IntEnum):
    """The N-ACTION statuses the SCP answers (PS3.7 C.4, PS3.4 J.3.2)."""

    SUCCESS = 0x0000
    PROCESSING_FAILURE = 0x0110
    INVALID_ARGUMENT_VALUE = 0x0115
    MISSING_ATTRIBUTE = 0x0120
    NO_SUCH_ACTION_TYPE = 0x0123


class FailureReason(enum.IntEnum):
    """Failure Reason (0008,1197) of an instance the node does not commit (PS3.4 J.3.3.1)."""

    PROCESSING_FAILURE = 0x0110
    NO_SUCH_OBJECT_INSTANCE = 0x0112
    CLASS_INSTANCE_CONFLICT = 0x0119


_REASONS = {
    Kept.ABSENT: FailureReason.NO_SUCH_OBJECT_INSTANCE,
    Kept.OTHER_CLASS: FailureReason.CLASS_INSTANCE_CONFLICT,
    Kept.NOT_DURABLE: FailureReason.PROCESSING_FAILURE,  # storage.fsync is off
}


@dataclass(frozen=True)
class _Request:
    transaction_uid: str
    references: list[tuple[str, str]]
    requester: str


def report(
    transaction_uid: str, references: list[tuple[str, str]], answers: list[Kept]
) -> tuple[int, Dataset]:
    """The N-EVENT-REPORT's event type and information for ``references`` as the node holds them."""
    info = Dataset()
    info.TransactionUID = transaction_uid
    committed, failed = [], []
    for (sop_class, uid), held in zip(references, answers, strict=True):
        item = Dataset()
        item.ReferencedSOPClassUID, item.ReferencedSOPInstanceUID = sop_class, uid
        if held == Kept.STORED:
            committed.append(item)
        else:
            item.FailureReason = int(_REASONS[held])
            failed.append(item)
    if committed:
        info.ReferencedSOPSequence = Sequence(committed)
    if failed:
        info.FailedSOPSequence = Sequence(failed)
    return (ReportType.FAILURES if failed else ReportType.ALL_COMMITTED), info


class CommitmentSCP:
    """The N-ACTION handler, the hook that reports once its answer is sent, and report reception."""

    def __init__(self, settings: Settings, store: InstanceStore, index: Index) -> None:
        self.settings = settings
        self.store = store
        self.index = index
        self._answered: dict[int, list[_Request]] = {}  # per association: requests whose answer is due
        self._lock = threading.Lock()

    def handle_action(self, event: Any) -> tuple[int, Dataset | None]:
        if event.action_type != REQUEST_COMMITMENT:
            return ActionStatus.NO_SUCH_ACTION_TYPE, None
        try:
            info: Dataset = event.action_information
            transaction_uid = str(info.TransactionUID)
            references = [
                (str(item.ReferencedSOPClassUID), str(item.ReferencedSOPInstanceUID))
                for item in info.ReferencedSOPSequence
            ]
        except (AttributeError, KeyError):
            return ActionStatus.MISSING_ATTRIBUTE, None
        except Exception:  # an action information that cannot be decoded
            return ActionStatus.INVALID_ARGUMENT_VALUE, None
        if not references:
            return ActionStatus.MISSING_ATTRIBUTE, None
        request = _Request(transaction_uid, references, event.assoc.requestor.ae_title)
        with self._lock:
            self._answered.setdefault(id(event.assoc), []).append(request)
        log.info("storage commitment %s asked for %d instance(s)", transaction_uid, len(references))
        return ActionStatus.SUCCESS, None

    def answer_sent(self, event: Any) -> None:
        """EVT_DIMSE_SENT: once the N-ACTION answer is out, report from a thread of its own (the
        association's own thread must stay free to read the report's response)."""
        if not isinstance(event.message, N_ACTION_RSP):
            return
        with self._lock:
            due = self._answered.get(id(event.assoc))
            request = due.pop(0) if due else None
            if due == []:
                del self._answered[id(event.assoc)]
        if request is not None:
            threading.Thread(
                target=self._report, args=(event.assoc, request), name="commitment-report", daemon=True
            ).start()

    def _report(self, assoc: Any, request: _Request) -> None:
        event_type, info = report(
            request.transaction_uid, request.references, kept(self.index, self.store, request.references)
        )
        if assoc.is_established:
            # A requester releasing just after our N-ACTION answer never answers the report: wait for
            # it briefly, not for the whole DIMSE timeout, before the new association.
            assoc.dimse_timeout = self.settings.commitment.report_answer_timeout_s
            status = assoc.send_n_event_report(info, event_type, COMMITMENT_SOP_CLASS, COMMITMENT_INSTANCE)
            if getattr(status, "Status", None) == 0x0000:
                return  # else (no answer, or refused on this association): on a new one
        peer = self.settings.commitment.requesters.get(request.requester)
        if peer is None:
            log.error(
                "storage commitment %s: the requester %s released before its report, and "
                "commitment.requesters names no address for it",
                request.transaction_uid,
                request.requester,
            )
            return
        ae = AE(ae_title=self.settings.node.ae_title)
        ae.add_requested_context(COMMITMENT_SOP_CLASS)
        role = build_role(COMMITMENT_SOP_CLASS, scu_role=False, scp_role=True)
        reply = ae.associate(peer.host, peer.port, ae_title=request.requester, ext_neg=[role])
        if not reply.is_established:
            log.error(
                "storage commitment %s: cannot reach %s to report", request.transaction_uid, request.requester
            )
            return
        try:
            reply.send_n_event_report(info, event_type, COMMITMENT_SOP_CLASS, COMMITMENT_INSTANCE)
        finally:
            reply.release()

    def handle_report(self, event: Any) -> tuple[int, Dataset | None]:
        """A destination's report of a commitment the node asked for, on a new association."""
        return record_report(self.index, event.event_information), None
