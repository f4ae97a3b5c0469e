"""A node-wide budget for the instance bytes the SCP holds in memory at once.

Data sets stream to disk as they arrive (``spool.py``); what still has to be decoded whole (a
deflated data set, inflated to read its header; an instance back from an external destination, to
re-identify it) takes its size from this budget, shared by every SCP process (each writes its own slot
of a shared array). An instance that does not fit is answered Out of Resources (0xA700), which tells
the sender to try later, instead of the node swapping or being killed.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


class MemoryBudget:
    def __init__(self, slots: Any, slot: int, limit_bytes: int) -> None:
        self.slots, self.slot, self.limit_bytes = slots, slot, limit_bytes
        self._lock = threading.Lock()

    def held(self) -> int:
        """Bytes all SCP processes hold now."""
        return int(sum(self.slots))

    @contextmanager
    def holding(self, size: int) -> Iterator[bool]:
        """Hold ``size`` bytes for the block when they fit (True), else hold nothing (False)."""
        with self._lock:
            admitted = self.held() + size <= self.limit_bytes
            if admitted:
                self.slots[self.slot] += size
        try:
            yield admitted
        finally:
            if admitted:
                with self._lock:
                    self.slots[self.slot] -= size

    @contextmanager
    def holding_the_rest(self, at_most: int) -> Iterator[int]:
        """Hold what is left of the budget, up to ``at_most`` bytes, for a size known only once read
        (a deflated data set's inflated size); how many bytes are held."""
        with self._lock:
            size = max(0, min(at_most, self.limit_bytes - self.held()))
            self.slots[self.slot] += size
        try:
            yield size
        finally:
            with self._lock:
                self.slots[self.slot] -= size
