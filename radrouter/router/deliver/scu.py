"""C-STORE SCU: sends stored files to a destination, each in the transfer syntax it was written in.

When a destination refuses an object's SOP class during negotiation (Orthanc 1.10 refuses Label Map
Segmentation), the object's stand-in of an older SOP class (a BINARY SEG) is sent instead. An object
that references another one (the SR its SEG) follows it: where the SEG's stand-in goes, so does the
SR that references the stand-in, so every reference a destination holds resolves there.
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
from radrouter.storage.label_maps import LABEL_MAP_SEGMENTATION

log = logging.getLogger(__name__)

#: pynetdicom proposes at most 128 presentation contexts in one association.
MAX_CONTEXTS = 128
#: What radrouter's results are written as (BINARY SEG, LABELMAP SEG, TID 1500 SR): an association
#: kept open proposes them all, so the SEG's association can carry its SR and the next study's results.
RESULT_CONTEXTS = {
    (str(SegmentationStorage), str(ExplicitVRLittleEndian)),
    (LABEL_MAP_SEGMENTATION, str(RLELossless)),
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
    ``follows``: the object this one references (an SR's SEG); the stand-in is sent when the
    destination does not accept that object's encoding, as the referenced object's stand-in then goes.
    """

    path: Path
    fallback_path: Path | None = None
    encoding: tuple[str, str] | None = None
    follows: Path | None = None


@dataclass(frozen=True)
class Sent:
    """What one C-STORE sent: its SOP class, and whether it was the object's stand-in."""

    sop_class_uid: str
    stand_in: bool


@dataclass(frozen=True)
class _Encoded:
    path: Path
    sop_class_uid: str
    transfer_syntax_uid: str

    @property
    def pair(self) -> tuple[str, str]:
        return self.sop_class_uid, self.transfer_syntax_uid


@dataclass(frozen=True)
class _Choice:
    primary: _Encoded
    fallback: _Encoded | None
    follows: _Encoded | None


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
) -> list[Sent]:
    """Store ``objects`` at ``destination`` over one association; return what was sent for each.

    With ``pool``, an idle association negotiated for these objects is reused (and one the peer closed
    meanwhile is replaced by a new one, once), and the association is left open for the next delivery.
    """
    if not objects:
        return []  # e.g. a forwarded series whose instances all moved to another series since routing
    choices = [
        _Choice(
            _describe(o.path, o.encoding),
            _describe(o.fallback_path) if o.fallback_path else None,
            _describe(o.follows) if o.follows and o.fallback_path else None,
        )
        for o in objects
    ]
    pairs = {c.pair for choice in choices for c in (choice.primary, choice.fallback, choice.follows) if c}
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
    choices: list[_Choice],
    destination: Destination,
    peer: PeerKey,
    pool: AssociationPool | None,
) -> list[Sent]:
    """C-STORE each object (or its stand-in) on ``entry``; then keep the association or release it."""
    assoc = entry.association
    try:
        sent: list[Sent] = []
        for choice in choices:
            primary, fallback = choice.primary, choice.fallback
            goes_as_is = primary.pair in entry.accepted and (
                choice.follows is None or choice.follows.pair in entry.accepted
            )
            chosen = primary if goes_as_is else fallback
            if chosen is None or chosen.pair not in entry.accepted:
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
            sent.append(Sent(chosen.sop_class_uid, stand_in=chosen is not primary))
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
