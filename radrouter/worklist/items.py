"""Records reading-priority changes: the one place a worklist item's class moves, always with a reason.

The router opens items (priority from the header and routing rules); triage raises them (from AI
results). Both go through :func:`raise_priority`, so every change lands in ``priority_changes`` and in
the study's audit trail as the hop ``triaged``.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from radrouter.config.rules import Priority
from radrouter.router.route.urgency import StudyUrgency
from radrouter.storage.index import Hop, Index, PriorityChange, WorklistItem


def raise_priority(
    index: Index,
    session: Session,
    item: WorklistItem,
    priority: Priority,
    *,
    source: str,
    reason: str,
    at: datetime,
    rule: str | None = None,
) -> bool:
    """Move ``item`` up to ``priority`` if that is more urgent; record the change. True if it moved."""
    if not priority.more_urgent_than(item.priority):
        return False
    _record_change(
        index, session, item, item.priority, priority, source=source, reason=reason, at=at, rule=rule
    )
    return True


def _record_change(
    index: Index,
    session: Session,
    item: WorklistItem,
    old: Priority | None,
    new: Priority,
    *,
    source: str,
    reason: str,
    at: datetime,
    rule: str | None = None,
) -> None:
    item.priority, item.reason, item.changed_at = new, reason, at
    change = PriorityChange(
        study_uid=item.study_uid,
        old_priority=old,
        new_priority=new,
        source=source,
        rule=rule,
        reason=reason,
        at=at,
    )
    session.add(change)
    index.record_event(
        session, item.study_uid, Hop.TRIAGED, old=old, new=new, source=source, rule=rule, reason=reason
    )


def open_item(
    index: Index,
    session: Session,
    study_uid: str,
    priority: Priority,
    *,
    source: str,
    reason: str,
    at: datetime,
) -> WorklistItem:
    """Put a complete study on the reading list; a new revision raises its class or puts it back."""
    item = session.get(WorklistItem, study_uid)
    if item is None:
        item = WorklistItem(
            study_uid=study_uid, priority=priority, base_priority=priority, arrived_at=at, changed_at=at
        )
        session.add(item)
        _record_change(index, session, item, None, priority, source=source, reason=reason, at=at)
        return item
    if item.read_at is not None:
        # Images that arrive after the read need reading too: back on the list, waiting from now.
        item.read_at, item.verdict, item.arrived_at = None, None, at
        index.record_event(session, study_uid, Hop.TRIAGED, reopened=True, priority=item.priority)
    raise_priority(index, session, item, priority, source=source, reason=reason, at=at)
    return item


def open_for_study(
    index: Index, session: Session, study_uid: str, urgency: StudyUrgency, at: datetime
) -> None:
    """The study router's reading-list entry: a complete study goes on the list with its urgency."""
    open_item(
        index, session, study_uid, urgency.priority, source=urgency.source, reason=urgency.reason, at=at
    )
