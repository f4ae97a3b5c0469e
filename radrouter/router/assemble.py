"""Decides when a study is complete, since DICOM has no end-of-study message.

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

log = logging.getLogger(__name__)


class ArrivalSink(Protocol):
    """What the SCP tells about arrivals: the assembler itself, or a queue to it in another process."""

    def instance_received(self, study_uid: str, association: str, series_uid: str | None = None) -> None: ...

    def association_ended(self, association: str) -> None: ...


@dataclass
class _Arrivals:
    """When a study (or one of its series) last received an instance, and over which associations."""

    last_seen: float
    associations: set[str] = field(default_factory=set)
    series: dict[str, _Arrivals] = field(default_factory=dict)

    def deadline(self, completion: CompletionSettings) -> float:
        quiet_s = completion.open_quiet_period_s if self.associations else completion.quiet_period_s
        return self.last_seen + quiet_s


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
    ) -> None:
        self.completion = completion
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

    def instance_received(self, study_uid: str, association: str, series_uid: str | None = None) -> None:
        now = self._clock()
        with self._lock:
            study = self._studies.setdefault(study_uid, _Arrivals(now))
            study.last_seen = now
            study.associations.add(association)
            if series_uid is not None and self._on_series_complete is not None:
                series = study.series.setdefault(series_uid, _Arrivals(now))
                series.last_seen = now
                series.associations.add(association)
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

    def _due(self, now: float) -> tuple[list[str], list[tuple[str, str]], float | None]:
        """Studies and series complete now, and how long until the next one could be."""
        due: list[str] = []
        due_series: list[tuple[str, str]] = []
        deadlines: list[float] = []
        for study_uid, study in self._studies.items():
            deadline = study.deadline(self.completion)
            if now >= deadline:
                due.append(study_uid)
                continue
            deadlines.append(deadline)
            for series_uid, series in list(study.series.items()):
                deadline = series.deadline(self.completion)
                if now >= deadline:
                    due_series.append((study_uid, series_uid))
                    del study.series[series_uid]
                else:
                    deadlines.append(deadline)
        for study_uid in due:
            del self._studies[study_uid]
        return due, due_series, (min(deadlines) - now if deadlines else None)

    def complete_due(self) -> float | None:
        """Complete the series and studies that are quiet now; seconds until the next could be."""
        with self._lock:
            due, due_series, wait = self._due(self._clock())
        for study_uid, series_uid in due_series:
            assert self._on_series_complete is not None  # series are tracked only with a callback
            self._call(self._on_series_complete, study_uid, series_uid)
        for study_uid in due:
            self._call(self._on_complete, study_uid)
        return wait

    def _call(self, callback: Callable[..., None], study_uid: str, *args: str) -> None:
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
