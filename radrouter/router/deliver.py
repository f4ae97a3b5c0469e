"""C-STORE SCU: sends stored files to a destination, each in the transfer syntax it was written in.

When a destination refuses an object's SOP class during negotiation (Orthanc 1.10 refuses Label Map
Segmentation), the object's stand-in of an older SOP class (a BINARY SEG) is sent instead.
Retries and their backoff belong to the caller (the Celery task), which records every attempt.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pydicom
from pynetdicom import AE
from pynetdicom.presentation import build_context

from radrouter.config.settings import Destination
from radrouter.router.network import NODELAY_HANDLER

#: pynetdicom proposes at most 128 presentation contexts in one association.
MAX_CONTEXTS = 128


class DeliveryError(RuntimeError):
    """The destination could not be reached or did not store an object; worth retrying."""


class RefusedByDestination(DeliveryError):
    """The destination refused the object's SOP class and there is no stand-in it accepts: not retried."""


@dataclass(frozen=True)
class OutgoingObject:
    """A file to send, and optionally a stand-in file of another SOP class."""

    path: Path
    fallback_path: Path | None = None


@dataclass(frozen=True)
class _Encoded:
    path: Path
    sop_class_uid: str
    transfer_syntax_uid: str


def _describe(path: Path) -> _Encoded:
    meta = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["SOPClassUID"]).file_meta
    return _Encoded(path, str(meta.MediaStorageSOPClassUID), str(meta.TransferSyntaxUID))


def send(
    destination: Destination, objects: Sequence[OutgoingObject], calling_ae: str, timeout_s: float
) -> list[str]:
    """Store ``objects`` at ``destination`` over one association; return the SOP class sent for each."""
    if not objects:
        return []  # e.g. a forwarded series whose instances all moved to another series since routing
    choices = [(_describe(o.path), _describe(o.fallback_path) if o.fallback_path else None) for o in objects]
    pairs = {(c.sop_class_uid, c.transfer_syntax_uid) for primary, fb in choices for c in (primary, fb) if c}
    if len(pairs) > MAX_CONTEXTS:
        raise ValueError(f"{len(pairs)} presentation contexts needed; send in smaller batches")

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
    try:
        accepted = {(cx.abstract_syntax, cx.transfer_syntax[0]) for cx in assoc.accepted_contexts}
        sent: list[str] = []
        for primary, fallback in choices:
            chosen = primary if (primary.sop_class_uid, primary.transfer_syntax_uid) in accepted else fallback
            if chosen is None or (chosen.sop_class_uid, chosen.transfer_syntax_uid) not in accepted:
                raise RefusedByDestination(
                    f"{destination.ae_title} refused SOP class {primary.sop_class_uid} "
                    f"in transfer syntax {primary.transfer_syntax_uid}"
                )
            status = assoc.send_c_store(chosen.path)
            code = getattr(status, "Status", None)
            if code is None:
                raise DeliveryError(
                    f"no C-STORE response from {destination.ae_title} (connection lost or timeout)"
                )
            if code not in (0x0000, 0xB000, 0xB007, 0xB006):
                raise DeliveryError(f"{destination.ae_title} answered C-STORE with status 0x{code:04X}")
            sent.append(chosen.sop_class_uid)
        return sent
    finally:
        if assoc.is_established:
            assoc.release()
