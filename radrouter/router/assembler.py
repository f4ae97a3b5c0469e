"""Decides when a study is complete, since DICOM has no end-of-study message.

- A study whose associations have all ended is complete ``quiet_period_s`` after its last instance
  (1 s by default: peers wait a fixed 5 to 900 s after the last instance).
- A study still carried by an open association is complete after ``open_quiet_period_s`` without
  an instance: it covers senders that keep associations open, and a receiving process that died.

A late instance starts the same again: the study completes once more (a new revision). Every SCP
process reports its arrivals to one assembler (:mod:`radrouter.router.listener`), so exactly one
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

    def instance_received(self, study_uid: str, association: str) -> None: ...

    def association_ended(self, association: str) -> None: ...


@dataclass
class _StudyArrivals:
    last_seen: float
    associations: set[str] = field(default_factory=set)


class StudyAssembler:
    """Tracks open associations and arrival times; calls ``on_complete`` once per quiet study."""

    def __init__(self, completion: CompletionSettings, on_complete: Callable[[str], None]) -> None:
        self.completion = completion
        self._on_complete = on_complete
        self._lock = threading.Condition()
        self._studies: dict[str, _StudyArrivals] = {}
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name="study-assembler", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        with self._lock:
            self._stopped = True
            self._lock.notify()
        self._thread.join(timeout=5)

    def instance_received(self, study_uid: str, association: str) -> None:
        now = time.monotonic()
        with self._lock:
            study = self._studies.setdefault(study_uid, _StudyArrivals(now))
            study.last_seen = now
            study.associations.add(association)
            self._lock.notify()

    def association_ended(self, association: str) -> None:
        with self._lock:
            for study in self._studies.values():
                study.associations.discard(association)
            self._lock.notify()

    def pending(self) -> list[str]:
        """Studies still waiting for completion."""
        with self._lock:
            return list(self._studies)

    def _due(self, now: float) -> tuple[list[str], float | None]:
        """Studies complete now, and how long until the next one could be."""
        due: list[str] = []
        deadlines: list[float] = []
        for study_uid, study in self._studies.items():
            quiet_s = (
                self.completion.open_quiet_period_s if study.associations else self.completion.quiet_period_s
            )
            if now >= study.last_seen + quiet_s:
                due.append(study_uid)
            else:
                deadlines.append(study.last_seen + quiet_s)
        for study_uid in due:
            del self._studies[study_uid]
        return due, (min(deadlines) - now if deadlines else None)

    def _run(self) -> None:
        while True:
            with self._lock:
                if self._stopped:
                    return
                due, wait = self._due(time.monotonic())
                if not due:
                    self._lock.wait(timeout=wait)
                    continue
            for study_uid in due:
                try:
                    self._on_complete(study_uid)
                except Exception:
                    log.exception("completing study %s failed", study_uid, extra=study_context(study_uid))
