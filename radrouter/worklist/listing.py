"""The reading list as pages: filters in SQL, the order over light rows, details for one page only.

Thousands of open studies cost one narrow query and a sort; the per-study details (series, state,
identity from the stored header) are read only for the page asked for. :func:`list_version` is the
change counter pages poll: one aggregate query whose answer changes whenever the list does.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, case, exists, func, select
from sqlalchemy.orm import Session

from radrouter.config.rules import Priority
from radrouter.config.settings import Settings
from radrouter.storage.identity import read_identity
from radrouter.storage.index import Index, Instance, Series, Study, WorklistItem, utc_iso
from radrouter.worklist.triage import WaitingStudy, reading_order


@dataclass(frozen=True)
class ListFilter:
    """Which unread studies to show: of one modality and/or one priority class (None: all)."""

    modality: str | None = None
    priority: Priority | None = None


EVERYTHING = ListFilter()


@dataclass
class ReadingPage:
    """One page of the reading list and how many unread studies the filter matches in all."""

    total: int
    entries: list[dict[str, Any]]
    version: str = ""


def _unread(chosen: ListFilter) -> Any:
    query = select(WorklistItem.study_uid, WorklistItem.priority, WorklistItem.arrived_at).where(
        WorklistItem.read_at.is_(None)
    )
    if chosen.priority is not None:
        query = query.where(WorklistItem.priority == chosen.priority)
    if chosen.modality is not None:
        query = query.where(
            exists().where(Series.study_uid == WorklistItem.study_uid, Series.modality == chosen.modality)
        )
    return query


def _one_instance_per_study(session: Session, uids: list[str]) -> dict[str, str]:
    rows = session.execute(
        select(Series.study_uid, func.min(Instance.path))
        .join(Instance, Instance.series_uid == Series.uid)
        .where(Series.study_uid.in_(uids))
        .group_by(Series.study_uid)
    )
    return {uid: path for uid, path in rows}


def _viewer_url(settings: Settings, study_uid: str) -> str | None:
    template = settings.viewer.url_template
    return template.format(study_uid=study_uid) if template else None


def ordered(
    settings: Settings, index: Index, now: datetime, chosen: ListFilter = EVERYTHING
) -> list[WaitingStudy]:
    """The unread studies ``chosen`` matches, in reading order at ``now`` (one narrow query and a sort)."""
    with index.session() as session:
        waiting = [WaitingStudy(uid, priority, at) for uid, priority, at in session.execute(_unread(chosen))]
    return [placement.study for placement in reading_order(waiting, now, settings.worklist.max_wait_s())]


def list_page(
    settings: Settings,
    index: Index,
    now: datetime,
    order: list[WaitingStudy],
    limit: int | None = None,
    offset: int = 0,
) -> ReadingPage:
    """``order`` from ``offset``, at most ``limit`` studies, with their details and identity."""
    caps = settings.worklist.max_wait_s()
    shown = order[offset : offset + limit if limit is not None else None]
    uids = [study.study_uid for study in shown]
    with index.session() as session:
        items = {
            i.study_uid: i
            for i in session.scalars(select(WorklistItem).where(WorklistItem.study_uid.in_(uids)))
        }
        states = dict(session.execute(select(Study.uid, Study.state).where(Study.uid.in_(uids))).all())
        modalities: dict[str, set[str]] = defaultdict(set)
        for uid, modality in session.execute(
            select(Series.study_uid, Series.modality).where(
                Series.study_uid.in_(uids), Series.modality.is_not(None)
            )
        ):
            modalities[uid].add(str(modality))
        paths = _one_instance_per_study(session, uids)
    entries = []
    for position, study in enumerate(shown, start=offset + 1):
        item = items.get(study.study_uid)
        if item is None:  # read and purged since the order was computed
            continue
        waited = (now - study.arrived_at).total_seconds()
        path = paths.get(item.study_uid)
        identity = read_identity(settings.storage.root / path) if path else None
        entries.append(
            {
                "position": position,
                "study_uid": item.study_uid,
                "priority": item.priority,
                "base_priority": item.base_priority,
                "reason": item.reason,
                "finding": item.finding,
                "waited_s": round(waited, 1),
                "max_wait_s": caps[item.priority],
                "overdue": waited >= caps[item.priority],
                "arrived_at": utc_iso(item.arrived_at),
                "state": states[item.study_uid].value if item.study_uid in states else None,
                "modalities": sorted(modalities[item.study_uid]),
                "identity": identity.as_json() if identity else None,
                "viewer_url": _viewer_url(settings, item.study_uid),
            }
        )
    return ReadingPage(total=len(order), entries=entries)


def list_version(settings: Settings, index: Index, now: datetime) -> str:
    """A short token that changes whenever the reading list or its order does, from one aggregate query.

    Reads, reopenings, new studies, priority changes and findings move the counts and latest times;
    ageing moves the order only when a study passes its class's cap, which the overdue count catches;
    the latest reception catches a new series (a modality filter may then match the study).
    """
    caps = settings.worklist.max_wait_s()
    unread = WorklistItem.read_at.is_(None)
    overdue = [
        func.sum(
            case(
                (
                    and_(
                        unread,
                        WorklistItem.priority == p,
                        WorklistItem.arrived_at <= now - timedelta(seconds=s),
                    ),
                    1,
                ),
                else_=0,
            )
        )
        for p, s in caps.items()
    ]
    query = select(
        func.count(),
        func.sum(case((unread, 1), else_=0)),
        func.sum(case((and_(unread, WorklistItem.finding.is_not(None)), 1), else_=0)),
        func.max(WorklistItem.arrived_at),
        func.max(WorklistItem.changed_at),
        func.max(WorklistItem.read_at),
        select(func.max(Study.last_received_at)).scalar_subquery(),
        *overdue,
    )
    with index.session() as session:
        row = session.execute(query).one()
    return hashlib.blake2s(repr(tuple(row)).encode(), digest_size=8).hexdigest()


def listed_modalities(index: Index) -> list[str]:
    """The modalities of the unread studies, for the page's filter."""
    with index.session() as session:
        rows = session.scalars(
            select(Series.modality)
            .distinct()
            .join(WorklistItem, WorklistItem.study_uid == Series.study_uid)
            .where(WorklistItem.read_at.is_(None), Series.modality.is_not(None))
        )
        return sorted(m for m in rows if m)
