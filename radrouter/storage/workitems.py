"""Every AI job as a Unified Procedure Step workitem (IHE AI Workflow for Imaging, the node as Task
Manager): what a RIS, PACS or viewer watches, and what an outside Task Performer may claim.

The Celery path and UPS-RS (``web/ups.py``) change workitems through the same functions here, and
each change is an event row, so a watcher in another process (the web app's WebSocket) learns of
changes made by workers without anyone polling the workitems themselves. PS3.4 Annex CC states.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from pydicom.uid import generate_uid
from sqlalchemy import JSON, ForeignKey, Integer, String, delete, func, select, update
from sqlalchemy.orm import Mapped, Session, mapped_column

from radrouter.config.rules import Priority
from radrouter.storage.index import Base, Index, Job, JobState, coded, settle_study, utcnow


class UpsState(enum.StrEnum):
    """Procedure Step State (0074,1000)."""

    SCHEDULED = "SCHEDULED"
    IN_PROGRESS = "IN PROGRESS"
    COMPLETED = "COMPLETED"
    CANCELED = "CANCELED"


class UpsPriority(enum.StrEnum):
    """Scheduled Procedure Step Priority (0074,1200)."""

    HIGH = "HIGH"
    MEDIUM = "MEDIUM"
    LOW = "LOW"


_UPS_PRIORITY = {
    Priority.STAT: UpsPriority.HIGH,
    Priority.URGENT: UpsPriority.MEDIUM,
    Priority.ROUTINE: UpsPriority.LOW,
}


class UpsEventType(enum.IntEnum):
    """Event Type ID of a UPS event report (PS3.4 CC.2.4)."""

    STATE_REPORT = 1
    CANCEL_REQUESTED = 2


class UpsRefusal(enum.Enum):
    """Why a change was refused (UPS-RS answers 404 or 409, PS3.18 11.6 and 11.7)."""

    NO_SUCH_WORKITEM = enum.auto()
    WRONG_TRANSACTION = enum.auto()  # the Transaction UID does not own the workitem
    NOT_ALLOWED = enum.auto()  # the state may not go there from where it is


class UpsError(Exception):
    def __init__(self, refusal: UpsRefusal, detail: str) -> None:
        super().__init__(detail)
        self.refusal = refusal


class Workitem(Base):
    __tablename__ = "workitems"

    uid: Mapped[str] = mapped_column(String(64), primary_key=True)
    #: The job it stands for; None: created over UPS-RS for an outside performer only.
    job_id: Mapped[int | None] = mapped_column(ForeignKey("jobs.id"), unique=True)
    study_uid: Mapped[str] = mapped_column(String(64), index=True)
    input_series: Mapped[list[str]] = mapped_column(JSON, default=list)
    #: Scheduled Workitem Code: the pipeline's name.
    pipeline: Mapped[str] = mapped_column(String(64))
    priority: Mapped[UpsPriority] = mapped_column(coded(UpsPriority))
    state: Mapped[UpsState] = mapped_column(coded(UpsState), default=UpsState.SCHEDULED)
    #: Of the performer that claimed it; never shown (PS3.4 CC.1.1: only the owner knows it).
    transaction_uid: Mapped[str | None] = mapped_column(String(64))
    performer: Mapped[str | None] = mapped_column(String(200))
    #: Claimed over UPS-RS (an outside Task Performer), not by a Celery worker.
    outside: Mapped[bool] = mapped_column(default=False)
    #: ``{"series_uid", "sop_class_uid", "sop_uid"}`` per output object (SEG, SR).
    outputs: Mapped[list[dict[str, str]]] = mapped_column(JSON, default=list)
    reason: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    changed_at: Mapped[datetime] = mapped_column(default=utcnow)
    #: Its study is gone by retention; kept while a subscriber holds a deletion lock on it.
    kept_for_lock: Mapped[bool] = mapped_column(default=False)


class WorkitemEvent(Base):
    """One state report or cancel request, in order (WebSocket subscribers read these)."""

    __tablename__ = "workitem_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    workitem_uid: Mapped[str] = mapped_column(String(64), index=True)
    event_type: Mapped[int] = mapped_column(Integer)
    state: Mapped[UpsState] = mapped_column(coded(UpsState))
    reason: Mapped[str | None] = mapped_column(String(200))
    at: Mapped[datetime] = mapped_column(default=utcnow)


#: The well-known UPS instance a subscription to every workitem names (PS3.4 CC.3.1).
GLOBAL_SUBSCRIPTION = "1.2.840.10008.5.1.4.34.5"
#: The well-known UPS instance of a subscription to the workitems that match a filter.
FILTERED_SUBSCRIPTION = "1.2.840.10008.5.1.4.34.5.1"


class WorkitemKey(enum.StrEnum):
    """The attributes a search or a filtered subscription matches on, by keyword."""

    STATE = "ProcedureStepState"
    STUDY = "StudyInstanceUID"
    PIPELINE = "ScheduledWorkitemCodeSequence.CodeValue"
    PRIORITY = "ScheduledProcedureStepPriority"


#: The same attributes by tag (path), as DICOMweb query keys may name them.
_BY_TAG = {
    "00741000": WorkitemKey.STATE,
    "0020000D": WorkitemKey.STUDY,
    "00404018.00080100": WorkitemKey.PIPELINE,
    "00741200": WorkitemKey.PRIORITY,
}


def workitem_key(name: str) -> WorkitemKey | None:
    """The matching key a query parameter names (keyword or tag), or None."""
    if name in _BY_TAG:
        return _BY_TAG[name]
    return WorkitemKey(name) if name in set(WorkitemKey) else None


#: The workitem's column each key matches, and for coded columns the codes it may hold.
_COLUMNS: dict[WorkitemKey, tuple[Any, type[enum.StrEnum] | None]] = {
    WorkitemKey.STATE: (Workitem.state, UpsState),
    WorkitemKey.STUDY: (Workitem.study_uid, None),
    WorkitemKey.PIPELINE: (Workitem.pipeline, None),
    WorkitemKey.PRIORITY: (Workitem.priority, UpsPriority),
}


def matches(item: Workitem, wanted: dict[str, str]) -> bool:
    """Whether ``item`` has every value of ``wanted`` (keys are :class:`WorkitemKey` values)."""
    return all(
        str(getattr(item, _COLUMNS[WorkitemKey(key)][0].key)) == value for key, value in wanted.items()
    )


def matching(wanted: dict[str, str]) -> list[Any] | None:
    """``wanted`` as SQL conditions on workitems; None where no workitem can match (a code that is
    none of its column's)."""
    conditions = []
    for key, value in wanted.items():
        column, codes = _COLUMNS[WorkitemKey(key)]
        if codes is not None:
            if value not in set(codes):
                return None
            conditions.append(column == codes(value))
        else:
            conditions.append(column == value)
    return conditions


class UpsSubscription(Base):
    """A subscriber AE title following one workitem, every workitem (the global UPS instance UID) or
    those matching a filter (the filtered one); kept in the index, so a subscription outlives a restart
    of the web app (PS3.4 CC.2.3). A global or filtered subscription subscribes the AE to each workitem
    as it is reported (matching the filter then), so that suspending it keeps those it follows.

    A deletion lock keeps the workitem, once its study has gone by retention, until the AE
    unsubscribes from it: it has then seen the final state (PS3.4 CC.2.3.2)."""

    __tablename__ = "ups_subscriptions"

    ae_title: Mapped[str] = mapped_column(String(16), primary_key=True)
    workitem_uid: Mapped[str] = mapped_column(String(64), primary_key=True)
    deletion_lock: Mapped[bool] = mapped_column(default=False)
    #: A filtered subscription's match, by :class:`WorkitemKey` value.
    filter: Mapped[dict[str, str] | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


def subscribe(
    index: Index,
    ae_title: str,
    workitem_uid: str,
    deletion_lock: bool = False,
    wanted: dict[str, str] | None = None,
) -> None:
    """Subscribe (again: the lock and the filter are the new ones); a global or filtered subscription
    also subscribes the AE to each workitem not yet ended that it covers now."""
    with index.session() as session:
        found = session.get(UpsSubscription, (ae_title, workitem_uid))
        if found is None:
            found = UpsSubscription(ae_title=ae_title, workitem_uid=workitem_uid)
            session.add(found)
        found.deletion_lock, found.filter = deletion_lock, wanted
        if workitem_uid in (GLOBAL_SUBSCRIPTION, FILTERED_SUBSCRIPTION):
            open_items = select(Workitem).where(
                Workitem.state.in_([UpsState.SCHEDULED, UpsState.IN_PROGRESS])
            )
            for item in session.scalars(open_items):
                if matches(item, wanted or {}):
                    _follow(session, ae_title, item.uid, deletion_lock)


def _follow(session: Session, ae_title: str, workitem_uid: str, deletion_lock: bool) -> None:
    if session.get(UpsSubscription, (ae_title, workitem_uid)) is None:
        session.add(
            UpsSubscription(ae_title=ae_title, workitem_uid=workitem_uid, deletion_lock=deletion_lock)
        )


def unsubscribe(index: Index, ae_title: str, workitem_uid: str) -> None:
    """End one subscription; a global one ends with the workitems it subscribed the AE to (PS3.4
    CC.2.3.3). A workitem kept only by this AE's deletion lock, whose study is gone, goes too."""
    with index.session() as session:
        found = session.get(UpsSubscription, (ae_title, workitem_uid))
        if found is not None:
            session.delete(found)
        if workitem_uid in (GLOBAL_SUBSCRIPTION, FILTERED_SUBSCRIPTION):
            session.execute(delete(UpsSubscription).where(UpsSubscription.ae_title == ae_title))
        session.flush()
        _delete_released(session)


def suspend(index: Index, ae_title: str) -> None:
    """Suspend a global (or filtered) subscription: no workitem is added to it from now on, and the AE
    keeps following those it was subscribed to (PS3.18 11.10)."""
    with index.session() as session:
        session.execute(
            delete(UpsSubscription).where(
                UpsSubscription.ae_title == ae_title,
                UpsSubscription.workitem_uid.in_([GLOBAL_SUBSCRIPTION, FILTERED_SUBSCRIPTION]),
            )
        )


def subscribed(index: Index, ae_title: str) -> set[str]:
    """The workitem UIDs ``ae_title`` follows."""
    with index.session() as session:
        query = select(UpsSubscription.workitem_uid).where(UpsSubscription.ae_title == ae_title)
        return set(session.scalars(query))


def keep_locked(session: Session, study_uid: str) -> None:
    """Before a study's rows go by retention: its workitems a subscriber holds a deletion lock on stay,
    apart from the job (which goes), until the lock is released."""
    held = select(UpsSubscription.workitem_uid).where(UpsSubscription.deletion_lock.is_(True))
    session.execute(
        update(Workitem)
        .where(Workitem.study_uid == study_uid, Workitem.uid.in_(held))
        .values(job_id=None, kept_for_lock=True)
        .execution_options(synchronize_session=False)
    )


def _delete_released(session: Session) -> None:
    """Workitems kept for a deletion lock (their job gone with their study) that no lock holds now."""
    held = select(UpsSubscription.workitem_uid).where(UpsSubscription.deletion_lock.is_(True))
    released = select(Workitem.uid).where(
        Workitem.job_id.is_(None), Workitem.kept_for_lock.is_(True), Workitem.uid.not_in(held)
    )
    uids = list(session.scalars(released))
    if uids:
        session.execute(delete(WorkitemEvent).where(WorkitemEvent.workitem_uid.in_(uids)))
        session.execute(delete(UpsSubscription).where(UpsSubscription.workitem_uid.in_(uids)))
        session.execute(delete(Workitem).where(Workitem.uid.in_(uids)))


def _report(session: Session, item: Workitem, event: UpsEventType = UpsEventType.STATE_REPORT) -> None:
    """Record the event; every global subscription, and every filtered one the workitem matches now,
    subscribes its AE to the workitem first, so the event reaches it."""
    item.changed_at = utcnow()
    covering = select(UpsSubscription).where(
        UpsSubscription.workitem_uid.in_([GLOBAL_SUBSCRIPTION, FILTERED_SUBSCRIPTION])
    )
    for subscription in session.scalars(covering):
        if matches(item, subscription.filter or {}):
            _follow(session, subscription.ae_title, item.uid, subscription.deletion_lock)
    session.add(
        WorkitemEvent(workitem_uid=item.uid, event_type=int(event), state=item.state, reason=item.reason)
    )


def schedule(
    session: Session,
    study_uid: str,
    series: list[str],
    pipeline: str,
    priority: UpsPriority,
    job_id: int | None = None,
    uid: str | None = None,
) -> Workitem:
    item = Workitem(
        uid=uid or generate_uid(),
        job_id=job_id,
        study_uid=study_uid,
        input_series=series,
        pipeline=pipeline,
        priority=priority,
        state=UpsState.SCHEDULED,
    )
    session.add(item)
    session.flush()
    _report(session, item)
    return item


def schedule_job(session: Session, job: Job) -> Workitem:
    """The workitem of a job just recorded (the router's transaction)."""
    return schedule(
        session, job.study_uid, [job.series_uid], job.pipeline, _UPS_PRIORITY[job.priority], job.id
    )


def _owned(item: Workitem | None, transaction_uid: str | None) -> Workitem:
    if item is None:
        raise UpsError(UpsRefusal.NO_SUCH_WORKITEM, "no such workitem")
    if item.state != UpsState.IN_PROGRESS:
        raise UpsError(UpsRefusal.NOT_ALLOWED, f"the workitem is {item.state.value}")
    if transaction_uid != item.transaction_uid:
        raise UpsError(UpsRefusal.WRONG_TRANSACTION, "the Transaction UID does not own this workitem")
    return item


def claim(session: Session, uid: str, transaction_uid: str, performer: str, outside: bool) -> Workitem:
    """SCHEDULED → IN PROGRESS for the performer holding ``transaction_uid``."""
    item = session.get(Workitem, uid, with_for_update=True)
    if item is None:
        raise UpsError(UpsRefusal.NO_SUCH_WORKITEM, "no such workitem")
    if item.state != UpsState.SCHEDULED:
        raise UpsError(UpsRefusal.NOT_ALLOWED, f"the workitem is {item.state.value}, not SCHEDULED")
    item.state, item.transaction_uid, item.performer, item.outside = (
        UpsState.IN_PROGRESS,
        transaction_uid,
        performer[:200],
        outside,
    )
    _report(session, item)
    job = session.get(Job, item.job_id) if outside and item.job_id is not None else None
    if job is not None:  # the node's own workers leave it to the outside performer
        job.state, job.started_at, job.worker, job.incarnation = (
            JobState.RUNNING,
            utcnow(),
            f"UPS {performer}"[:200],
            None,
        )
    return item


def finish(
    session: Session,
    uid: str,
    transaction_uid: str | None,
    state: UpsState,
    outputs: list[dict[str, str]] | None = None,
    reason: str | None = None,
) -> Workitem:
    """IN PROGRESS → COMPLETED (with its outputs) or CANCELED, by its owner."""
    if state not in (UpsState.COMPLETED, UpsState.CANCELED):
        raise UpsError(UpsRefusal.NOT_ALLOWED, f"no change to {state.value} from IN PROGRESS")
    item = _owned(session.get(Workitem, uid, with_for_update=True), transaction_uid)
    item.state, item.reason = state, reason[:200] if reason else None
    if outputs is not None:
        item.outputs = outputs
    _report(session, item)
    job = session.get(Job, item.job_id) if item.outside and item.job_id is not None else None
    if job is not None:
        job.finished_at = utcnow()
        job.state = JobState.DONE if state == UpsState.COMPLETED else JobState.FAILED
        job.error = (
            None if state == UpsState.COMPLETED else f"canceled by {item.performer}: {reason or 'no reason'}"
        )
        settle_study(session, job.study_uid)
    return item


def request_cancel(session: Session, uid: str, reason: str | None) -> Workitem:
    """A SCHEDULED workitem is canceled at once; an IN PROGRESS one tells its performer (an event)."""
    item = session.get(Workitem, uid, with_for_update=True)
    if item is None:
        raise UpsError(UpsRefusal.NO_SUCH_WORKITEM, "no such workitem")
    if item.state == UpsState.SCHEDULED and item.job_id is None:
        item.state, item.reason = UpsState.CANCELED, reason[:200] if reason else None
        _report(session, item)
    elif item.state in (UpsState.SCHEDULED, UpsState.IN_PROGRESS):
        item.reason = reason[:200] if reason else None
        _report(session, item, UpsEventType.CANCEL_REQUESTED)
    else:
        raise UpsError(UpsRefusal.NOT_ALLOWED, f"the workitem is {item.state.value}")
    return item


def of_job(session: Session, job_id: int) -> Workitem | None:
    return session.scalars(select(Workitem).where(Workitem.job_id == job_id)).one_or_none()


def last_event(index: Index) -> int:
    """The newest event's id: a new watcher reads what happens from here on."""
    with index.session() as session:
        return session.scalar(select(func.max(WorkitemEvent.id))) or 0


def events_after(index: Index, last_id: int) -> list[dict[str, Any]]:
    with index.session() as session:
        rows = session.scalars(
            select(WorkitemEvent).where(WorkitemEvent.id > last_id).order_by(WorkitemEvent.id)
        )
        return [
            {"id": e.id, "uid": e.workitem_uid, "type": e.event_type, "state": e.state, "reason": e.reason}
            for e in rows
        ]


def current_states(index: Index, uids: set[str]) -> list[dict[str, Any]]:
    """The state report a new subscriber of each of ``uids`` gets first (PS3.4 CC.2.3.1), in the shape
    of :func:`events_after`, with ``id`` the workitem's newest event: the state includes it and every
    earlier one, which the subscriber is then not sent again."""
    with index.session() as session:
        newest = (
            select(WorkitemEvent.workitem_uid, func.max(WorkitemEvent.id).label("id"))
            .where(WorkitemEvent.workitem_uid.in_(uids))
            .group_by(WorkitemEvent.workitem_uid)
            .subquery()
        )
        rows = session.execute(
            select(Workitem, newest.c.id)
            .outerjoin(newest, newest.c.workitem_uid == Workitem.uid)
            .where(Workitem.uid.in_(uids))
            .order_by(Workitem.created_at)
        )
        return [
            {
                "id": upto or 0,
                "uid": item.uid,
                "type": int(UpsEventType.STATE_REPORT),
                "state": item.state,
                "reason": item.reason,
            }
            for item, upto in rows
        ]


def job_started(session: Session, job_id: int, worker: str) -> bool:
    """A Celery worker starts a job: it claims the job's workitem; False when an outside performer
    holds it (the worker then leaves the job alone)."""
    item = of_job(session, job_id)
    if item is None:
        return True
    if item.outside:
        return False
    if item.state == UpsState.SCHEDULED:
        claim(session, item.uid, generate_uid(), worker or "radrouter worker", outside=False)
    return True


def job_ended(
    session: Session, job_id: int, outputs: list[dict[str, str]] | None, reason: str | None
) -> None:
    """The Celery worker's job ended: its workitem is COMPLETED with the outputs, or CANCELED with why."""
    item = of_job(session, job_id)
    if item is None or item.outside or item.state != UpsState.IN_PROGRESS:
        return
    state = UpsState.COMPLETED if outputs is not None else UpsState.CANCELED
    finish(session, item.uid, item.transaction_uid, state, outputs, reason)
