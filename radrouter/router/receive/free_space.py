"""The free-space reserve: Out of Resources rather than a disk filled past ``free_space_reserve_mb``."""

from __future__ import annotations

import threading
import time

from radrouter.storage.store import InstanceStore


class FreeSpace:
    """The free-space reserve check, without a statvfs call for every instance (it showed in profiles).

    The file system is asked again once this process has written its share of the headroom seen last
    (half of it, split between the node's SCP processes, which all write), or after a second.
    """

    def __init__(self, store: InstanceStore, reserve_bytes: int, processes: int) -> None:
        self.store = store
        self.reserve_bytes = reserve_bytes
        self.processes = max(1, processes)
        self._lock = threading.Lock()
        self._checked_at = -1.0
        self._budget = 0
        self._written = 0

    def room_for(self, size: int) -> bool:
        with self._lock:
            now = time.monotonic()
            if self._written + size > self._budget or now - self._checked_at > 1.0:
                headroom = self.store.free_bytes() - self.reserve_bytes
                self._checked_at, self._written = now, 0
                self._budget = max(0, headroom // (2 * self.processes))
                if headroom < size:
                    return False
            self._written += size
            return True
