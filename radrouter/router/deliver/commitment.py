"""Storage Commitment as requester: a delivery to a destination with ``storage_commitment`` is done
only once the destination reports every instance sent as committed.

The request (N-ACTION) goes on an association of its own, which stays open for the report; a
destination that reports on a new association to the node instead (Orthanc does) reaches the node's
SCP (``router/receive/commitment.py``), which records the report in the index where this waits.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence as Sequence_
from functools import partial
from pathlib import Path
from typing import Any

import pydicom
from pydicom import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import UID, generate_uid
from pynetdicom import AE, evt
from pynetdicom.sop_class import StorageCommitmentPushModel  # type: ignore[attr-defined]

from radrouter.config.settings import Destination
from radrouter.router.deliver.scu import DeliveryError, OutgoingObject, Sent
from radrouter.router.transport import NODELAY_HANDLER
from radrouter.storage.commitments import answer, ask, wait_for_answer
from radrouter.storage.index import Index

log = logging.getLogger(__name__)

COMMITMENT_SOP_CLASS = UID(StorageCommitmentPushModel)
#: The Storage Commitment Push Model SOP Instance (well-known, PS3.4 J.3.5).
COMMITMENT_INSTANCE = UID("1.2.840.10008.1.20.1.1")
REQUEST_COMMITMENT = 1  # Action Type ID


class NotCommitted(DeliveryError):
    """The destination did not commit every instance sent, or did not report in time; retried."""


def record_report(index: Index, info: Dataset) -> int:
    """Record a destination's report in the index, where the waiting delivery finds it; the status to
    answer it with (0x0110, processing failure, for a transaction the node never asked for)."""
    failed = [
        {
            "uid": str(item.ReferencedSOPInstanceUID),
            "reason": f"0x{int(item.get('FailureReason', 0x0110)):04X}",
        }
        for item in info.get("FailedSOPSequence", [])
    ]
    return 0x0000 if answer(index, str(info.TransactionUID), failed) else 0x0110


def sent_references(objects: Sequence_[OutgoingObject], sent: Sequence_[Sent]) -> list[tuple[str, str]]:
    """(SOP Class UID, SOP Instance UID) of each file sent: the object, or its stand-in where the
    destination took the stand-in."""
    references = []
    for outgoing, item in zip(objects, sent, strict=True):
        path = (
            outgoing.fallback_path if item.stand_in and outgoing.fallback_path is not None else outgoing.path
        )
        meta = _meta(path)
        references.append((str(meta.MediaStorageSOPClassUID), str(meta.MediaStorageSOPInstanceUID)))
    return references


def _meta(path: Path) -> Dataset:
    return pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["SOPInstanceUID"]).file_meta


def request_commitment(
    name: str,
    destination: Destination,
    references: list[tuple[str, str]],
    calling_ae: str,
    index: Index,
    timeout_s: float,
) -> str:
    """Ask ``destination`` to commit ``references``; return the transaction UID once all are committed."""
    transaction_uid = generate_uid()
    ask(index, transaction_uid, name, [uid for _class, uid in references])
    info = Dataset()
    info.TransactionUID = transaction_uid
    items = []
    for sop_class, uid in references:
        item = Dataset()
        item.ReferencedSOPClassUID, item.ReferencedSOPInstanceUID = sop_class, uid
        items.append(item)
    info.ReferencedSOPSequence = Sequence(items)

    ae = AE(ae_title=calling_ae)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = timeout_s
    ae.add_requested_context(COMMITMENT_SOP_CLASS)
    handlers: list[Any] = [NODELAY_HANDLER, (evt.EVT_N_EVENT_REPORT, partial(_report_here, index))]
    assoc = ae.associate(
        destination.host, destination.port, ae_title=destination.ae_title, evt_handlers=handlers
    )
    if not assoc.is_established:
        raise NotCommitted(f"no association with {destination.ae_title} for storage commitment")
    try:
        status = assoc.send_n_action(info, REQUEST_COMMITMENT, COMMITMENT_SOP_CLASS, COMMITMENT_INSTANCE)[0]
        code = getattr(status, "Status", None)
        if code != 0x0000:
            raise NotCommitted(f"{destination.ae_title} answered the commitment request with {code}")
        result = wait_for_answer(index, transaction_uid, timeout_s)
    finally:
        if assoc.is_established:
            assoc.release()
    if result is None:
        raise NotCommitted(f"{destination.ae_title} sent no commitment report within {timeout_s} s")
    if result.failed:
        reasons = sorted({item["reason"] for item in result.failed})
        raise NotCommitted(
            f"{destination.ae_title} did not commit {len(result.failed)} instance(s): {reasons}"
        )
    log.info("%s committed %d instance(s) (%s)", destination.ae_title, len(references), transaction_uid)
    return transaction_uid


def _report_here(index: Index, event: Any) -> tuple[int, None]:
    """The report on the request's own association."""
    return record_report(index, event.event_information), None
