"""A SOP Instance UID received again: the same instance resent, or a conflict (another patient or
study under a UID the node holds), which ``storage.conflicting_resend`` decides and both studies'
audit trails record. Never an unindexed file: a copy kept apart is recorded, a replaced one removed.
A UID the node wrote as a result is refused outright.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import pydicom
from sqlalchemy import select

from radrouter.config.settings import ResendPolicy
from radrouter.storage.index import Hop, Index, Instance, ResentInstance, Result, Series, Study
from radrouter.storage.ingest import ReceivedInstance

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FirstCopy:
    """The instance the node holds under a SOP Instance UID."""

    study_uid: str
    series_uid: str
    path: str


@dataclass(frozen=True)
class HeldUnder:
    """What the node already holds under a SOP Instance UID a C-STORE brings.

    ``result_job``: the job whose result has this UID; the node wrote it, and it is never replaced by
    an instance received (a PACS sending the node's own results back would reopen the study).
    ``first``: the instance received before under it, if any."""

    result_job: int | None
    first: FirstCopy | None


def held_under(index: Index, sop_uid: str) -> HeldUnder:
    """Both looked up in one session: this runs for every instance received."""
    with index.session() as session:
        job_id = session.scalars(select(Result.job_id).where(Result.sop_uid == sop_uid)).first()
        row = session.execute(
            select(Series.study_uid, Instance.series_uid, Instance.path)
            .join(Series)
            .where(Instance.sop_uid == sop_uid)
        ).first()
    return HeldUnder(job_id, FirstCopy(*row) if row is not None else None)


def audit_refused_result(index: Index, received: ReceivedInstance, job_id: int) -> None:
    with index.session() as session:
        if session.get(Study, received.study_uid) is not None:
            index.record_event(
                session,
                received.study_uid,
                Hop.STORE_REFUSED,
                via="C-STORE",
                sop_uid=received.sop_uid,
                job=job_id,
                reason=f"{received.sop_uid} is a result the node recorded (job {job_id}); it is not replaced",
                calling_ae=received.calling_ae,
                calling_address=received.calling_address,
            )
    log.warning("refused C-STORE of %s: a result the node wrote (job %d)", received.sop_uid, job_id)


def patient_of(path: str) -> str | None:
    """The Patient ID in a stored file's header; None when the file cannot be read."""
    try:
        header = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["PatientID"])
    except (OSError, ValueError, EOFError, pydicom.errors.InvalidDicomError):
        return None
    return str(header.get("PatientID", ""))


def conflict(first: FirstCopy, study_uid: str, patient_id: str) -> str | None:
    """Why a resend is not the same instance again (another study, another patient); None if it is."""
    if first.study_uid != study_uid:
        return "another study"
    held = patient_of(first.path)
    if held is not None and held != patient_id:
        return "another patient"
    return None


def kept_apart_path(root: Path, received: ReceivedInstance, count: int) -> Path:
    """Where a copy kept apart goes: beside no instance the SCP writes, one file per copy."""
    return root / "resent" / received.study_uid / received.series_uid / f"{received.sop_uid}.{count}.dcm"


def copies_kept(index: Index, sop_uid: str) -> int:
    with index.session() as session:
        return len(session.scalars(select(ResentInstance.id).where(ResentInstance.sop_uid == sop_uid)).all())


def record_kept_apart(index: Index, received: ReceivedInstance) -> None:
    """Index a copy kept apart (its file is already at ``received.path``)."""
    with index.session() as session:
        session.add(
            ResentInstance(
                sop_uid=received.sop_uid,
                study_uid=received.study_uid,
                series_uid=received.series_uid,
                path=received.path,
                size=received.size,
                calling_ae=received.calling_ae[:16] or None,
            )
        )


def audit_resend(
    index: Index, first: FirstCopy, received: ReceivedInstance, why: str, policy: ResendPolicy
) -> None:
    """In the trail of the first copy's study, and of the resend's study when the node holds it."""
    detail = {
        "sop_uid": received.sop_uid,
        "conflict": why,
        "policy": policy.value,
        "first_study_uid": first.study_uid,
        "resent_study_uid": received.study_uid,
        "resent_series_uid": received.series_uid,
        "calling_ae": received.calling_ae,
        "calling_address": received.calling_address,
    }
    if policy == ResendPolicy.KEEP_FIRST:
        detail["kept_at"] = received.path
    with index.session() as session:
        for study_uid in dict.fromkeys((first.study_uid, received.study_uid)):
            if session.get(Study, study_uid) is not None:
                index.record_event(session, study_uid, Hop.RESENT, **detail)
    log.warning("SOP Instance %s resent with %s: %s", received.sop_uid, why, policy.value)
