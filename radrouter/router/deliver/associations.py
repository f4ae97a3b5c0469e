"""Associations to destinations, kept open a short while after a delivery for the next one to reuse.

A busy destination (a SEG, then its SR, then the next study's) gets one association instead of one per
object, and no delivery waits for an A-RELEASE: an association idle for ``keep_open_s`` is released
in the background. One is reused only if it was negotiated for every (SOP class, transfer syntax) the
delivery needs, so a reused association decides stand-ins exactly as a new one would. One the peer
closed while idle is dropped when next looked at; the sender retries a failed reused association on
a new one (:func:`radrouter.router.deliver.scu.send`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from pynetdicom.association import Association

#: (SOP Class UID, Transfer Syntax UID) of one presentation context.
ContextPair = tuple[str, str]


@dataclass(frozen=True)
class PeerKey:
    """Who an association is between: the destination's address and AE title, and our calling AE."""

    host: str
    port: int
    ae_title: str
    calling_ae: str


@dataclass
class OpenAssociation:
    """An established association and what it was negotiated for."""

    association: Association
    proposed: frozenset[ContextPair]
    accepted: frozenset[ContextPair]
    idle_since: float = field(default=0.0)

    def serves(self, needed: set[ContextPair]) -> bool:
        return self.association.is_established and needed <= self.proposed


class AssociationPool:
    """Idle associations per peer; thread-safe (the delivery worker runs several tasks at once)."""

    def __init__(self, keep_open_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.keep_open_s = keep_open_s
        self._clock = clock
        self._idle: dict[PeerKey, list[OpenAssociation]] = {}
        self._lock = threading.Condition()
        self._reaper: threading.Thread | None = None
        #: Associations this pool was given back, then handed out again (for the logs and tests).
        self.reused = 0

    def take(self, peer: PeerKey, needed: set[ContextPair]) -> OpenAssociation | None:
        """An idle association to ``peer`` negotiated for ``needed``, now the caller's; else None."""
        with self._lock:
            idle = self._idle.get(peer, [])
            closed = [entry for entry in idle if not entry.association.is_established]
            for entry in closed:
                idle.remove(entry)
            chosen = next((entry for entry in idle if entry.serves(needed)), None)
            if chosen is not None:
                idle.remove(chosen)
                self.reused += 1
        for entry in closed:
            entry.association.abort()  # the peer ended it; this frees its threads and socket
        return chosen

    def give_back(self, peer: PeerKey, entry: OpenAssociation) -> None:
        """Keep a healthy association for the next delivery, or release it when nothing is kept."""
        if self.keep_open_s <= 0 or not entry.association.is_established:
            _end(entry)
            return
        with self._lock:
            entry.idle_since = self._clock()
            self._idle.setdefault(peer, []).append(entry)
            if self._reaper is None:
                self._reaper = threading.Thread(
                    target=self._release_idle, name="association-reaper", daemon=True
                )
                self._reaper.start()
            self._lock.notify()

    def close(self) -> None:
        """Release every idle association (the worker is stopping)."""
        with self._lock:
            idle = [entry for entries in self._idle.values() for entry in entries]
            self._idle.clear()
        for entry in idle:
            _end(entry)

    def _release_idle(self) -> None:
        while True:
            with self._lock:
                now = self._clock()
                idle = [entry for entries in self._idle.values() for entry in entries]
                expired = [entry for entry in idle if now - entry.idle_since >= self.keep_open_s]
                if not expired:
                    oldest = min((entry.idle_since for entry in idle), default=None)
                    self._lock.wait(timeout=None if oldest is None else oldest + self.keep_open_s - now)
                    continue
                for entries in self._idle.values():
                    entries[:] = [entry for entry in entries if entry not in expired]
            for entry in expired:
                _end(entry)


def _end(entry: OpenAssociation) -> None:
    """Release an established association, abort one that is half gone."""
    if entry.association.is_established:
        entry.association.release()
    else:
        entry.association.abort()
