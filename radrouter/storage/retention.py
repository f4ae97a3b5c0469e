"""Retention: which stored files a finished study no longer needs, and their crash-safe purge.

A study is *finished* when it is DONE or FAILED and nothing of it is still in flight: no job QUEUED or
RUNNING, no delivery, forward or HL7 message PENDING (of any revision). Only finished studies are
ever purged. A finished study's instances are *due* ``retention.keep_images_h`` after it settled, its
results ``retention.keep_results_h`` after; above ``retention.high_watermark_pct`` of the storage
volume the oldest finished studies lose their instances before that, until ``low_watermark_pct``.

A purge is crash-safe: the study is marked in the index first (``purging_images_since``), then the
files go, then the instance rows (results keep their rows, marked ``purged_at``), then the mark is
cleared. A pass finishes every purge a crash left marked before it starts new ones, so the index never
keeps pointing at a purged file and no purged study leaves a file behind. The study and series rows
stay: a late instance reopens the study as a new revision, as it does any finished study.
"""

from __future__ import annotations

import logging
import shutil
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

from sqlalchemy import ColumnElement, CursorResult, Select, and_, delete, exists, func, select, update
from sqlalchemy.orm import Session

from radrouter.config.settings import RetentionSettings
from radrouter.storage.index import (
    AuditEvent,
    Delivery,
    DeliveryState,
    Feedback,
    Hl7Message,
    Hop,
    Index,
    Instance,
    Job,
    JobState,
    MonitoredResult,
    PriorityChange,
    Result,
    Series,
    Study,
    StudyState,
    WorklistItem,
    utcnow,
)
from radrouter.storage.steps import PerformedStep
from radrouter.storage.store import InstanceStore
from radrouter.storage.workitems import UpsSubscription, Workitem, WorkitemEvent, keep_locked

log = logging.getLogger(__name__)

FINISHED = (StudyState.DONE, StudyState.FAILED)
#: Instance rows deleted per statement (SQLite's bound-parameter limit is far above).
_CHUNK = 500


@dataclass(frozen=True)
class Candidate:
    """A finished study that still has files: what it holds and what retention allows now."""

    study_uid: str
    state: StudyState
    settled_at: datetime
    instances: int
    image_bytes: int
    results: int
    images_due: bool
    results_due: bool


@dataclass(frozen=True)
class PurgeItem:
    """What one purge of one study removes, and why (``due``: its keep time passed; ``watermark``)."""

    study_uid: str
    images: bool
    results: bool
    image_bytes: int
    reason: str


@dataclass(frozen=True)
class DiskUsage:
    total: int
    used: int
    free: int

    @property
    def used_pct(self) -> float:
        return 100.0 * self.used / self.total if self.total else 0.0


@dataclass(frozen=True)
class PurgeReport:
    """One pass: purges a crash had interrupted and finished now, and the purges made (or planned);
    ``forgotten``: studies whose rows went (or would go), ``retention.keep_records_days`` after their
    files."""

    resumed: list[str]
    purged: list[PurgeItem]
    instances_removed: int
    bytes_removed: int
    results_removed: int
    disk_before: DiskUsage
    dry_run: bool
    forgotten: list[str] = field(default_factory=list)


def disk_usage(store: InstanceStore) -> DiskUsage:
    usage = shutil.disk_usage(store.root)
    return DiskUsage(usage.total, usage.used, usage.free)


def _busy_study_uids() -> ColumnElement[bool]:
    """True for a study with anything in flight, whatever its revision: such a study is never purged."""
    busy_jobs = select(Job.study_uid).where(Job.state.in_((JobState.QUEUED, JobState.RUNNING)))
    busy_forwards = select(Delivery.study_uid).where(
        Delivery.state == DeliveryState.PENDING, Delivery.study_uid.is_not(None)
    )
    busy_results = (
        select(Job.study_uid)
        .join(Result, Result.job_id == Job.id)
        .join(Delivery, Delivery.result_id == Result.id)
        .where(Delivery.state == DeliveryState.PENDING)
    )
    busy_hl7 = select(Hl7Message.study_uid).where(Hl7Message.state == DeliveryState.PENDING)
    return Study.uid.in_(busy_jobs.union(busy_forwards, busy_results, busy_hl7).scalar_subquery())


def study_finished() -> ColumnElement[bool]:
    """Finished, and not being erased (storage/erasure.py removes those itself)."""
    return and_(Study.state.in_(FINISHED), ~_busy_study_uids(), Study.erasure_id.is_(None))


def forgettable(purged_before: datetime) -> ColumnElement[bool]:
    """True for a finished study that has no file left (every instance and result purged), the last
    of them before ``purged_before``: its rows are all that is left of it."""
    instances = (
        select(Instance.sop_uid)
        .join(Series, Series.uid == Instance.series_uid)
        .where(Series.study_uid == Study.uid)
    )
    results = (
        select(Result.id)
        .join(Job, Job.id == Result.job_id)
        .where(Job.study_uid == Study.uid, Result.purged_at.is_(None))
    )
    return and_(
        study_finished(),
        Study.purging_images_since.is_(None),
        Study.purging_results_since.is_(None),
        Study.images_purged_at.is_not(None),
        Study.images_purged_at <= purged_before,
        Study.results_purged_at.is_(None) | (Study.results_purged_at <= purged_before),
        ~exists(instances),
        ~exists(results),
    )


def _candidates_query() -> Select[Any]:
    images = (
        select(
            Series.study_uid.label("study_uid"),
            func.count(Instance.sop_uid).label("count"),
            func.sum(Instance.size).label("bytes"),
        )
        .join(Instance, Instance.series_uid == Series.uid)
        .group_by(Series.study_uid)
        .subquery()
    )
    results = (
        select(Job.study_uid.label("study_uid"), func.count(Result.id).label("count"))
        .join(Result, Result.job_id == Job.id)
        .where(Result.purged_at.is_(None))
        .group_by(Job.study_uid)
        .subquery()
    )
    settled = func.coalesce(Study.settled_at, Study.last_received_at)
    return (
        select(
            Study.uid,
            Study.state,
            settled,
            images.c.count,
            images.c.bytes,
            results.c.count,
            Study.keep_images_h,
            Study.keep_results_h,
        )
        .outerjoin(images, images.c.study_uid == Study.uid)
        .outerjoin(results, results.c.study_uid == Study.uid)
        .where(
            study_finished(),
            Study.purging_images_since.is_(None),
            Study.purging_results_since.is_(None),
            (func.coalesce(images.c.count, 0) > 0) | (func.coalesce(results.c.count, 0) > 0),
        )
        .order_by(settled, Study.uid)
    )


def finished_studies(
    index: Index, retention: RetentionSettings, now: datetime | None = None
) -> list[Candidate]:
    """Every finished study that still has instances or results, the longest settled first. Its keep
    times are those its rules asked for (``retention:`` on a rule), else the global ones."""
    now = now or utcnow()

    def kept_until(settled: datetime, rule_h: float | None, global_h: float) -> datetime:
        return settled + timedelta(hours=global_h if rule_h is None else rule_h)

    with index.session() as session:
        rows = session.execute(_candidates_query()).all()
    return [
        Candidate(
            study_uid=uid,
            state=state,
            settled_at=settled,
            instances=instances or 0,
            image_bytes=int(image_bytes or 0),
            results=results or 0,
            images_due=bool(instances) and kept_until(settled, keep_images, retention.keep_images_h) <= now,
            results_due=bool(results) and kept_until(settled, keep_results, retention.keep_results_h) <= now,
        )
        for uid, state, settled, instances, image_bytes, results, keep_images, keep_results in rows
    ]


def plan_purge(candidates: list[Candidate], retention: RetentionSettings, disk: DiskUsage) -> list[PurgeItem]:
    """What is due, plus (above the high watermark) the oldest finished studies' instances until the
    volume would be back at the low watermark."""
    plan = {
        c.study_uid: PurgeItem(c.study_uid, c.images_due, c.results_due, c.image_bytes, "due")
        for c in candidates
        if c.images_due or c.results_due
    }
    if disk.total and disk.used_pct > retention.high_watermark_pct:
        to_free = disk.used - int(disk.total * retention.low_watermark_pct / 100)
        to_free -= sum(item.image_bytes for item in plan.values() if item.images)
        for candidate in candidates:  # the longest settled first
            if to_free <= 0:
                break
            if candidate.images_due or not candidate.instances:
                continue
            planned = plan.get(candidate.study_uid)
            plan[candidate.study_uid] = PurgeItem(
                candidate.study_uid,
                True,
                planned.results if planned else False,
                candidate.image_bytes,
                "watermark",
            )
            to_free -= candidate.image_bytes
    order = {c.study_uid: n for n, c in enumerate(candidates)}
    return sorted(plan.values(), key=lambda item: order[item.study_uid])


class Purger:
    """Runs retention passes: finish interrupted purges, then purge what is due or over the watermark."""

    def __init__(
        self, retention: RetentionSettings, index: Index, store: InstanceStore, reserve_bytes: int = 0
    ) -> None:
        self.retention = retention
        self.index = index
        self.store = store
        #: ``storage.free_space_reserve_mb``: a pass that ends within it with nothing left to purge
        #: says why the SCP refuses (a WARNING); 0: not checked.
        self.reserve_bytes = reserve_bytes
        self._lock = threading.Lock()

    def run_once(
        self, dry_run: bool = False, now: datetime | None = None, resume: bool = True
    ) -> PurgeReport:
        """``resume``: first finish the purges a crash left marked (the SCP's timed pass does; a pass
        the SCP runs before refusing an instance leaves them to it, as one may be running now)."""
        with self._lock:
            return self._pass(dry_run, now, resume)

    def _pass(self, dry_run: bool, now: datetime | None, resume: bool = True) -> PurgeReport:
        resumed: list[str] = []
        totals = [0, 0, 0]
        if resume and not dry_run:
            for study_uid, images_mark, results_mark in self._interrupted():
                log.warning("finishing the purge of study %s that a crash interrupted", study_uid)
                if self._finish_or_log(totals, study_uid, images_mark, results_mark, "resumed"):
                    resumed.append(study_uid)
        disk = disk_usage(self.store)
        plan = plan_purge(finished_studies(self.index, self.retention, now), self.retention, disk)
        purged: list[PurgeItem] = []
        for item in plan:
            if dry_run:
                purged.append(item)
                continue
            marks = self._mark(item)
            if marks is None:
                continue  # it was reopened or got work meanwhile
            if self._finish_or_log(totals, item.study_uid, *marks, item.reason):
                purged.append(item)
        if purged and not dry_run:
            log.info(
                "retention purged %d study(ies): %d instance(s), %d bytes, %d result(s); disk %.1f%% used",
                len(purged),
                totals[0],
                totals[1],
                totals[2],
                disk.used_pct,
            )
        forgotten = self._forget(dry_run, now) if resume else []
        if self.reserve_bytes and not dry_run and disk_usage(self.store).free <= self.reserve_bytes:
            overview = storage_overview(self.index, self.store, self.retention, self.reserve_bytes, now)
            if overview.stuck:
                log.warning(overview.why_stuck())
        return PurgeReport(resumed, purged, totals[0], totals[1], totals[2], disk, dry_run, forgotten)

    def _forget(self, dry_run: bool, now: datetime | None) -> list[str]:
        """The rows of studies whose files all went ``retention.keep_records_days`` ago: each study in one
        transaction that first re-checks it (a late instance may have reopened it)."""
        before = (now or utcnow()) - timedelta(days=self.retention.keep_records_days)
        with self.index.session() as session:
            uids = list(session.scalars(select(Study.uid).where(forgettable(before))))
        if dry_run:
            return uids
        forgotten = []
        for uid in uids:
            with self.index.session() as session:
                # The re-check takes the study row's lock (SQLite: the write lock) before any delete.
                claimed = cast(
                    CursorResult[Any],
                    session.execute(
                        update(Study)
                        .where(Study.uid == uid, forgettable(before))
                        .values(purging_images_since=None)
                        .execution_options(synchronize_session=False)
                    ),
                )
                if claimed.rowcount != 1:
                    continue
                delete_study_rows(session, uid)
            forgotten.append(uid)
        if forgotten:
            log.info(
                "retention deleted the index rows of %d study(ies) purged over %g day(s) ago",
                len(forgotten),
                self.retention.keep_records_days,
            )
        return forgotten

    def _finish_or_log(
        self,
        totals: list[int],
        study_uid: str,
        images_mark: datetime | None,
        results_mark: datetime | None,
        reason: str,
    ) -> bool:
        """Finish one marked purge and count it; a file that cannot be deleted (EBUSY, EACCES) fails
        that study's purge alone: it stays marked, the next pass tries again, the others go on."""
        try:
            counts = self._finish(study_uid, images_mark, results_mark, reason)
        except OSError as error:
            log.error(
                "purge of study %s stopped (%s: %s); it stays marked and the next pass tries again",
                study_uid,
                type(error).__name__,
                error.strerror,
            )
            return False
        for n, count in enumerate(counts):
            totals[n] += count
        return True

    def _interrupted(self) -> list[tuple[str, datetime | None, datetime | None]]:
        with self.index.session() as session:
            rows = session.execute(
                select(Study.uid, Study.purging_images_since, Study.purging_results_since).where(
                    Study.purging_images_since.is_not(None) | Study.purging_results_since.is_not(None)
                )
            ).all()
        return [(uid, images, results) for uid, images, results in rows]

    def _mark(self, item: PurgeItem) -> tuple[datetime | None, datetime | None] | None:
        """Step 1: mark the study, only if it is still finished (one statement: the SCP may reopen it)."""
        now = utcnow()
        values: dict[str, datetime] = {}
        if item.images:
            values["purging_images_since"] = now
        if item.results:
            values["purging_results_since"] = now
        with self.index.session() as session:
            marked = cast(
                CursorResult[Any],
                session.execute(
                    update(Study)
                    .where(
                        Study.uid == item.study_uid,
                        study_finished(),
                        Study.purging_images_since.is_(None),
                        Study.purging_results_since.is_(None),
                    )
                    .values(**values)
                    .execution_options(synchronize_session=False)
                ),
            )
            if marked.rowcount != 1:
                return None
        return (now if item.images else None, now if item.results else None)

    def _finish(
        self, study_uid: str, images_mark: datetime | None, results_mark: datetime | None, reason: str
    ) -> tuple[int, int, int]:
        """Steps 2 and 3: files, then rows, then the mark goes; safe to run again after a crash."""
        instances = size = results = 0
        if images_mark is not None:
            instances, size = self._purge_images(study_uid, images_mark)
        if results_mark is not None:
            results = self._purge_results(study_uid, results_mark)
        now = utcnow()
        with self.index.session() as session:
            study = session.get(Study, study_uid)
            if study is None:
                return instances, size, results
            if images_mark is not None:
                study.purging_images_since, study.images_purged_at = None, now
            if results_mark is not None:
                study.purging_results_since, study.results_purged_at = None, now
            self.index.record_event(
                session,
                study_uid,
                Hop.PURGED,
                instances=instances,
                bytes=size,
                results=results,
                reason=reason,
            )
        return instances, size, results

    def _purge_images(self, study_uid: str, mark: datetime) -> tuple[int, int]:
        with self.index.session() as session:
            rows = session.execute(
                select(Instance.sop_uid, Instance.path, Instance.size)
                .join(Series, Series.uid == Instance.series_uid)
                .where(Series.study_uid == study_uid, Instance.received_at <= mark)
                .order_by(Instance.path)
            ).all()
        # A file newer than the mark is a late instance (written again under the same path): it stays.
        newest = mark.replace(tzinfo=UTC).timestamp()
        folders: set[Path] = set()
        for _, recorded, _ in rows:
            path = self.store.resolve(recorded)
            try:
                if path.stat().st_mtime <= newest:
                    path.unlink()
            except FileNotFoundError:
                pass  # gone already: an earlier pass that a crash interrupted
            folders.add(path.parent)
        removed = 0
        for start in range(0, len(rows), _CHUNK):
            chunk = [sop_uid for sop_uid, _, _ in rows[start : start + _CHUNK]]
            with self.index.session() as session:
                deleted = cast(
                    CursorResult[Any],
                    session.execute(
                        delete(Instance)
                        .where(Instance.sop_uid.in_(chunk), Instance.received_at <= mark)
                        .execution_options(synchronize_session=False)
                    ),
                )
                removed += deleted.rowcount
        for folder in sorted(folders, reverse=True):
            remove_empty_folders(folder, self.store.root)
        return removed, sum(size for _, _, size in rows)

    def _purge_results(self, study_uid: str, mark: datetime) -> int:
        with self.index.session() as session:
            rows = session.execute(
                select(Result.id, Result.path, Result.fallback_path)
                .join(Job, Job.id == Result.job_id)
                .where(Job.study_uid == study_uid, Result.purged_at.is_(None), Result.created_at <= mark)
            ).all()
        folders: set[Path] = set()
        for _, recorded, fallback in rows:
            for name in (recorded, fallback):
                if name:
                    path = self.store.resolve(name)
                    path.unlink(missing_ok=True)
                    folders.add(path.parent)
        ids = [result_id for result_id, _, _ in rows]
        if ids:
            with self.index.session() as session:
                session.execute(
                    update(Result)
                    .where(Result.id.in_(ids))
                    .values(purged_at=utcnow())
                    .execution_options(synchronize_session=False)
                )
        for folder in folders:
            remove_empty_folders(folder, self.store.root)
        return len(ids)


def delete_study_rows(session: Session, study_uid: str, keep_locked_workitems: bool = True) -> None:
    """Every index row of a study, dependents first, the study row last (in the caller's transaction):
    jobs and their UPS workitems and subscriptions, results, deliveries, HL7 messages, worklist items
    and priority changes, feedback, monitored results, MPPS steps, audit events, instances, series.
    Pseudonyms are not the study's rows: erasure drops them. ``keep_locked_workitems``: a workitem a
    subscriber holds a deletion lock on stays (UIDs and states only) until released."""
    going = Workitem.study_uid == study_uid
    if keep_locked_workitems:
        keep_locked(session, study_uid)
        going = going & Workitem.kept_for_lock.is_(False)
    jobs = select(Job.id).where(Job.study_uid == study_uid).scalar_subquery()
    results = select(Result.id).where(Result.job_id.in_(jobs)).scalar_subquery()
    series = select(Series.uid).where(Series.study_uid == study_uid).scalar_subquery()
    workitems = select(Workitem.uid).where(going).scalar_subquery()
    statements = [
        delete(WorkitemEvent).where(WorkitemEvent.workitem_uid.in_(workitems)),
        delete(UpsSubscription).where(UpsSubscription.workitem_uid.in_(workitems)),
        delete(Workitem).where(going),
        delete(PerformedStep).where(PerformedStep.study_uid == study_uid),
        delete(Feedback).where(Feedback.result_id.in_(results)),
        delete(MonitoredResult).where(
            MonitoredResult.result_id.in_(results) | (MonitoredResult.study_uid == study_uid)
        ),
        delete(Delivery).where(Delivery.result_id.in_(results) | (Delivery.study_uid == study_uid)),
        delete(Hl7Message).where(Hl7Message.job_id.in_(jobs) | (Hl7Message.study_uid == study_uid)),
        delete(Result).where(Result.id.in_(results)),
        delete(Job).where(Job.study_uid == study_uid),
        delete(PriorityChange).where(PriorityChange.study_uid == study_uid),
        delete(WorklistItem).where(WorklistItem.study_uid == study_uid),
        delete(AuditEvent).where(AuditEvent.study_uid == study_uid),
        delete(Instance).where(Instance.series_uid.in_(series)),
        delete(Series).where(Series.study_uid == study_uid),
        delete(Study).where(Study.uid == study_uid),
    ]
    for statement in statements:
        session.execute(statement.execution_options(synchronize_session=False))


def remove_empty_folders(folder: Path, root: Path) -> None:
    """Remove ``folder`` and its empty parents up to (not including) the storage root's top folders."""
    while folder.is_relative_to(root) and len(folder.relative_to(root).parts) > 1:
        try:
            folder.rmdir()
        except OSError:
            return  # not empty (or gone): leave it
        folder = folder.parent


def start_purger(
    retention: RetentionSettings, index: Index, store: InstanceStore, reserve_bytes: int = 0
) -> threading.Event:
    """Run a retention pass now and then every ``retention.interval_s`` on a daemon thread; set the
    event to stop."""
    purger = Purger(retention, index, store, reserve_bytes)
    stop = threading.Event()

    def loop() -> None:
        while True:
            try:
                purger.run_once()
            except Exception as error:
                log.error(
                    "retention pass failed (%s); next pass in %.0f s",
                    type(error).__name__,
                    retention.interval_s,
                )
            if stop.wait(retention.interval_s):
                return

    threading.Thread(target=loop, name="retention", daemon=True).start()
    return stop


@dataclass(frozen=True)
class StateUsage:
    """The studies of one state, their instances and the bytes those take."""

    state: StudyState
    studies: int
    instances: int
    bytes: int


def usage_by_state(index: Index) -> list[StateUsage]:
    """Stored instances by their study's state (every state listed, empty ones as zero)."""
    with index.session() as session:
        studies = dict(
            session.execute(select(Study.state, func.count(Study.uid)).group_by(Study.state)).all()
        )
        stored = {
            state: (count, int(size or 0))
            for state, count, size in session.execute(
                select(Study.state, func.count(Instance.sop_uid), func.sum(Instance.size))
                .join(Series, Series.study_uid == Study.uid)
                .join(Instance, Instance.series_uid == Series.uid)
                .group_by(Study.state)
            )
        }
    return [StateUsage(state, studies.get(state, 0), *stored.get(state, (0, 0))) for state in StudyState]


def purged_studies(index: Index) -> int:
    """Studies whose instances retention has purged at least once."""
    with index.session() as session:
        return session.scalar(select(func.count(Study.uid)).where(Study.images_purged_at.is_not(None))) or 0


@dataclass(frozen=True)
class StorageOverview:
    """What the dashboard and /metrics show of the storage volume and retention."""

    disk: DiskUsage
    by_state: list[StateUsage]
    #: Finished studies' instances: purged when due, or earlier above the high watermark.
    eligible_bytes: int
    #: The part of those whose keep time has passed.
    due_bytes: int
    purged_studies: int
    #: ``storage.free_space_reserve_mb``: below it the SCP answers Out of Resources.
    reserve_bytes: int

    @property
    def reserve_reached(self) -> bool:
        return self.disk.free <= self.reserve_bytes

    @property
    def stuck(self) -> bool:
        """The reserve is reached and retention has nothing to purge: C-STOREs are refused until a
        study finishes (its work done and delivered) or the volume grows."""
        return self.reserve_reached and self.eligible_bytes == 0

    def why_stuck(self) -> str:
        unfinished = sum(row.bytes for row in self.by_state if row.state not in FINISHED)
        return (
            f"storage free space {self.disk.free / 1e6:.0f} MB is within the reserve of "
            f"{self.reserve_bytes / 1e6:.0f} MB and no finished study is left to purge "
            f"({unfinished / 1e6:.0f} MB belong to studies with work in progress): the SCP answers "
            "Out of Resources until studies finish or the volume grows"
        )

    def as_json(self) -> dict[str, Any]:
        return {
            "total_bytes": self.disk.total,
            "used_bytes": self.disk.used,
            "free_bytes": self.disk.free,
            "used_pct": round(self.disk.used_pct, 1),
            "reserve_bytes": self.reserve_bytes,
            "eligible_bytes": self.eligible_bytes,
            "due_bytes": self.due_bytes,
            "purged_studies": self.purged_studies,
            "bytes_by_state": {row.state.value: row.bytes for row in self.by_state},
            "reserve_reached": self.reserve_reached,
            "stuck": self.stuck,
            "why": self.why_stuck() if self.stuck else None,
        }


def storage_overview(
    index: Index,
    store: InstanceStore,
    retention: RetentionSettings,
    reserve_bytes: int,
    now: datetime | None = None,
) -> StorageOverview:
    candidates = finished_studies(index, retention, now)
    return StorageOverview(
        disk=disk_usage(store),
        by_state=usage_by_state(index),
        eligible_bytes=sum(c.image_bytes for c in candidates),
        due_bytes=sum(c.image_bytes for c in candidates if c.images_due),
        purged_studies=purged_studies(index),
        reserve_bytes=reserve_bytes,
    )
