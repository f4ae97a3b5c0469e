"""FreeSpace: the reserve holds although the file system is not asked for every instance."""

from __future__ import annotations

from pathlib import Path

from radrouter.router.receive.free_space import FreeSpace
from radrouter.storage.store import InstanceStore

MB = 1024 * 1024


class ShrinkingStore(InstanceStore):
    """A store whose free space the test sets, counting how often it is asked."""

    def __init__(self, root: Path, free: int) -> None:
        super().__init__(root)
        self.free, self.asked = free, 0

    def free_bytes(self) -> int:
        self.asked += 1
        return self.free


def test_the_reserve_holds_while_the_file_system_is_asked_seldom(tmp_path: Path) -> None:
    store = ShrinkingStore(tmp_path, free=164 * MB)
    space = FreeSpace(store, reserve_bytes=64 * MB, processes=2)  # 100 MB headroom: 25 MB per check

    accepted = 0
    while space.room_for(1 * MB):
        store.free -= 1 * MB  # this process writes it
        store.free -= 1 * MB  # and another process writes as much
        accepted += 1

    assert store.free >= 64 * MB  # never below the reserve
    assert accepted == 50
    assert store.asked < accepted / 4
    assert not space.room_for(1)  # below the reserve every instance is refused
