"""A real kernel memory limit for one node process: a memory cgroup (v2 ``memory.max``, or v1
``memory.limit_in_bytes`` where the v1 hierarchy is mounted), as systemd's ``MemoryMax=`` or a
container's memory limit sets it. A process that goes over it is SIGKILLed by the kernel's OOM killer.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from pathlib import Path

import pytest

V2, V1 = Path("/sys/fs/cgroup"), Path("/sys/fs/cgroup/memory")


class MemoryCgroup:
    """A new memory cgroup limited to ``limit_bytes`` (swap included, so the kernel kills rather than
    swaps); :meth:`wrap` runs a command inside it."""

    def __init__(self, limit_bytes: int) -> None:
        name = f"radrouter-test-{uuid.uuid4().hex[:8]}"
        if "memory" in _read(V2 / "cgroup.subtree_control").split():
            self.path, self.v2 = V2 / name, True
        elif (V1 / "memory.limit_in_bytes").is_file():
            self.path, self.v2 = V1 / name, False
        else:
            pytest.skip("no writable memory cgroup here (neither v2 with the memory controller nor v1)")
        try:
            self.path.mkdir()
        except OSError as error:
            pytest.skip(f"cannot create a memory cgroup ({error}); the test needs root on the host")
        if self.v2:
            (self.path / "memory.max").write_text(str(limit_bytes))
            with contextlib.suppress(OSError):  # no swap accounting: no swap to fall back on either
                (self.path / "memory.swap.max").write_text("0")
        else:
            (self.path / "memory.limit_in_bytes").write_text(str(limit_bytes))
            with contextlib.suppress(OSError):  # memsw exists only with swap accounting on
                (self.path / "memory.memsw.limit_in_bytes").write_text(str(limit_bytes))

    def wrap(self, command: list[str]) -> list[str]:
        """``command``, run by a shell that first moves itself into the cgroup (children inherit it)."""
        procs = self.path / "cgroup.procs"
        return ["/bin/sh", "-c", f'echo $$ > {procs} && exec "$@"', "in-cgroup", *command]

    def oom_kills(self) -> int:
        """How many processes of the cgroup the kernel's OOM killer has killed."""
        source = "memory.events" if self.v2 else "memory.oom_control"
        for line in _read(self.path / source).splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill":
                return int(value)
        return 0

    def remove(self) -> None:
        """Once its processes have ended (a cgroup with members cannot be removed)."""
        with contextlib.suppress(OSError):
            os.rmdir(self.path)


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""
