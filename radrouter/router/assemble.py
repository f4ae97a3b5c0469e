"""Decides when a study is complete: by its Modality Performed Procedure Steps when the modality
sends them, else by a timer.

- A study with an MPPS still IN PROGRESS waits for it (up to ``mpps_in_progress_quiet_s`` without an
  instance). Once its steps have ended it is complete the moment the last instance they list is
  stored, or ``mpps_grace_s`` after the end with what arrived (``storage/steps.py`` keeps the steps).
- A study whose associations have all ended is complete ``quiet_period_s`` after its last instance
  (1 s by default: peers wait a fixed 5 to 900 s after the last instance).
- A study still carried by an open association is complete after ``open_quiet_period_s`` without
  an instance: it covers senders that keep associations open, and a receiving process that died.

A late instance starts the same again: the study completes once more (a new revision). Every SCP
process reports its arrivals to one assembler (:mod:`radrouter.router.receive.listener`), so exactly one
place declares studies complete.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from radrouter.config.settings import CompletionSettings
from radrouter.logs import study as study_context
from radrouter.storage.steps import StepPlan

log = logging.getLogger(__name__)


class ArrivalSink(Protocol):
    """What the SCP tells about arrivals: the assembler itself, or a queue to it in another process."""

    def instance_received(
        self, study_uid: str, association: str, series_uid: str | None = None, sop_uid: str | None = None
    ) -> None: ...

    def association_ended(self, association: str) -> None: ...

    def steps_changed(self, study_uid: str) -> None: ...


class PerformedSteps(Protocol):
    """The studies' MPPS (``storage.steps.StepBook``): what they mean for completion, and their use."""

    def plan(self, study_uid: str) -> StepPlan | None: ...

    def used(self, study_uid: str, missing: frozenset[str], routed: bool) -> None: ...


@dataclass
class _Arrivals:
    """When a study (or one of its series) last received an instance, and over which associations."""

    last_seen: float
    associations: set[str] = field(default_factory=set)
    series: dict[str, _Arrivals] = field(default_factory=dict)
    #: The study's open MPPS, if any, the listed instances not yet stored, and the end of the grace.
    steps: StepPlan | None = None
    missing: set[str] = field(default_factory=set)
    grace_ends: float = 0.0

    def deadline(self, completion: CompletionSettings) -> float:
        if self.steps is not None:
            if self.steps.held:
                return self.last_seen + completion.mpps_in_progress_quiet_s
            return self.grace_ends if self.missing else float("-inf")
        quiet_s = completion.open_quiet_period_s if self.associations else completion.quiet_period_s
        return self.last_seen + quiet_s

    def follow(self, plan: StepPlan | None, now: float) -> None:
        self.steps = plan
        self.missing = set(plan.missing) if plan is not None else set()
        self.grace_ends = now + (plan.grace_left_s if plan is not None else 0.0)


class StudyAssembler:
    """Tracks open associations and arrival times; calls ``on_complete`` once per quiet study.

    With ``on_series_complete``, a series of a study still receiving is complete on its own once it
    has been quiet (``quiet_period_s`` when the associations that carried it have ended, else
    ``open_quiet_period_s``), however busy the study's other series are. A series still waiting when
    its study completes is left to the study.
    """

    def __init__(
        self,
        completion: CompletionSettings,
        on_complete: Callable[[str], None],
        on_series_complete: Callable[[str, str], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        steps: PerformedSteps | None = None,
    ) -> None:
        self.completion = completion
        self._steps = steps
        self._on_complete = on_complete
        self._on_series_complete = on_series_complete
        self._clock = clock
        self._lock = threading.Condition()
        self._studies: dict[str, _Arrivals] = {}
        self._changed = False
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name="study-assembler", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        with self._lock:
            self._stopped = True
            self._notify()
        self._thread.join(timeout=5)

    def _notify(self) -> None:
        self._changed = True
        self._lock.notify()

    def instance_received(
        self, study_uid: str, association: str, series_uid: str | None = None, sop_uid: str | None = None
    ) -> None:
        now = self._clock()
        with self._lock:
            study = self._studies.get(study_uid)
            if study is None:
                study = self._studies[study_uid] = _Arrivals(now)
                if self._steps is not None:  # steps may have come first, even ended
                    study.follow(self._steps.plan(study_uid), now)
            study.missing.discard(sop_uid or "")
            study.last_seen = now
            study.associations.add(association)
            if series_uid is not None and self._on_series_complete is not None:
                series = study.series.setdefault(series_uid, _Arrivals(now))
                series.last_seen = now
                series.associations.add(association)
            self._notify()

    def steps_changed(self, study_uid: str) -> None:
        """An MPPS of the study started or ended. The plan is read under the lock, so an instance
        indexed after the read is reported after it (and taken off ``missing``)."""
        if self._steps is None:
            return
        now = self._clock()
        with self._lock:
            plan = self._steps.plan(study_uid)
            study = self._studies.get(study_uid)
            if study is None and plan is None:
                return
            if study is None:
                study = self._studies[study_uid] = _Arrivals(now)
            study.follow(plan, now)
            self._notify()

    def association_ended(self, association: str) -> None:
        with self._lock:
            for study in self._studies.values():
                study.associations.discard(association)
                for series in study.series.values():
                    series.associations.discard(association)
            self._notify()

    def pending(self) -> list[str]:
        """Studies still waiting for completion."""
        with self._lock:
            return list(self._studies)

    def _due(self, now: float) -> tuple[list[tuple[str, _Arrivals]], list[tuple[str, str]], float | None]:
        """Studies and series complete now, and how long until the next one could be."""
        due: list[tuple[str, _Arrivals]] = []
        due_series: list[tuple[str, str]] = []
        deadlines: list[float] = []
        for study_uid, study in self._studies.items():
            deadline = study.deadline(self.completion)
            if now >= deadline:
                due.append((study_uid, study))
                continue
            deadlines.append(deadline)
            for series_uid, series in list(study.series.items()):
                deadline = series.deadline(self.completion)
                if now >= deadline:
                    due_series.append((study_uid, series_uid))
                    del study.series[series_uid]
                else:
                    deadlines.append(deadline)
        for study_uid, _study in due:
            del self._studies[study_uid]
        return due, due_series, (min(deadlines) - now if deadlines else None)

    def complete_due(self) -> float | None:
        """Complete the series and studies that are quiet now; seconds until the next could be."""
        with self._lock:
            due, due_series, wait = self._due(self._clock())
        for study_uid, series_uid in due_series:
            assert self._on_series_complete is not None  # series are tracked only with a callback
            self._call(self._on_series_complete, study_uid, series_uid)
        for study_uid, study in due:
            steps = study.steps
            if steps is None or steps.route or steps.held:
                self._call(self._on_complete, study_uid)
            if steps is not None and not steps.held and self._steps is not None:
                self._call(self._steps.used, study_uid, frozenset(study.missing), steps.route)
        return wait

    def _call(self, callback: Callable[..., None], study_uid: str, *args: object) -> None:
        try:
            callback(study_uid, *args)
        except Exception:
            log.exception("completing study %s failed", study_uid, extra=study_context(study_uid))

    def _run(self) -> None:
        while True:
            wait = self.complete_due()
            with self._lock:
                if self._stopped:
                    return
                if not self._changed:
                    self._lock.wait(timeout=wait)
                self._changed = False
