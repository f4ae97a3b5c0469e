"""The DICOM SCP: C-ECHO, and C-STORE for every storage SOP class and transfer syntax.

The C-STORE handler writes the bytes exactly as received (no pixel decoding, no transcoding),
durably, indexes them, tells the assembler, and only then answers Success.
"""

from __future__ import annotations

import errno
import logging
from io import BytesIO
from typing import Any

import pydicom
from prometheus_client import Counter
from pydicom.errors import InvalidDicomError
from pynetdicom import (
    AE,
    ALL_TRANSFER_SYNTAXES,
    StoragePresentationContexts,
    VerificationPresentationContexts,
    evt,
)
from pynetdicom.events import EventHandlerType
from sqlalchemy.exc import SQLAlchemyError

from radrouter.config.settings import Settings
from radrouter.logs import study
from radrouter.router.assembler import StudyAssembler
from radrouter.router.network import NODELAY_HANDLER
from radrouter.storage.ingest import ReceivedInstance, record_instance
from radrouter.storage.store import InstanceStore, InvalidUID, validate_uid

log = logging.getLogger(__name__)

SUCCESS = 0x0000
PROCESSING_FAILURE = 0x0110
OUT_OF_RESOURCES = 0xA700
CANNOT_UNDERSTAND = 0xC000
INVALID_UID = 0xC001

_HEADER_TAGS = [
    "SOPClassUID",
    "SOPInstanceUID",
    "StudyInstanceUID",
    "SeriesInstanceUID",
    "Modality",
    "SeriesNumber",
    "SeriesDescription",
]


# Exported by the SCP process itself (node.metrics_port): only it sees associations and raw bytes.
ASSOCIATIONS = Counter("radrouter_associations", "Associations requested, by outcome", ["outcome"])
INSTANCES = Counter("radrouter_instances_received", "C-STORE requests, by answered status", ["status"])
RECEIVED_BYTES = Counter("radrouter_received_bytes", "Bytes of instances stored")


def _int_or_none(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


class StorageSCP:
    """Receives instances into the store and the index; its handlers are small and return statuses."""

    def __init__(
        self, settings: Settings, store: InstanceStore, index: Any, assembler: StudyAssembler
    ) -> None:
        self.settings = settings
        self.store = store
        self.index = index
        self.assembler = assembler
        self.ae = AE(ae_title=settings.node.ae_title)
        self.ae.maximum_pdu_size = settings.node.max_pdu
        self.ae.maximum_associations = settings.node.max_associations
        self.ae.require_called_aet = settings.node.check_called_ae
        self.ae.require_calling_aet = settings.node.allowed_calling_aes
        self.reserve_bytes = settings.storage.free_space_reserve_mb * 1024 * 1024
        for context in [*StoragePresentationContexts, *VerificationPresentationContexts]:
            if context.abstract_syntax is not None:
                self.ae.add_supported_context(context.abstract_syntax, ALL_TRANSFER_SYNTAXES)
        self.handlers: list[EventHandlerType] = [
            NODELAY_HANDLER,
            (evt.EVT_C_ECHO, self.handle_echo),
            (evt.EVT_C_STORE, self.handle_store),
            (evt.EVT_CONN_CLOSE, self.handle_connection_closed),
            (evt.EVT_ACCEPTED, lambda _event: ASSOCIATIONS.labels("accepted").inc()),
            (evt.EVT_REJECTED, lambda _event: ASSOCIATIONS.labels("rejected").inc()),
        ]

    def serve(self, block: bool = True) -> Any:
        address = (self.settings.node.host, self.settings.node.port)
        log.info("SCP %s listening on %s:%d", self.settings.node.ae_title, *address)
        return self.ae.start_server(address, block=block, evt_handlers=self.handlers)

    def handle_echo(self, event: Any) -> int:
        return SUCCESS

    def handle_connection_closed(self, event: Any) -> None:
        self.assembler.association_ended(id(event.assoc))

    def handle_store(self, event: Any) -> int:
        status = self._store(event)
        INSTANCES.labels(f"0x{status:04X}").inc()
        return status

    def _store(self, event: Any) -> int:
        raw: bytes = bytes(event.encoded_dataset(include_meta=True))
        try:
            header = pydicom.dcmread(BytesIO(raw), stop_before_pixels=True, specific_tags=_HEADER_TAGS)
            study_uid = validate_uid(str(header.StudyInstanceUID), "StudyInstanceUID")
            series_uid = validate_uid(str(header.SeriesInstanceUID), "SeriesInstanceUID")
            sop_uid = validate_uid(str(event.request.AffectedSOPInstanceUID), "SOPInstanceUID")
        except InvalidUID as error:
            log.warning("refused an instance: %s", error)
            return INVALID_UID
        except (InvalidDicomError, AttributeError, ValueError, EOFError, KeyError) as error:
            log.warning("refused an instance that cannot be indexed: %s", type(error).__name__)
            return CANNOT_UNDERSTAND

        path = self.store.instance_path(study_uid, series_uid, sop_uid)
        if self.store.free_bytes() - len(raw) < self.reserve_bytes:
            log.error("refused %s: free disk space is below the reserve", sop_uid, extra=study(study_uid))
            return OUT_OF_RESOURCES
        try:
            self.store.write(path, raw)
        except OSError as error:
            reason = errno.errorcode.get(error.errno or 0, error)
            log.error("cannot store %s: %s", sop_uid, reason, extra=study(study_uid))
            return OUT_OF_RESOURCES
        RECEIVED_BYTES.inc(len(raw))

        received = ReceivedInstance(
            study_uid=study_uid,
            series_uid=series_uid,
            sop_uid=sop_uid,
            sop_class_uid=str(event.request.AffectedSOPClassUID),
            transfer_syntax_uid=str(event.context.transfer_syntax),
            modality=header.get("Modality"),
            series_number=_int_or_none(header.get("SeriesNumber")),
            series_description=(str(header.get("SeriesDescription", "")) or None),
            path=str(path),
            size=len(raw),
            calling_ae=event.assoc.requestor.ae_title,
        )
        try:
            record_instance(self.index, received)
        except SQLAlchemyError:
            log.exception("cannot index %s", sop_uid, extra=study(study_uid))
            return PROCESSING_FAILURE
        self.assembler.instance_received(study_uid, id(event.assoc))
        return SUCCESS
