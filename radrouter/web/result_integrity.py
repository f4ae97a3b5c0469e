"""What STOW-RS may store: only the results of the job whose credential comes with them.

Checked against the index before a byte is written: the job exists and is still running (a finished
job's results are the node's, recorded and maybe on their way to PACS: never replaced); the object is
of the job's study and patient; its SOP Instance UID is one the job derives for its results (so no
other job's result, and no received image, can be named); and the node has not recorded it already.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset
from sqlalchemy import select
from sqlalchemy.orm import Session

from radrouter.inference.results.content import is_job_result, job_key
from radrouter.router.dispatch.job_credential import CredentialRefused, JobCredentials
from radrouter.storage.index import Instance, Job, JobState, Result, Study


class FailureReason(enum.IntEnum):
    """STOW-RS Failure Reason (0008,1197) values (PS3.18 Table I.2-1, PS3.7 C.4.2)."""

    NOT_AUTHORIZED = 0x0124
    DATASET_MISMATCH = 0xA900
    CANNOT_UNDERSTAND = 0xC000


class Refusal(Exception):
    """Why an object is not stored: an HTTP status (403: not this credential's; 409: conflicts with
    what the node holds), the DICOM failure reason, and the reason in words for the audit trail."""

    def __init__(self, http_status: int, failure: FailureReason, reason: str) -> None:
        super().__init__(reason)
        self.http_status, self.failure, self.reason = http_status, failure, reason


@dataclass(frozen=True)
class Offered:
    """The identifying attributes of one object offered over STOW-RS."""

    study_uid: str
    series_uid: str
    sop_uid: str
    sop_class_uid: str
    patient_id: str

    @classmethod
    def of(cls, header: Dataset) -> Offered:
        return cls(
            study_uid=str(header.StudyInstanceUID),
            series_uid=str(header.SeriesInstanceUID),
            sop_uid=str(header.SOPInstanceUID),
            sop_class_uid=str(header.SOPClassUID),
            patient_id=str(header.get("PatientID", "")),
        )


def job_of(credentials: JobCredentials, credential: str | None) -> int:
    try:
        return credentials.job_of(credential)
    except CredentialRefused as error:
        raise Refusal(403, FailureReason.NOT_AUTHORIZED, str(error)) from error


def check_result(session: Session, job_id: int, offered: Offered) -> None:
    """Raise :class:`Refusal` unless ``offered`` is a result of job ``job_id`` that may be stored now."""
    job = session.get(Job, job_id)
    if job is None:
        raise Refusal(403, FailureReason.NOT_AUTHORIZED, f"job {job_id} is not in the index")
    if session.get(Study, offered.study_uid) is None:
        raise Refusal(409, FailureReason.DATASET_MISMATCH, f"study {offered.study_uid} is not on this node")
    if offered.study_uid != job.study_uid:
        raise Refusal(
            403,
            FailureReason.NOT_AUTHORIZED,
            f"the credential of job {job_id} covers study {job.study_uid} only, not {offered.study_uid}",
        )
    recorded = session.scalars(select(Result).where(Result.sop_uid == offered.sop_uid)).first()
    if recorded is not None:
        raise Refusal(
            409,
            FailureReason.DATASET_MISMATCH,
            f"{offered.sop_uid} is a result the node recorded (job {recorded.job_id}); it is not replaced",
        )
    if session.get(Instance, offered.sop_uid) is not None:
        raise Refusal(
            409, FailureReason.DATASET_MISMATCH, f"{offered.sop_uid} is an instance the node received"
        )
    if job.state != JobState.RUNNING:
        raise Refusal(
            409, FailureReason.DATASET_MISMATCH, f"job {job_id} is {job.state.value}: it takes no results now"
        )
    key = job_key(job.series_uid, job.pipeline, job.revision)
    if not is_job_result(key, offered.sop_uid, offered.series_uid):
        raise Refusal(403, FailureReason.NOT_AUTHORIZED, f"{offered.sop_uid} is not a result of job {job_id}")
    source = _source_patient_id(session, job.series_uid)
    if source is not None and offered.patient_id != source:
        raise Refusal(
            409, FailureReason.DATASET_MISMATCH, f"the patient differs from that of job {job_id}'s series"
        )


def _source_patient_id(session: Session, series_uid: str) -> str | None:
    """The Patient ID of the series a job ran on, from one of its stored instances (the index keeps
    no patient data)."""
    path = session.scalars(select(Instance.path).where(Instance.series_uid == series_uid).limit(1)).first()
    if path is None or not Path(path).is_file():
        return None
    header = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["PatientID"])
    return str(header.get("PatientID", ""))
