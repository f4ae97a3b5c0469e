"""Records a received instance in the index and reopens a study that gets late instances."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pydicom
from sqlalchemy import bindparam, func, insert, update
from sqlalchemy.exc import IntegrityError

from radrouter.storage.index import Hop, Index, Instance, Series, Study, StudyState, utcnow
from radrouter.storage.slices import SliceRecord
from radrouter.storage.store import validate_uid

HIGH_PRIORITY = 1


@dataclass(frozen=True)
class ReceivedInstance:
    """What the index keeps of one instance: UIDs and a few series facts, no patient data."""

    study_uid: str
    series_uid: str
    sop_uid: str
    sop_class_uid: str
    transfer_syntax_uid: str
    modality: str | None
    series_number: int | None
    series_description: str | None
    path: str
    size: int
    calling_ae: str
    #: The C-STORE request's Priority (0000,0700): 0 medium, 1 high, 2 low.
    dimse_priority: int = 0
    called_ae: str = ""
    calling_address: str = ""
    #: The SCP start that received it (``router.dispatch.worker.process_incarnation``).
    receiver: str = ""
    #: Its slice header and Pixel Data offset, for a slice a worker reads in place (``storage.slices``).
    slice: SliceRecord | None = None

    def slice_columns(self) -> dict[str, Any]:
        """The instance row's slice columns (both None without a slice record)."""
        if self.slice is None:
            return {"slice_header": None, "pixel_data_at": None}
        return {"slice_header": self.slice.header, "pixel_data_at": self.slice.pixel_data_at}

    @classmethod
    def of_stored_file(cls, path: Path, calling_ae: str = "") -> ReceivedInstance:
        """The record of a Part 10 file already in the store, from its header (the SCP has these facts
        from the association; a file found on disk has only itself). Raises on an unreadable file or
        an invalid UID (``InvalidUID``)."""
        header = pydicom.dcmread(path, stop_before_pixels=True)
        return cls(
            study_uid=validate_uid(str(header.StudyInstanceUID)),
            series_uid=validate_uid(str(header.SeriesInstanceUID)),
            sop_uid=validate_uid(path.stem),
            sop_class_uid=str(header.file_meta.MediaStorageSOPClassUID),
            transfer_syntax_uid=str(header.file_meta.TransferSyntaxUID),
            modality=header.get("Modality"),
            series_number=int(header.SeriesNumber) if header.get("SeriesNumber") is not None else None,
            series_description=str(header.get("SeriesDescription", "")) or None,
            path=str(path),
            size=path.stat().st_size,
            calling_ae=calling_ae,
        )


def record_instance(index: Index, received: ReceivedInstance) -> bool:
    """Index ``received``; return True when it replaced an instance with the same SOP Instance UID.

    Several SCP processes index at once: when another one created the same study, series or instance
    row first, the transaction fails on its unique key and runs again, now finding that row.
    """
    if _record_next_instance(index, received):
        return False
    try:
        return _record(index, received)
    except IntegrityError:
        return _record(index, received)


#: The common case's statements, built once: building them per instance was half its CPU.
_TOUCH_RECEIVING_STUDY = (
    update(Study)
    .where(Study.uid == bindparam("study_uid"), Study.state == StudyState.RECEIVING)
    # An instance indexed late (after a crash) has no receiver: the study keeps the one it had.
    .values(last_received_at=bindparam("now"), receiver=func.coalesce(bindparam("scp"), Study.receiver))
)
_ADD_INSTANCE = insert(Instance)


def _record_next_instance(index: Index, received: ReceivedInstance) -> bool:
    """The common case in two statements: a new instance of a known series of a study still receiving.

    Returns False, having changed nothing, when the case is any other (first instance of the study or
    series, a reopened study, a resent instance); :func:`_record` then handles it with the ORM.
    """
    now = utcnow()
    try:
        with index.engine.begin() as connection:
            receiving = connection.execute(
                _TOUCH_RECEIVING_STUDY,
                {"study_uid": received.study_uid, "now": now, "scp": received.receiver or None},
            )
            if receiving.rowcount != 1:
                raise _NotTheCommonCase
            connection.execute(
                _ADD_INSTANCE,
                {
                    "sop_uid": received.sop_uid,
                    "series_uid": received.series_uid,  # a foreign key: an unknown series fails here
                    "sop_class_uid": received.sop_class_uid,
                    "transfer_syntax_uid": received.transfer_syntax_uid,
                    "path": received.path,
                    "size": received.size,
                    "received_at": now,
                    **received.slice_columns(),
                },
            )
    except (_NotTheCommonCase, IntegrityError):
        return False
    return True


class _NotTheCommonCase(Exception):
    """Rolls back the fast path's transaction."""


def _record(index: Index, received: ReceivedInstance) -> bool:
    now = utcnow()
    with index.session() as session:
        study = session.get(Study, received.study_uid)
        first = study is None
        if study is None:
            study = Study(
                uid=received.study_uid,
                state=StudyState.RECEIVING,
                revision=0,
                calling_ae=received.calling_ae,
                first_received_at=now,
            )
            session.add(study)
        reopened = study.state != StudyState.RECEIVING
        if reopened:
            study.state = StudyState.RECEIVING
            study.revision += 1
            study.reason = "late instance reopened the study"
        study.last_received_at = now
        study.receiver = received.receiver or study.receiver
        if received.dimse_priority == HIGH_PRIORITY:
            study.sent_as_high_priority = True
        if session.get(Series, received.series_uid) is None:
            session.add(
                Series(
                    uid=received.series_uid,
                    study_uid=received.study_uid,
                    modality=received.modality,
                    series_number=received.series_number,
                    description=received.series_description,
                    calling_ae=received.calling_ae,
                    called_ae=received.called_ae or None,
                )
            )
        existing = session.get(Instance, received.sop_uid)
        replaced = existing is not None
        if existing is None:
            session.add(
                Instance(
                    sop_uid=received.sop_uid,
                    series_uid=received.series_uid,
                    sop_class_uid=received.sop_class_uid,
                    transfer_syntax_uid=received.transfer_syntax_uid,
                    path=received.path,
                    size=received.size,
                    received_at=now,
                    **received.slice_columns(),
                )
            )
        else:
            existing.series_uid = received.series_uid
            existing.sop_class_uid = received.sop_class_uid
            existing.path = received.path
            existing.transfer_syntax_uid = received.transfer_syntax_uid
            existing.size = received.size
            existing.received_at = now
            for column, value in received.slice_columns().items():
                setattr(existing, column, value)
        if first or reopened or replaced:
            # One event per study revision, plus one per replaced instance: the trail stays readable.
            index.record_event(
                session,
                received.study_uid,
                Hop.RECEIVED,
                sop_uid=received.sop_uid,
                first=first,
                reopened=reopened,
                replaced=replaced,
                calling_ae=received.calling_ae,
                calling_address=received.calling_address,
            )
    return replaced
