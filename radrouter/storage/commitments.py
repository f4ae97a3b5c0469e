"""Storage Commitment in the index: which instances the node can vouch for, and the commitments the
node asked of its destinations (a report may come on another association, to another process)."""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlalchemy import JSON, String, select
from sqlalchemy.orm import Mapped, mapped_column

from radrouter.storage.index import Base, Index, Instance, utcnow
from radrouter.storage.store import InstanceStore


class Kept(enum.Enum):
    """What the node holds of one referenced instance."""

    STORED = enum.auto()  # indexed, and its file is in the store with the size indexed
    ABSENT = enum.auto()  # never received, purged, or its file is gone
    OTHER_CLASS = enum.auto()  # stored, but of another SOP class than the reference says
    NOT_DURABLE = enum.auto()  # stored without fsync (``storage.fsync: false``): a crash may lose it


def kept(index: Index, store: InstanceStore, references: list[tuple[str, str]]) -> list[Kept]:
    """For each (SOP Class UID, SOP Instance UID): whether it is durably stored and indexed.

    Files are written with fsync before they are indexed (``storage.fsync``); the file is looked at
    again here so that one removed since (retention, an operator) is not vouched for.
    """
    uids = [uid for _class, uid in references]
    with index.session() as session:
        rows = {
            row.sop_uid: row for row in session.scalars(select(Instance).where(Instance.sop_uid.in_(uids)))
        }
    answers: list[Kept] = []
    for sop_class, uid in references:
        row = rows.get(uid)
        if row is None or not _file_intact(store.resolve(row.path), row.size):
            answers.append(Kept.ABSENT)
        elif row.sop_class_uid != sop_class:
            answers.append(Kept.OTHER_CLASS)
        elif not store.fsync:
            answers.append(Kept.NOT_DURABLE)
        else:
            answers.append(Kept.STORED)
    return answers


def _file_intact(path: Path, size: int) -> bool:
    try:
        return path.stat().st_size == size
    except OSError:
        return False


class CommitmentRequest(Base):
    """A commitment the node asked of a destination, and the answer once its report came."""

    __tablename__ = "commitment_requests"

    transaction_uid: Mapped[str] = mapped_column(String(64), primary_key=True)
    destination: Mapped[str] = mapped_column(String(64))
    #: SOP Instance UIDs asked for.
    requested: Mapped[list[str]] = mapped_column(JSON, default=list)
    requested_at: Mapped[datetime] = mapped_column(default=utcnow)
    answered_at: Mapped[datetime | None]
    #: ``{"uid", "reason"}`` per instance the destination did not commit (reason: its Failure Reason).
    failed: Mapped[list[dict[str, str]]] = mapped_column(JSON, default=list)


@dataclass(frozen=True)
class CommitmentAnswer:
    committed: list[str]
    failed: list[dict[str, str]]


def ask(index: Index, transaction_uid: str, destination: str, uids: list[str]) -> None:
    with index.session() as session:
        session.add(
            CommitmentRequest(transaction_uid=transaction_uid, destination=destination, requested=uids)
        )


def answer(index: Index, transaction_uid: str, failed: list[dict[str, str]]) -> bool:
    """Record a destination's report; False when no such request was made (or it was answered)."""
    with index.session() as session:
        request = session.get(CommitmentRequest, transaction_uid, with_for_update=True)
        if request is None or request.answered_at is not None:
            return False
        request.answered_at, request.failed = utcnow(), failed
        return True


def wait_for_answer(index: Index, transaction_uid: str, timeout_s: float) -> CommitmentAnswer | None:
    """The report once recorded (by the delivery's own association or the node's SCP); None at timeout."""
    deadline = time.monotonic() + timeout_s
    while True:
        with index.session() as session:
            request = session.get(CommitmentRequest, transaction_uid)
            if request is not None and request.answered_at is not None:
                failed = {item["uid"] for item in request.failed}
                return CommitmentAnswer([u for u in request.requested if u not in failed], request.failed)
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.1)
