"""Decides when a study is complete, since DICOM has no end-of-study message.

A study is complete when every association that brought instances of it has ended and no new
instance has arrived for ``quiet_period`` seconds. With a 1 s quiet period a study is routed about
1 s after the sender releases, where peers wait a fixed 5 to 900 s after the last instance.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from radrouter.logs import study

log = logging.getLogger(__name__)


class StudyAssembler:
    """Tracks open associations and arrival times per study; calls ``on_complete`` once per quiet study."""

    def __init__(self, quiet_period_s: float, on_complete: Callable[[str], None]) -> None:
        self.quiet_period_s = quiet_period_s
        self._on_complete = on_complete
        self._lock = threading.Condition()
        self._last_seen: dict[str, float] = {}
        self._open: dict[str, set[int]] = {}
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name="study-assembler", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        with self._lock:
            self._stopped = True
            self._lock.notify()
        self._thread.join(timeout=5)

    def instance_received(self, study_uid: str, association_id: int) -> None:
        with self._lock:
            self._last_seen[study_uid] = time.monotonic()
            self._open.setdefault(study_uid, set()).add(association_id)

    def association_ended(self, association_id: int) -> None:
        with self._lock:
            for associations in self._open.values():
                associations.discard(association_id)
            self._lock.notify()

    def pending(self) -> list[str]:
        """Studies still waiting for completion."""
        with self._lock:
            return list(self._last_seen)

    def _due(self, now: float) -> tuple[list[str], float | None]:
        """Studies that are complete now, and how long until the next one could be."""
        due: list[str] = []
        wait: float | None = None
        for study_uid, last_seen in self._last_seen.items():
            if self._open.get(study_uid):
                continue
            remaining = last_seen + self.quiet_period_s - now
            if remaining <= 0:
                due.append(study_uid)
            else:
                wait = remaining if wait is None else min(wait, remaining)
        for study_uid in due:
            del self._last_seen[study_uid]
            self._open.pop(study_uid, None)
        return due, wait

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
                    log.exception("completing study %s failed", study_uid, extra=study(study_uid))
