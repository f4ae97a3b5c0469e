"""Modality Performed Procedure Steps (MPPS): what a modality says it performed, kept as UIDs only.

A step names its study when it starts (N-CREATE, IN PROGRESS) and, when it ends (N-SET COMPLETED or
DISCONTINUED), the series and instances it produced. That is the end-of-study signal the timer of
``router/assemble.py`` only guesses: :class:`StepBook` tells the assembler, from the steps of a study
and the instances already indexed, whether to hold the study, which instances it still waits for,
or that it is complete now. The attribute lists carry patient data; only UIDs and states are kept.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import JSON, String, select
from sqlalchemy.orm import Mapped, mapped_column

from radrouter.config.settings import CompletionSettings, DiscontinuedStudy
from radrouter.storage.index import Base, Hop, Index, Instance, Series, Study, StudyState, coded, utcnow


class StepStatus(enum.StrEnum):
    """Performed Procedure Step Status (0040,0252), PS3.3 C.4.14."""

    IN_PROGRESS = "IN PROGRESS"
    COMPLETED = "COMPLETED"
    DISCONTINUED = "DISCONTINUED"


class PerformedStep(Base):
    """One MPPS instance, as last set by its modality."""

    __tablename__ = "performed_steps"

    uid: Mapped[str] = mapped_column(String(64), primary_key=True)
    #: From the Scheduled Step Attributes Sequence; no foreign key: the step may come before any image.
    study_uid: Mapped[str] = mapped_column(String(64), index=True)
    status: Mapped[StepStatus] = mapped_column(coded(StepStatus))
    calling_ae: Mapped[str | None] = mapped_column(String(16))
    #: Performed Series Sequence: series UID → the SOP Instance UIDs it lists.
    performed: Mapped[dict[str, list[str]]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    ended_at: Mapped[datetime | None]
    #: When a study completion took this step into account: later instances go by the timer again.
    used_at: Mapped[datetime | None]
    #: Listed instances that had not arrived when the study completed (after ``completion.mpps_grace_s``).
    missing: Mapped[list[str]] = mapped_column(JSON, default=list)


class StepChange(enum.Enum):
    """What became of an N-CREATE or N-SET (the SCP answers each with its status)."""

    RECORDED = enum.auto()
    DUPLICATE = enum.auto()
    NO_SUCH_STEP = enum.auto()
    ENDED = enum.auto()  # COMPLETED or DISCONTINUED steps may no longer be updated (PS3.4 F.7.2.2)


@dataclass(frozen=True)
class StepPlan:
    """What a study's open steps mean for its completion.

    ``held``: a step is still IN PROGRESS, so the timer does not complete the study. Otherwise every
    open step has ended: the study is complete once ``missing`` is empty, or ``grace_left_s`` from now
    with what arrived. ``route`` is False when every step was DISCONTINUED and those are held.
    """

    held: bool
    missing: frozenset[str] = field(default_factory=frozenset)
    grace_left_s: float = 0.0
    route: bool = True


class StepBook:
    """The index's performed steps, as the assembler and the MPPS SCP use them."""

    def __init__(self, index: Index, completion: CompletionSettings) -> None:
        self.index = index
        self.completion = completion

    def plan(self, study_uid: str) -> StepPlan | None:
        """The plan from the study's steps not yet used by a completion; None: no such step (timer)."""
        with self.index.session() as session:
            steps = session.scalars(
                select(PerformedStep).where(
                    PerformedStep.study_uid == study_uid, PerformedStep.used_at.is_(None)
                )
            ).all()
            if not steps:
                return None
            if any(step.status == StepStatus.IN_PROGRESS for step in steps):
                return StepPlan(held=True)
            listed = {uid for step in steps for uids in step.performed.values() for uid in uids}
            stored = set(
                session.scalars(
                    select(Instance.sop_uid)
                    .join(Series, Instance.series_uid == Series.uid)
                    .where(Series.study_uid == study_uid)
                )
            )
            ended = max(step.ended_at or step.created_at for step in steps)
        all_discontinued = all(step.status == StepStatus.DISCONTINUED for step in steps)
        missing = frozenset() if all_discontinued else frozenset(listed - stored)
        grace_left_s = self.completion.mpps_grace_s - (utcnow() - ended).total_seconds()
        route = not all_discontinued or self.completion.mpps_discontinued == DiscontinuedStudy.ROUTE
        return StepPlan(held=False, missing=missing, grace_left_s=max(0.0, grace_left_s), route=route)

    def open_studies(self) -> list[str]:
        """Studies with steps no completion has used yet: an SCP that starts again follows them."""
        with self.index.session() as session:
            query = select(PerformedStep.study_uid).where(PerformedStep.used_at.is_(None)).distinct()
            return list(session.scalars(query))

    def used(self, study_uid: str, missing: frozenset[str], routed: bool) -> None:
        """The study completed by its steps: mark them used, record what never arrived, and for a held
        DISCONTINUED study say so as its reason."""
        with self.index.session() as session:
            steps = session.scalars(
                select(PerformedStep).where(
                    PerformedStep.study_uid == study_uid, PerformedStep.used_at.is_(None)
                )
            ).all()
            now = utcnow()
            for step in steps:
                step.used_at = now
                step.missing = sorted(
                    uid for uids in step.performed.values() for uid in uids if uid in missing
                )
            study = session.get(Study, study_uid)
            if study is None:
                return
            if missing:
                self.index.record_event(session, study_uid, Hop.INCOMPLETE, missing=sorted(missing))
            if not routed and study.state == StudyState.RECEIVING:
                study.state, study.completed_at, study.settled_at = StudyState.DONE, now, now
                study.reason = "MPPS DISCONTINUED: held, not routed (completion.mpps_discontinued: hold)"

    def create(self, uid: str, study_uid: str, calling_ae: str) -> StepChange:
        """N-CREATE: a step starts IN PROGRESS."""
        with self.index.session() as session:
            if session.get(PerformedStep, uid) is not None:
                return StepChange.DUPLICATE
            session.add(
                PerformedStep(
                    uid=uid, study_uid=study_uid, status=StepStatus.IN_PROGRESS, calling_ae=calling_ae
                )
            )
        return StepChange.RECORDED

    def update(
        self, uid: str, status: StepStatus | None, performed: dict[str, list[str]] | None
    ) -> tuple[StepChange, str | None]:
        """N-SET: the step's status and performed series change; with its study's UID."""
        with self.index.session() as session:
            step = session.get(PerformedStep, uid, with_for_update=True)
            if step is None:
                return StepChange.NO_SUCH_STEP, None
            if step.status != StepStatus.IN_PROGRESS:
                return StepChange.ENDED, step.study_uid
            if performed is not None:
                step.performed = performed
            if status is not None and status != StepStatus.IN_PROGRESS:
                step.status, step.ended_at = status, utcnow()
            return StepChange.RECORDED, step.study_uid


def steps_of(index: Index, study_uid: str) -> list[dict[str, object]]:
    """The study's steps as the API shows them."""
    with index.session() as session:
        steps = session.scalars(
            select(PerformedStep)
            .where(PerformedStep.study_uid == study_uid)
            .order_by(PerformedStep.created_at)
        ).all()
        return [
            {
                "uid": step.uid,
                "status": step.status.value,
                "series": len(step.performed),
                "instances": sum(len(uids) for uids in step.performed.values()),
                "missing": step.missing,
            }
            for step in steps
        ]
