"""The DICOM SCP: C-ECHO, C-STORE for every storage SOP class and transfer syntax, in each
presentation context the first transfer syntax the sender proposes (``negotiation.py``), and the
workflow services (MPPS: ``mpps.py``; Storage Commitment: ``commitment.py``).

The C-STORE handler writes the bytes exactly as received (no pixel decoding, no transcoding),
durably, indexes them, tells the assembler, and only then answers Success.
"""

from __future__ import annotations

import enum
import errno
import logging
import os
import socket
import threading
from contextlib import ExitStack
from dataclasses import replace
from io import BytesIO
from pathlib import Path
from typing import Any

import pydicom
from prometheus_client import Counter
from pydicom import Dataset
from pydicom.uid import UID, DeflatedExplicitVRLittleEndian
from pynetdicom import (
    ALL_TRANSFER_SYNTAXES,
    AllStoragePresentationContexts,
    VerificationPresentationContexts,
    evt,
)
from pynetdicom.events import EventHandlerType
from sqlalchemy.exc import SQLAlchemyError

from radrouter.config.settings import ResendPolicy, Settings
from radrouter.deid import find_pseudonyms, is_pseudonymous, reidentify
from radrouter.logs import study
from radrouter.router.assemble import ArrivalSink
from radrouter.router.deliver.commitment import COMMITMENT_SOP_CLASS
from radrouter.router.deliver.mpps_forward import StepForwarder
from radrouter.router.dispatch.worker import process_incarnation
from radrouter.router.receive.acceptor import AcceptorContexts, ConnectionCounts, NodeAE, SharedSocketServer
from radrouter.router.receive.callers import AllowedCallers
from radrouter.router.receive.commitment import CommitmentSCP
from radrouter.router.receive.free_space import FreeSpace
from radrouter.router.receive.header import NoRoom, index_header
from radrouter.router.receive.memory_budget import MemoryBudget
from radrouter.router.receive.mpps import MPPS_SOP_CLASS, PerformedStepSCP
from radrouter.router.receive.negotiation import install as keep_senders_transfer_syntax
from radrouter.router.receive.spool import receive_to_files
from radrouter.router.transport import NODELAY_HANDLER, tls_server_context
from radrouter.storage.ingest import ReceivedInstance, record_instance
from radrouter.storage.resend import (
    audit_refused_result,
    audit_resend,
    conflict,
    copies_kept,
    held_under,
    kept_apart_path,
    record_kept_apart,
)
from radrouter.storage.retention import Purger
from radrouter.storage.slices import slice_record
from radrouter.storage.steps import StepBook
from radrouter.storage.store import InstanceStore, InvalidUID, validate_uid

log = logging.getLogger(__name__)


class StoreStatus(enum.IntEnum):
    """The C-STORE statuses the SCP answers (PS3.4 Table B.2-1, PS3.7 C.4)."""

    SUCCESS = 0x0000
    PROCESSING_FAILURE = 0x0110
    DUPLICATE_SOP_INSTANCE = 0x0111  # a result the node wrote, or a conflicting resend (policy reject)
    OUT_OF_RESOURCES = 0xA700
    DATASET_MISMATCH = 0xA900  # the data set does not match the command's SOP class or instance
    CANNOT_UNDERSTAND = 0xC000
    INVALID_UID = 0xC001


#: Every SOP class the SCP accepts, each in every transfer syntax (the conformance statement lists these).
SCP_ABSTRACT_SYNTAXES: list[UID] = [
    UID(str(context.abstract_syntax))
    for context in [*VerificationPresentationContexts, *AllStoragePresentationContexts]
    if context.abstract_syntax is not None
] + [MPPS_SOP_CLASS, COMMITMENT_SOP_CLASS]
#: SCP/SCU role selection accepted, as (SCU role, SCP role) of the requestor: a destination that
#: reports its storage commitment on a new association takes the SCP role of that SOP class.
REQUESTOR_ROLES_ACCEPTED: dict[UID, tuple[bool | None, bool | None]] = {COMMITMENT_SOP_CLASS: (True, True)}

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
        self,
        settings: Settings,
        store: InstanceStore,
        index: Any,
        arrivals: ArrivalSink,
        counts: ConnectionCounts | None = None,
        budget: MemoryBudget | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.index = index
        self.arrivals = arrivals
        self.counts = counts or ConnectionCounts([0], 0)
        self.ae = NodeAE(settings.node.ae_title, self.counts)
        self.ae.maximum_pdu_size = settings.node.max_pdu
        self.ae.maximum_associations = settings.node.max_associations
        self.ae.require_called_aet = settings.node.check_called_ae
        self.callers = AllowedCallers(settings.node.allowed_calling_aes)
        self.ae.require_calling_aet = self.callers.titles
        self.max_instance_bytes = settings.storage.max_instance_mb * 1024 * 1024
        self.budget = budget or MemoryBudget([0], 0, settings.node.memory_budget_mb * 1024 * 1024)
        receive_to_files()
        reserve_bytes = settings.storage.free_space_reserve_mb * 1024 * 1024
        self.free_space = FreeSpace(store, reserve_bytes, settings.node.processes)
        #: An instance that would reach the reserve first has retention purge what the watermark
        #: allows, here and now: the SCP's timed pass may be up to ``retention.interval_s`` away.
        self.purger = Purger(settings.retention, index, store) if settings.retention.enabled else None
        for abstract_syntax in SCP_ABSTRACT_SYNTAXES:
            roles = REQUESTOR_ROLES_ACCEPTED.get(abstract_syntax, (None, None))
            self.ae.add_supported_context(abstract_syntax, ALL_TRANSFER_SYNTAXES, *roles)
        keep_senders_transfer_syntax()
        forwarder = StepForwarder(settings.destinations, settings.node.ae_title, settings.delivery.timeout_s)
        mpps = PerformedStepSCP(StepBook(index, settings.completion), arrivals, forwarder)
        commitment = CommitmentSCP(settings, store, index)
        self.handlers: list[EventHandlerType] = [
            NODELAY_HANDLER,
            (evt.EVT_C_ECHO, self.handle_echo),
            (evt.EVT_C_STORE, self.handle_store),
            (evt.EVT_N_CREATE, mpps.handle_create),
            (evt.EVT_N_SET, mpps.handle_set),
            (evt.EVT_N_ACTION, commitment.handle_action),
            (evt.EVT_DIMSE_SENT, commitment.answer_sent),
            (evt.EVT_N_EVENT_REPORT, commitment.handle_report),
            (evt.EVT_ACCEPTED, lambda _event: ASSOCIATIONS.labels("accepted").inc()),
            (evt.EVT_REJECTED, lambda _event: ASSOCIATIONS.labels("rejected").inc()),
        ]
        if self.callers:
            self.handlers += [
                (evt.EVT_DATA_RECV, _note_calling_ae_as_sent),
                (evt.EVT_REQUESTED, self.reject_unlisted_calling_ae),
            ]

    def serve(self, block: bool = True, listening_socket: socket.socket | None = None) -> Any:
        """Serve on our own port, or on a socket bound before the node's SCP processes forked."""
        address = (self.settings.node.host, self.settings.node.port)
        server = self.ae.make_server(
            address,
            contexts=AcceptorContexts(self.ae.supported_contexts),
            ssl_context=tls_server_context(self.settings.node.tls),
            evt_handlers=self.handlers,
            server_class=SharedSocketServer,
            listening_socket=listening_socket,
            counts=self.counts,
            association_ended=self.association_ended,
        )
        self.ae._servers.append(server)
        log.info(
            "SCP %s listening on %s:%d%s (process %d)",
            self.settings.node.ae_title,
            *server.server_address[:2],
            " with TLS" if server.ssl_context else "",
            os.getpid(),
        )
        if block:
            server.serve_forever()
            return None
        threading.Thread(target=server.serve_forever, name="scp-acceptor", daemon=True).start()
        return server

    def reject_unlisted_calling_ae(self, event: Any) -> None:
        """The allow-list compares the calling AE title as sent, less only its trailing padding, and
        the address it calls from where its entry names hosts.

        pynetdicom strips every kind of white space from both ends, so ``MODALITY1\\r\\n`` passed
        for ``MODALITY1``; the title as sent is noted from the raw A-ASSOCIATE-RQ.
        """
        assoc = event.assoc
        sent = getattr(assoc, _CALLING_AE_AS_SENT, None)
        refusal = self.callers.refusal(sent, str(assoc.requestor.address))
        if refusal is None or assoc.is_rejected or assoc.is_aborted:
            return
        log.warning("rejected an association: %s", refusal)
        assoc.acse.send_reject(0x01, 0x01, 0x03)  # permanent, service user, calling AE not recognised
        evt.trigger(assoc, evt.EVT_REJECTED, {})
        assoc.kill()

    def _purged_room_for(self, size: int) -> bool:
        """Before Out of Resources: a retention pass (finished studies over the watermark, oldest
        first); whether there is room now. Purges a crash left marked are the timed pass's to finish."""
        if self.purger is None:
            return False
        try:
            report = self.purger.run_once(resume=False)
        except Exception as error:
            log.error("retention pass before refusing failed (%s)", type(error).__name__)
            return False
        return bool(report.purged) and self.free_space.room_for(size)

    def handle_echo(self, event: Any) -> int:
        return StoreStatus.SUCCESS

    def association_ended(self, assoc: Any) -> None:
        """At the end of the association's thread, however it ended (released, aborted, or killed)."""
        self.arrivals.association_ended(_association_key(assoc))

    def handle_store(self, event: Any) -> int:
        with ExitStack() as in_memory:  # what this store holds of the memory budget, until it ends
            status = self._store(event, in_memory)
        INSTANCES.labels(f"0x{status:04X}").inc()
        return status

    def _store(self, event: Any, in_memory: ExitStack) -> int:
        received_file: Path = event.dataset_path  # written as it arrived (``spool.receive_to_files``)
        transfer_syntax: UID = event.context.transfer_syntax
        size = received_file.stat().st_size
        if size > self.max_instance_bytes:
            log.warning("refused an instance of %d bytes: above storage.max_instance_mb", size)
            return StoreStatus.OUT_OF_RESOURCES

        def fits_in_memory() -> bool:
            if in_memory.enter_context(self.budget.holding(size)):
                return True
            log.warning("refused an instance of %d bytes for now: node.memory_budget_mb is in use", size)
            return False

        room = 0
        if transfer_syntax == DeflatedExplicitVRLittleEndian:  # inflated whole to read its header
            room = in_memory.enter_context(self.budget.holding_the_rest(self.max_instance_bytes))
        raw: bytes | None = None  # the file as stored, when it is not the received one
        try:
            header, pixel_data_at = index_header(received_file, transfer_syntax, room)
            sop_uid = validate_uid(str(event.request.AffectedSOPInstanceUID), "SOPInstanceUID")
            sop_class_uid = validate_uid(str(event.request.AffectedSOPClassUID), "SOPClassUID")
            own_uids = (
                validate_uid(str(header.get("SOPInstanceUID", "")), "the data set's SOPInstanceUID"),
                validate_uid(str(header.get("SOPClassUID", "")), "the data set's SOPClassUID"),
            )
            if own_uids != (sop_uid, sop_class_uid):
                log.warning(
                    "refused an instance whose data set is %s of %s, sent as %s of %s",
                    *own_uids,
                    sop_uid,
                    sop_class_uid,
                )
                return StoreStatus.DATASET_MISMATCH
            if is_pseudonymous(header.get("PatientID")):
                if not fits_in_memory():
                    return StoreStatus.OUT_OF_RESOURCES
                raw, header = self._reidentified(received_file.read_bytes())
                size, pixel_data_at = len(raw), None  # stored as re-identified, not as received
                sop_uid = validate_uid(str(header.SOPInstanceUID), "SOPInstanceUID")
            study_uid = validate_uid(str(header.StudyInstanceUID), "StudyInstanceUID")
            series_uid = validate_uid(str(header.SeriesInstanceUID), "SeriesInstanceUID")
        except NoRoom:
            log.warning("refused a deflated instance for now: it inflates past node.memory_budget_mb")
            return StoreStatus.OUT_OF_RESOURCES
        except InvalidUID as error:
            log.warning("refused an instance: %s", error)
            return StoreStatus.INVALID_UID
        except Exception as error:  # any way the sender's bytes fail to parse: found by tests/fuzz
            log.warning("refused an instance that cannot be indexed: %s", type(error).__name__)
            return StoreStatus.CANNOT_UNDERSTAND

        received = ReceivedInstance(
            study_uid=study_uid,
            series_uid=series_uid,
            sop_uid=sop_uid,
            sop_class_uid=str(event.request.AffectedSOPClassUID),
            transfer_syntax_uid=str(transfer_syntax),
            modality=header.get("Modality"),
            series_number=_int_or_none(header.get("SeriesNumber")),
            series_description=(str(header.get("SeriesDescription", "")) or None),
            path=str(self.store.instance_path(study_uid, series_uid, sop_uid)),
            size=size,
            calling_ae=event.assoc.requestor.ae_title,
            calling_address=event.assoc.requestor.address,
            dimse_priority=_int_or_none(event.request.Priority) or 0,
            called_ae=str(getattr(event.assoc.requestor.primitive, "called_ae_title", "") or ""),
            receiver=process_incarnation(),
            slice=slice_record(header, transfer_syntax, pixel_data_at),
        )
        held = held_under(self.index, sop_uid)
        if held.result_job is not None:
            audit_refused_result(self.index, received, held.result_job)
            return StoreStatus.DUPLICATE_SOP_INSTANCE
        first = held.first
        why = conflict(first, study_uid, str(header.get("PatientID", ""))) if first is not None else None
        policy = self.settings.storage.conflicting_resend
        if first is not None and why is not None:
            if policy == ResendPolicy.REJECT:
                audit_resend(self.index, first, received, why, policy)
                return StoreStatus.DUPLICATE_SOP_INSTANCE
            if policy == ResendPolicy.KEEP_FIRST:
                count = copies_kept(self.index, sop_uid) + 1
                received = replace(received, path=str(kept_apart_path(self.store.root, received, count)))

        status = self._write(Path(received.path), raw or received_file, size, study_uid)
        if status != StoreStatus.SUCCESS:
            return status
        try:
            if first is not None and why is not None and policy == ResendPolicy.KEEP_FIRST:
                record_kept_apart(self.index, received)
                audit_resend(self.index, first, received, why, policy)
                return StoreStatus.SUCCESS  # stored apart: the first copy's study is not touched
            record_instance(self.index, received)
            if first is not None and why is not None:
                audit_resend(self.index, first, received, why, policy)
        except SQLAlchemyError:
            log.exception("cannot index %s", sop_uid, extra=study(study_uid))
            return StoreStatus.PROCESSING_FAILURE
        if first is not None and first.path != received.path:
            Path(first.path).unlink(missing_ok=True)  # replaced, or moved to another series: no orphan
        self.arrivals.instance_received(study_uid, _association_key(event.assoc), series_uid, sop_uid)
        return StoreStatus.SUCCESS

    def _write(self, path: Path, data: bytes | Path, size: int, study_uid: str) -> StoreStatus:
        """Store the file durably (bytes, or the file received), or answer Out of Resources (below the
        free-space reserve, or the write failed) with nothing stored."""
        if not self.free_space.room_for(size) and not self._purged_room_for(size):
            log.error("refused %s: free disk space is below the reserve", path.stem, extra=study(study_uid))
            return StoreStatus.OUT_OF_RESOURCES
        try:
            if isinstance(data, bytes):
                self.store.write(path, data)
            else:
                self.store.place(path, data)
        except OSError as error:
            reason = errno.errorcode.get(error.errno or 0, error)
            log.error("cannot store %s: %s", path.stem, reason, extra=study(study_uid))
            return StoreStatus.OUT_OF_RESOURCES
        RECEIVED_BYTES.inc(size)
        return StoreStatus.SUCCESS

    def _reidentified(self, raw: bytes) -> tuple[bytes, Dataset]:
        """An instance back from an external destination, with its original identifiers and UIDs."""
        dataset = pydicom.dcmread(BytesIO(raw))
        if not reidentify(dataset, lambda values: find_pseudonyms(self.index, values)):
            return raw, dataset
        restored = BytesIO()
        dataset.save_as(restored, enforce_file_format=True)
        log.info("re-identified an instance returned by an external destination")
        return restored.getvalue(), dataset


_CALLING_AE_AS_SENT = "radrouter_calling_ae_as_sent"


def _note_calling_ae_as_sent(event: Any) -> None:
    """On the raw A-ASSOCIATE-RQ (PS3.8 9.3.2: Calling AE Title in bytes 27-42), before pynetdicom
    decodes and strips it."""
    data: bytes = event.data
    if data[:1] == b"\x01" and len(data) >= 42:
        setattr(event.assoc, _CALLING_AE_AS_SENT, data[26:42].decode("latin-1").rstrip(" "))


def _association_key(assoc: Any) -> str:
    """Names an association uniquely among all SCP processes of the node."""
    return f"{os.getpid()}:{id(assoc)}"
