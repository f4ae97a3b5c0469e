"""The reading list in the index: results raise priorities, reads take studies off, order on demand.

The order is computed from the unread items whenever it is asked for, so it reflects the latest
result or read at once and the ageing of every waiting study at that moment. The clock is injected.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from hl7.util import generate_message_control_id
from pydantic import ValidationError
from sqlalchemy import select

from radrouter.config.rules import Priority
from radrouter.config.settings import Settings
from radrouter.inference.results.summary import ResultSummary
from radrouter.storage.index import (
    DeliveryState,
    Hl7Message,
    Hop,
    Index,
    Job,
    MessageKind,
    ResultKind,
    Verdict,
    WorklistItem,
    utc_iso,
    utcnow,
)
from radrouter.worklist.items import open_item, raise_priority
from radrouter.worklist.listing import EVERYTHING, ListFilter, ReadingPage, list_page, list_version, ordered
from radrouter.worklist.triage import WaitingStudy, evaluate, most_urgent

#: Reading orders kept (one per filter in use) until the change counter moves.
ORDERS_KEPT = 16


class AlreadyRead(Exception):
    """The study was marked read before."""


@dataclass
class TriageOutcome:
    """What the results of one job did to its study: a new class or not, and HL7 messages to send."""

    escalated: bool = False
    messages: list[int] = field(default_factory=list)


class ReadingList:
    """The worklist over the index, with the settings' triage rules and waiting-time caps."""

    def __init__(self, settings: Settings, index: Index, clock: Callable[[], datetime] = utcnow) -> None:
        self.settings = settings
        self.index = index
        self.clock = clock
        self._orders: dict[tuple[str, ListFilter], list[WaitingStudy]] = {}

    def in_reading_order(self, chosen: ListFilter = EVERYTHING) -> list[dict[str, Any]]:
        """Unread studies, the next to read first, with class, reason, seconds waited and identity."""
        return self.page(chosen).entries

    def page(self, chosen: ListFilter = EVERYTHING, limit: int | None = None, offset: int = 0) -> ReadingPage:
        """One page of the unread studies in reading order, how many the filter matches, and the version.

        The order of each filter is kept for as long as the change counter stays the same (it moves
        whenever the order could), so paging through a long list sorts it once.
        """
        now = self.clock()
        key = (list_version(self.settings, self.index, now), chosen)
        order = self._orders.get(key)
        if order is None:
            order = ordered(self.settings, self.index, now, chosen)
            if len(self._orders) >= ORDERS_KEPT:
                self._orders.clear()
            self._orders[key] = order
        page = list_page(self.settings, self.index, now, order, limit, offset)
        page.version = key[0]
        return page

    def version(self) -> str:
        """The change counter: equal answers mean the same list in the same order."""
        return list_version(self.settings, self.index, self.clock())

    def mark_read(
        self, study_uid: str, verdict: Verdict | None = None, reader: str | None = None
    ) -> dict[str, Any]:
        """Take a study off the list, with the radiologist's agreement with the AI finding if given; the
        audit names the reader."""
        now = self.clock()
        with self.index.session() as session:
            item = session.get(WorklistItem, study_uid)
            if item is None:
                raise LookupError(f"no worklist item for study {study_uid}")
            if item.read_at is not None:
                raise AlreadyRead(f"study {study_uid} was read at {utc_iso(item.read_at)}")
            item.read_at, item.verdict = now, verdict
            waited = round((now - item.arrived_at).total_seconds(), 1)
            self.index.record_event(
                session,
                study_uid,
                Hop.READ,
                priority=item.priority,
                verdict=verdict,
                waited_s=waited,
                user=reader,
            )
            return {"study_uid": study_uid, "read_at": utc_iso(now), "verdict": verdict, "waited_s": waited}

    def apply_results(self, job_id: int) -> TriageOutcome:
        """Run the triage rules on a job's SR result; raise the study's class; queue HL7 messages."""
        now = self.clock()
        outcome = TriageOutcome()
        with self.index.session() as session:
            job = session.get(Job, job_id)
            if job is None:
                raise LookupError(f"job {job_id} is not in the index")
            reports = [result for result in job.results if result.kind == ResultKind.SR]
            if not reports:
                return outcome
            if job.pipeline in self.settings.monitoring.shadow_pipelines:
                self.index.record_event(session, job.study_uid, Hop.TRIAGED, job=job_id, shadow=True)
                return outcome
            try:
                summary = ResultSummary.of_row(reports[-1].summary)
            except ValidationError as error:
                self.index.record_event(
                    session,
                    job.study_uid,
                    Hop.TRIAGED,
                    job=job_id,
                    error=f"unreadable summary: {error}"[:300],
                )
                return outcome
            matches = evaluate(self.settings.worklist.triage_rules, summary)
            item = session.get(WorklistItem, job.study_uid) or open_item(
                self.index,
                session,
                job.study_uid,
                Priority.ROUTINE,
                source="header",
                reason="routine",
                at=now,
            )
            decisive = most_urgent(matches)
            if decisive is not None:
                outcome.escalated = raise_priority(
                    self.index,
                    session,
                    item,
                    decisive.priority,
                    source="triage",
                    reason=decisive.reason,
                    rule=decisive.rule,
                    at=now,
                )
                if outcome.escalated or item.finding is None:
                    item.finding = decisive.reason
            if not outcome.escalated:
                self.index.record_event(
                    session,
                    job.study_uid,
                    Hop.TRIAGED,
                    job=job_id,
                    matched=[m.rule for m in matches],
                    changed=False,
                )
            if self.settings.worklist.hl7.host:
                kinds = [MessageKind.OMI, MessageKind.ORU] if outcome.escalated else [MessageKind.ORU]
                outcome.messages = self._queue_messages(session, job, kinds)
        return outcome

    def _queue_messages(self, session: Any, job: Job, kinds: list[MessageKind]) -> list[int]:
        """Add the job's messages of ``kinds`` once; return every one still unsent (a rerun resends)."""
        existing = {m.kind: m for m in session.scalars(select(Hl7Message).where(Hl7Message.job_id == job.id))}
        for kind in kinds:
            if kind not in existing:
                existing[kind] = Hl7Message(
                    study_uid=job.study_uid,
                    job_id=job.id,
                    kind=kind,
                    control_id=generate_message_control_id(),
                    state=DeliveryState.PENDING,
                )
                session.add(existing[kind])
        session.flush()
        return [m.id for m in existing.values() if m.state == DeliveryState.PENDING]
