"""Erasure on request: every stored instance, result, pseudonym and row of one patient or one study.

The index holds no patient ID, so a patient's studies are found in the stored headers (the first
instance of each series, or a result when retention already purged the instances). A study with work
in progress (not *finished* as storage/retention.py says) is refused unless forced.

Crash-safe like a purge: one transaction records the erasure (an ``erasures`` row: when, who asked,
counts; never the patient or the UIDs), marks its studies (``studies.erasure_id``) and deletes their
pseudonyms; then the files go; then each study's rows, the study row last. An erasure a crash
interrupted is finished by :func:`resume_erasures` (the next ``radrouter erase``, and every SCP start).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import pydicom
from pydicom.errors import InvalidDicomError
from sqlalchemy import CursorResult, delete, func, select, update
from sqlalchemy.orm import Session

from radrouter.storage.index import (
    Erasure,
    ErasureScope,
    Index,
    Instance,
    Job,
    Pseudonym,
    PseudonymKind,
    ResentInstance,
    Result,
    Series,
    Study,
    utcnow,
)
from radrouter.storage.retention import delete_study_rows, remove_empty_folders, study_finished
from radrouter.storage.store import InstanceStore

log = logging.getLogger(__name__)

#: The header attributes read to find a patient's studies and the UIDs its pseudonyms stand for.
_TAGS = ("PatientID", "StudyInstanceUID", "SeriesInstanceUID", "FrameOfReferenceUID", "SOPInstanceUID")


#: Pseudonyms whose original is a UID (a PATIENT pseudonym's original is the patient ID).
UID_KINDS = (PseudonymKind.STUDY, PseudonymKind.UID)


class ErasureRefused(Exception):
    """Nothing was erased: what was asked has work in progress, or was not found."""


@dataclass(frozen=True)
class ErasureReport:
    erasure_id: int
    studies: list[str]
    instances: int
    bytes: int
    results: int
    pseudonyms: int


def _header(path: Path) -> pydicom.Dataset | None:
    try:
        return pydicom.dcmread(path, stop_before_pixels=True, specific_tags=list(_TAGS))
    except (OSError, InvalidDicomError):
        return None


def _sample_files(
    session: Session, store: InstanceStore, study_uids: list[str] | None = None
) -> dict[str, list[Path]]:
    """Per study (every one, or ``study_uids``): the first instance of each series, then its results'
    files (what is left of a study whose instances retention purged)."""
    samples: dict[str, list[Path]] = {}
    first_of_series = select(func.min(Instance.sop_uid)).group_by(Instance.series_uid)
    first = (
        select(Series.study_uid, Instance.path)
        .join(Instance, Instance.series_uid == Series.uid)
        .where(Instance.sop_uid.in_(first_of_series.scalar_subquery()))
    )
    results = select(Job.study_uid, Result.path).join(Result, Result.job_id == Job.id)
    results = results.where(Result.purged_at.is_(None))
    if study_uids is not None:
        first = first.where(Series.study_uid.in_(study_uids))
        results = results.where(Job.study_uid.in_(study_uids))
    for study_uid, path in session.execute(first):
        samples.setdefault(study_uid, []).append(store.resolve(path))
    for study_uid, path in session.execute(results):
        samples.setdefault(study_uid, []).append(store.resolve(path))
    return samples


def studies_of_patient(index: Index, store: InstanceStore, patient_id: str) -> list[str]:
    """The studies whose stored headers name ``patient_id`` (one header read per series)."""
    with index.session() as session:
        samples = _sample_files(session, store)
    found = []
    for study_uid, paths in sorted(samples.items()):
        for path in paths:
            header = _header(path)
            if header is not None:
                if str(header.get("PatientID", "") or "") == patient_id:
                    found.append(study_uid)
                break  # one readable header tells the study's patient
    return found


def _in_progress(session: Session, study_uids: list[str]) -> dict[str, str]:
    """Each study among ``study_uids`` that is not finished, with its state."""
    finished = set(session.scalars(select(Study.uid).where(Study.uid.in_(study_uids), study_finished())))
    return {
        uid: state.value
        for uid, state in session.execute(select(Study.uid, Study.state).where(Study.uid.in_(study_uids)))
        if uid not in finished
    }


def _uids_of(session: Session, store: InstanceStore, study_uids: list[str]) -> set[str]:
    """The UIDs of the studies that a pseudonym may stand for: study, series, instances, results, and
    the frames of reference their headers name."""
    uids = set(study_uids)
    uids |= set(session.scalars(select(Series.uid).where(Series.study_uid.in_(study_uids))))
    uids |= set(
        session.scalars(
            select(Instance.sop_uid)
            .join(Series, Series.uid == Instance.series_uid)
            .where(Series.study_uid.in_(study_uids))
        )
    )
    for sop_uid, series_uid in session.execute(
        select(Result.sop_uid, Result.series_uid)
        .join(Job, Job.id == Result.job_id)
        .where(Job.study_uid.in_(study_uids))
    ):
        uids |= {sop_uid, series_uid}
    for paths in _sample_files(session, store, study_uids).values():
        for path in paths:
            header = _header(path)
            if header is not None and header.get("FrameOfReferenceUID"):
                uids.add(str(header.FrameOfReferenceUID))
    return uids


def erase(
    index: Index,
    store: InstanceStore,
    *,
    requested_by: str,
    patient_id: str | None = None,
    study_uid: str | None = None,
    force: bool = False,
) -> ErasureReport:
    """Erase one patient (every study its headers name, and its pseudonyms) or one study."""
    if (patient_id is None) == (study_uid is None):
        raise ValueError("erase one patient or one study")
    resume_erasures(index, store)
    if patient_id is not None:
        studies = studies_of_patient(index, store, patient_id)
    else:
        assert study_uid is not None
        with index.session() as session:
            studies = [study_uid] if session.get(Study, study_uid) is not None else []
    with index.session() as session:
        patient_pseudonyms = (
            list(
                session.scalars(
                    select(Pseudonym.pseudonym).where(
                        Pseudonym.kind == PseudonymKind.PATIENT, Pseudonym.original == patient_id
                    )
                )
            )
            if patient_id is not None
            else []
        )
        if not studies and not patient_pseudonyms:
            raise ErasureRefused(
                "no stored study names that patient ID" if patient_id is not None else "no such study"
            )
        busy = _in_progress(session, studies)
        if busy and not force:
            listed = ", ".join(f"{uid} ({state})" for uid, state in sorted(busy.items()))
            raise ErasureRefused(
                f"{len(busy)} study(ies) have work in progress and were not erased: {listed}; "
                "erase again when they have finished, or with --force to erase them now"
            )
        # Step 1: record the erasure, mark the studies and drop their pseudonyms, in one transaction.
        erasure = Erasure(
            scope=ErasureScope.PATIENT if patient_id is not None else ErasureScope.STUDY,
            requested_by=requested_by[:100],
            forced=bool(busy),
            studies=len(studies),
        )
        session.add(erasure)
        session.flush()
        session.execute(
            update(Study)
            .where(Study.uid.in_(studies))
            .values(erasure_id=erasure.id)
            .execution_options(synchronize_session=False)
        )
        uids = _uids_of(session, store, studies)
        dropped = cast(
            CursorResult[Any],
            session.execute(
                delete(Pseudonym)
                .where(
                    Pseudonym.pseudonym.in_(patient_pseudonyms)
                    | (Pseudonym.kind.in_(UID_KINDS) & Pseudonym.original.in_(uids))
                )
                .execution_options(synchronize_session=False)
            ),
        )
        erasure.pseudonyms = dropped.rowcount
        erasure_id = erasure.id
    log.warning(
        "erasure %d requested by %s: %d study(ies)%s",
        erasure_id,
        requested_by,
        len(studies),
        " (forced: work in progress)" if busy else "",
    )
    instances, size, results = _finish(index, store, erasure_id)
    return ErasureReport(erasure_id, studies, instances, size, results, dropped.rowcount)


def resume_erasures(index: Index, store: InstanceStore) -> list[int]:
    """Finish every erasure a crash interrupted (its studies still marked); the ids finished."""
    with index.session() as session:
        pending = list(session.scalars(select(Erasure.id).where(Erasure.finished_at.is_(None))))
    for erasure_id in pending:
        log.warning("finishing erasure %d that a crash interrupted", erasure_id)
        _finish(index, store, erasure_id)
    return pending


def _finish(index: Index, store: InstanceStore, erasure_id: int) -> tuple[int, int, int]:
    """Steps 2 and 3: each marked study's files, then its rows (the study row last); then the record."""
    with index.session() as session:
        studies = list(session.scalars(select(Study.uid).where(Study.erasure_id == erasure_id)))
    instances = size = results = 0
    for study_uid in studies:
        counts = _erase_study(index, store, study_uid)
        instances, size, results = instances + counts[0], size + counts[1], results + counts[2]
    with index.session() as session:
        erasure = session.get(Erasure, erasure_id)
        if erasure is not None:
            erasure.instances += instances
            erasure.bytes += size
            erasure.results += results
            erasure.finished_at = utcnow()
    return instances, size, results


def _unlink(paths: Iterable[Path], root: Path) -> None:
    folders = set()
    for path in paths:
        path.unlink(missing_ok=True)
        folders.add(path.parent)
    for folder in sorted(folders, reverse=True):
        remove_empty_folders(folder, root)


def _erase_study(index: Index, store: InstanceStore, study_uid: str) -> tuple[int, int, int]:
    with index.session() as session:
        instances = session.execute(
            select(Instance.path, Instance.size)
            .join(Series, Series.uid == Instance.series_uid)
            .where(Series.study_uid == study_uid)
        ).all()
        result_files = session.execute(
            select(Result.path, Result.fallback_path)
            .join(Job, Job.id == Result.job_id)
            .where(Job.study_uid == study_uid)
        ).all()
    # Step 2: the files (and the study's folders, which late writes may have left).
    _unlink((store.resolve(path) for path, _ in instances), store.root)
    _unlink((store.resolve(p) for pair in result_files for p in pair if p), store.root)
    for top in ("instances", "results", "resent"):  # resent: copies kept apart (storage/resend.py)
        folder = store.root / top / study_uid
        if folder.is_dir():
            for leftover in sorted(folder.rglob("*"), reverse=True):
                if leftover.is_file():
                    leftover.unlink()
                else:
                    leftover.rmdir()
            folder.rmdir()
    # Step 3: the rows, dependents first, the study (and its mark) last.
    with index.session() as session:
        # Erasure is asked for by name: no deletion lock keeps any row of the study.
        delete_study_rows(session, study_uid, keep_locked_workitems=False)
        session.execute(delete(ResentInstance).where(ResentInstance.study_uid == study_uid))
    result_count = len(result_files)
    return len(instances), sum(size for _, size in instances), result_count
