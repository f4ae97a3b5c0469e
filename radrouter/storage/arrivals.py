"""The completion ledger shared by the SCP nodes of a cluster (PostgreSQL only).

Each node writes, in batches, which associations carried which study and series and when they
ended, and heartbeats; the node that holds the sweeper's lease reads the ledger back to decide which
studies are complete. An association counts as open only while its node heartbeats and no newer start
of the same node exists, so a node that died leaves studies that complete from what it stored.

A node that has missed two heartbeats is in doubt: its open associations hold their studies until it
beats again or is gone (``node_timeout_s``), so a study whose node died mid-association is not
completed on part of its instances while the sender is still finding out and sending the rest again.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import DateTime, Integer, String, and_, case, delete, exists, func, or_, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Mapped, aliased, mapped_column

from radrouter.config.settings import CompletionSettings
from radrouter.storage.index import Base, Index, Study, StudyState

#: The series UID of the row that stands for the whole study.
WHOLE_STUDY = ""


class ScpNode(Base):
    """One start of one SCP node, and when it last said it is alive."""

    __tablename__ = "scp_nodes"

    incarnation: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(64), index=True)
    started_at: Mapped[datetime]
    heartbeat_at: Mapped[datetime]


class LedgerAssociation(Base):
    """An association that carried instances to a node; open while ``ended_at`` is NULL."""

    __tablename__ = "ledger_associations"

    incarnation: Mapped[str] = mapped_column(String(32), primary_key=True)
    association: Mapped[str] = mapped_column(String(64), primary_key=True)
    started_at: Mapped[datetime]
    ended_at: Mapped[datetime | None]


class LedgerArrival(Base):
    """The last instance of a study (``series_uid`` empty) or of one of its series, per association."""

    __tablename__ = "ledger_arrivals"

    study_uid: Mapped[str] = mapped_column(String(64), primary_key=True)
    series_uid: Mapped[str] = mapped_column(String(64), primary_key=True)
    incarnation: Mapped[str] = mapped_column(String(32), primary_key=True)
    association: Mapped[str] = mapped_column(String(64), primary_key=True)
    last_seen: Mapped[datetime] = mapped_column(DateTime, index=True)
    instances: Mapped[int] = mapped_column(Integer, default=0)


class Lease(Base):
    """A job only one node does at a time (the completion sweep): held by ``holder`` until it expires."""

    __tablename__ = "leases"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    holder: Mapped[str] = mapped_column(String(32))
    expires_at: Mapped[datetime]


@dataclass
class ArrivalBatch:
    """What a node saw since its last write: merged, so a batch is a few rows whatever its instances."""

    #: (study, series or WHOLE_STUDY, association) -> (last seen, instances)
    arrivals: dict[tuple[str, str, str], tuple[datetime, int]] = field(default_factory=dict)
    started: dict[str, datetime] = field(default_factory=dict)
    ended: dict[str, datetime] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.arrivals or self.started or self.ended)

    def instance(self, study_uid: str, series_uid: str | None, association: str, at: datetime) -> None:
        self.started.setdefault(association, at)
        for key in [(study_uid, WHOLE_STUDY, association)] + (
            [(study_uid, series_uid, association)] if series_uid else []
        ):
            _, count = self.arrivals.get(key, (at, 0))
            self.arrivals[key] = (at, count + 1)

    def absorb(self, newer: ArrivalBatch) -> None:
        """Add what arrived after this batch (which could not be written) to it."""
        for key, (at, count) in newer.arrivals.items():
            self.arrivals[key] = (at, self.arrivals.get(key, (at, 0))[1] + count)
        for association, at in newer.started.items():
            self.started.setdefault(association, at)
        self.ended.update(newer.ended)


def heartbeat(index: Index, incarnation: str, name: str, now: datetime) -> None:
    """Say this start of the node is alive (the first beat registers it)."""
    statement = insert(ScpNode).values(incarnation=incarnation, name=name, started_at=now, heartbeat_at=now)
    with index.session() as session:
        session.execute(
            statement.on_conflict_do_update(index_elements=["incarnation"], set_={"heartbeat_at": now})
        )


def write_batch(index: Index, incarnation: str, batch: ArrivalBatch) -> None:
    """One transaction: associations started, arrivals merged into the ledger, associations ended."""
    with index.session() as session:
        if batch.started:
            rows = [
                {"incarnation": incarnation, "association": association, "started_at": at}
                for association, at in batch.started.items()
            ]
            session.execute(insert(LedgerAssociation).values(rows).on_conflict_do_nothing())
        if batch.arrivals:
            rows = [
                {
                    "study_uid": study_uid,
                    "series_uid": series_uid,
                    "incarnation": incarnation,
                    "association": association,
                    "last_seen": last_seen,
                    "instances": count,
                }
                for (study_uid, series_uid, association), (last_seen, count) in sorted(batch.arrivals.items())
            ]
            statement = insert(LedgerArrival).values(rows)
            session.execute(
                statement.on_conflict_do_update(
                    index_elements=["study_uid", "series_uid", "incarnation", "association"],
                    set_={
                        "last_seen": func.greatest(LedgerArrival.last_seen, statement.excluded.last_seen),
                        "instances": LedgerArrival.instances + statement.excluded.instances,
                    },
                )
            )
        for association, at in batch.ended.items():
            session.execute(
                update(LedgerAssociation)
                .where(
                    LedgerAssociation.incarnation == incarnation,
                    LedgerAssociation.association == association,
                )
                .values(ended_at=at)
            )


def end_associations(index: Index, incarnation: str, now: datetime) -> None:
    """A node stopping cleanly: every association it still held is over (not waited for)."""
    with index.session() as session:
        session.execute(
            update(LedgerAssociation)
            .where(LedgerAssociation.incarnation == incarnation, LedgerAssociation.ended_at.is_(None))
            .values(ended_at=now)
        )


def hold_lease(index: Index, name: str, holder: str, now: datetime, ttl_s: float) -> bool:
    """Take or renew the lease ``name`` for ``ttl_s``; whether ``holder`` holds it now."""
    statement = insert(Lease).values(name=name, holder=holder, expires_at=now + timedelta(seconds=ttl_s))
    taken = statement.on_conflict_do_update(
        index_elements=["name"],
        set_={"holder": statement.excluded.holder, "expires_at": statement.excluded.expires_at},
        where=or_(Lease.holder == holder, Lease.expires_at < now),
    ).returning(Lease.holder)
    with index.session() as session:
        return session.execute(taken).scalar_one_or_none() == holder


@dataclass(frozen=True)
class Quiet:
    """A study, or one of its series, with no instance since ``last_seen`` for its quiet period."""

    study_uid: str
    series_uid: str | None
    last_seen: datetime


@dataclass(frozen=True)
class Sweep:
    """What is complete now, and when the earliest of the rest could be (None: nothing waits)."""

    studies: list[Quiet]
    series: list[Quiet]
    next_due: datetime | None


def quiet(index: Index, completion: CompletionSettings, node_timeout_s: float, now: datetime) -> Sweep:
    """The studies complete now, and the series complete now of studies that are not (the assembler's
    rules, on every node's arrivals: an association is open while its node is alive and has not
    released it)."""
    newer = aliased(ScpNode)
    node_alive = and_(
        ScpNode.heartbeat_at >= now - timedelta(seconds=node_timeout_s),
        ~exists().where(newer.name == ScpNode.name, newer.started_at > ScpNode.started_at),
    )
    # NULL for a node never registered: bool_or skips it, and None reads as closed.
    is_open = func.bool_or(and_(LedgerAssociation.ended_at.is_(None), node_alive))
    # Nodes beat every fifth of node_timeout_s: one silent for two beats may have died.
    in_doubt = ScpNode.heartbeat_at < now - timedelta(seconds=node_timeout_s * 2 / 5)
    doubted_since = func.max(
        case((and_(LedgerAssociation.ended_at.is_(None), node_alive, in_doubt), ScpNode.heartbeat_at))
    )
    rows = select(
        LedgerArrival.study_uid,
        LedgerArrival.series_uid,
        func.max(LedgerArrival.last_seen),
        is_open,
        doubted_since,
    ).join(
        LedgerAssociation,
        and_(
            LedgerAssociation.incarnation == LedgerArrival.incarnation,
            LedgerAssociation.association == LedgerArrival.association,
        ),
    )
    rows = rows.outerjoin(ScpNode, ScpNode.incarnation == LedgerArrival.incarnation).group_by(
        LedgerArrival.study_uid, LedgerArrival.series_uid
    )
    # A receiver indexes an instance before its node writes the arrival: a study indexed later than
    # the ledger says has an arrival on its way, and waits for it.
    indexed = select(Study.uid, Study.last_received_at).where(
        Study.state == StudyState.RECEIVING, Study.uid.in_(select(LedgerArrival.study_uid))
    )
    with index.session() as session:
        found = session.execute(rows).all()
        last_indexed: dict[str, datetime] = dict(session.execute(indexed).tuples().all())
    studies: list[Quiet] = []
    waiting: set[str] = set()
    series: list[Quiet] = []
    deadlines: list[datetime] = []
    for study_uid, series_uid, last_seen, open_, doubted in found:
        quiet_s = completion.open_quiet_period_s if open_ else completion.quiet_period_s
        if series_uid == WHOLE_STUDY:
            last_seen = max(last_seen, last_indexed.get(study_uid, last_seen))
        deadline = last_seen + timedelta(seconds=quiet_s)
        if doubted is not None:  # until its node beats again, or is gone and its associations ended
            deadline = max(deadline, doubted + timedelta(seconds=node_timeout_s + completion.quiet_period_s))
        if now < deadline:
            deadlines.append(deadline)
            if series_uid == WHOLE_STUDY:
                waiting.add(study_uid)
        elif series_uid == WHOLE_STUDY:
            studies.append(Quiet(study_uid, None, last_seen))
        else:
            series.append(Quiet(study_uid, series_uid, last_seen))
    series = [entry for entry in series if entry.study_uid in waiting]
    return Sweep(studies, series, min(deadlines) if deadlines else None)


def forget(index: Index, done: Quiet) -> None:
    """Drop what ``done`` was decided on; an arrival written since stays and starts the same again."""
    rows = delete(LedgerArrival).where(
        LedgerArrival.study_uid == done.study_uid, LedgerArrival.last_seen <= done.last_seen
    )
    if done.series_uid is not None:
        rows = rows.where(LedgerArrival.series_uid == done.series_uid)
    with index.session() as session:
        session.execute(rows)


def tracked_studies(index: Index) -> list[str]:
    """Studies the ledger is still waiting on (the reconciler leaves them to the sweep)."""
    with index.session() as session:
        return list(session.scalars(select(LedgerArrival.study_uid).distinct()))


def prune(index: Index, now: datetime, node_timeout_s: float) -> None:
    """Forget associations no arrival names any more, and node starts silent for a day."""
    named = exists().where(
        LedgerArrival.incarnation == LedgerAssociation.incarnation,
        LedgerArrival.association == LedgerAssociation.association,
    )
    with index.session() as session:
        session.execute(delete(LedgerAssociation).where(~named, LedgerAssociation.ended_at.is_not(None)))
        silent = now - timedelta(seconds=max(node_timeout_s, 86400.0))
        gone = select(ScpNode.incarnation).where(ScpNode.heartbeat_at < silent).scalar_subquery()
        session.execute(delete(LedgerAssociation).where(~named, LedgerAssociation.incarnation.in_(gone)))
        session.execute(delete(ScpNode).where(ScpNode.heartbeat_at < silent))
