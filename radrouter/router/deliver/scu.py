"""C-STORE SCU: sends stored files to a destination, each in the transfer syntax it was written in.

When a destination refuses an object's SOP class during negotiation (Orthanc 1.10 refuses Label Map
Segmentation), the object's stand-in of an older SOP class (a BINARY SEG) is sent instead.
Retries and their backoff belong to the caller (the Celery task), which records every attempt.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pydicom
from pydicom.uid import (
    Comprehensive3DSRStorage,
    ExplicitVRLittleEndian,
    RLELossless,
    SegmentationStorage,
)
from pynetdicom import AE
from pynetdicom.presentation import build_context

from radrouter.config.settings import Destination
from radrouter.router.deliver.associations import AssociationPool, OpenAssociation, PeerKey
from radrouter.router.transport import NODELAY_HANDLER

log = logging.getLogger(__name__)

#: pynetdicom proposes at most 128 presentation contexts in one association.
MAX_CONTEXTS = 128
#: What radrouter's results are written as (BINARY SEG, LABELMAP SEG, TID 1500 SR): an association
#: kept open proposes them all, so the SEG's association can carry its SR and the next study's results.
RESULT_CONTEXTS = {
    (str(SegmentationStorage), str(ExplicitVRLittleEndian)),
    ("1.2.840.10008.5.1.4.1.1.66.7", str(RLELossless)),  # Label Map Segmentation Storage
    (str(Comprehensive3DSRStorage), str(ExplicitVRLittleEndian)),
}


class DeliveryError(RuntimeError):
    """The destination could not be reached or did not store an object; worth retrying."""


class AssociationLost(DeliveryError):
    """The association ended under a C-STORE (the peer closed it, or the network failed)."""


class RefusedByDestination(DeliveryError):
    """The destination refused the object's SOP class and there is no stand-in it accepts: not retried."""


@dataclass(frozen=True)
class OutgoingObject:
    """A file to send, and optionally a stand-in file of another SOP class.

    ``encoding``: its (SOP Class UID, Transfer Syntax UID) where the index already holds them (the
    originals of a forwarded series), so their headers are not read again before sending.
    """

    path: Path
    fallback_path: Path | None = None
    encoding: tuple[str, str] | None = None


@dataclass(frozen=True)
class _Encoded:
    path: Path
    sop_class_uid: str
    transfer_syntax_uid: str


def _describe(path: Path, encoding: tuple[str, str] | None = None) -> _Encoded:
    if encoding is not None:
        return _Encoded(path, *encoding)
    meta = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["SOPClassUID"]).file_meta
    return _Encoded(path, str(meta.MediaStorageSOPClassUID), str(meta.TransferSyntaxUID))


def send(
    destination: Destination,
    objects: Sequence[OutgoingObject],
    calling_ae: str,
    timeout_s: float,
    pool: AssociationPool | None = None,
) -> list[str]:
    """Store ``objects`` at ``destination`` over one association; return the SOP class sent for each.

    With ``pool``, an idle association negotiated for these objects is reused (and one the peer closed
    meanwhile is replaced by a new one, once), and the association is left open for the next delivery.
    """
    if not objects:
        return []  # e.g. a forwarded series whose instances all moved to another series since routing
    choices = [
        (_describe(o.path, o.encoding), _describe(o.fallback_path) if o.fallback_path else None)
        for o in objects
    ]
    pairs = {(c.sop_class_uid, c.transfer_syntax_uid) for primary, fb in choices for c in (primary, fb) if c}
    if len(pairs) > MAX_CONTEXTS:
        raise ValueError(f"{len(pairs)} presentation contexts needed; send in smaller batches")
    peer = PeerKey(destination.host, destination.port, destination.ae_title, calling_ae)
    reused = pool.take(peer, pairs) if pool is not None else None
    if reused is not None:
        try:
            return _store(reused, choices, destination, peer, pool)
        except AssociationLost:
            log.info("an open association to %s ended; sending on a new one", destination.ae_title)
    if pool is not None and len(pairs | RESULT_CONTEXTS) <= MAX_CONTEXTS:
        pairs |= RESULT_CONTEXTS  # so the association kept open can carry the next results too
    return _store(_associate(destination, pairs, calling_ae, timeout_s), choices, destination, peer, pool)


def _associate(
    destination: Destination, pairs: set[tuple[str, str]], calling_ae: str, timeout_s: float
) -> OpenAssociation:
    ae = AE(ae_title=calling_ae)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = timeout_s
    contexts = [build_context(sop_class, syntax) for sop_class, syntax in sorted(pairs)]
    assoc = ae.associate(
        destination.host,
        destination.port,
        contexts=contexts,
        ae_title=destination.ae_title,
        max_pdu=0,
        evt_handlers=[NODELAY_HANDLER],
    )
    if not assoc.is_established:
        if assoc.rejected_contexts and not assoc.accepted_contexts:
            refused = sorted({str(cx.abstract_syntax) for cx in assoc.rejected_contexts})
            raise RefusedByDestination(
                f"{destination.ae_title} refused SOP class(es) {refused} in negotiation"
            )
        raise DeliveryError(
            f"association with {destination.ae_title}@{destination.host}:{destination.port} failed"
        )
    accepted = {(str(cx.abstract_syntax), str(cx.transfer_syntax[0])) for cx in assoc.accepted_contexts}
    return OpenAssociation(assoc, frozenset(pairs), frozenset(accepted))


def _store(
    entry: OpenAssociation,
    choices: list[tuple[_Encoded, _Encoded | None]],
    destination: Destination,
    peer: PeerKey,
    pool: AssociationPool | None,
) -> list[str]:
    """C-STORE each object (or its stand-in) on ``entry``; then keep the association or release it."""
    assoc = entry.association
    try:
        sent: list[str] = []
        for primary, fallback in choices:
            chosen = (
                primary
                if (primary.sop_class_uid, primary.transfer_syntax_uid) in entry.accepted
                else fallback
            )
            if chosen is None or (chosen.sop_class_uid, chosen.transfer_syntax_uid) not in entry.accepted:
                raise RefusedByDestination(
                    f"{destination.ae_title} refused SOP class {primary.sop_class_uid} "
                    f"in transfer syntax {primary.transfer_syntax_uid}"
                )
            try:
                status = assoc.send_c_store(chosen.path)
            except RuntimeError as error:  # the association ended before the request went out
                raise AssociationLost(f"association with {destination.ae_title} ended: {error}") from error
            code = getattr(status, "Status", None)
            if code is None:
                raise AssociationLost(
                    f"no C-STORE response from {destination.ae_title} (connection lost or timeout)"
                )
            if code not in (0x0000, 0xB000, 0xB007, 0xB006):
                raise DeliveryError(f"{destination.ae_title} answered C-STORE with status 0x{code:04X}")
            sent.append(chosen.sop_class_uid)
    except BaseException:
        if assoc.is_established:
            assoc.release()
        else:
            assoc.abort()
        raise
    if pool is not None:
        pool.give_back(peer, entry)
    else:
        assoc.release()
    return sent
