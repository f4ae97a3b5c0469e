"""How the processes of a node stand: written by ``radrouter up`` whenever it changes, read by the web app.

A small JSON file under the storage root, replaced atomically; under compose or systemd, where no
``up`` supervises, there is none and readers say nothing about processes.
"""

from __future__ import annotations

import enum
import json
import os
from pathlib import Path
from typing import Any

from pydantic import BaseModel

STATUS_FILE = "node-processes.json"


class ProcessState(enum.StrEnum):
    RUNNING = "running"
    RESTARTING = "restarting"  # it ended; it is started again after its backoff
    CRASH_LOOPING = (
        "crash-looping"  # it ended supervisor.crash_loop_after times in a row, each soon after start
    )


class ProcessStatus(BaseModel):
    state: ProcessState
    pid: int | None
    restarts: int
    last_exit: int | None


class NodeStatus(BaseModel):
    supervisor_pid: int
    processes: dict[str, ProcessStatus]

    def degraded(self) -> dict[str, ProcessStatus]:
        """The processes that are not running now."""
        return {name: p for name, p in self.processes.items() if p.state != ProcessState.RUNNING}

    def down_in_words(self) -> str:
        """Which processes are not running, and how often they were started again."""
        return ", ".join(
            f"{name} {status.state.value} ({status.restarts} restart(s), last exit {status.last_exit})"
            for name, status in sorted(self.degraded().items())
        )

    def summary(self) -> str:
        """``ok``, or ``degraded:`` and which processes are down, for ``/api/health``."""
        return f"degraded: {self.down_in_words()}" if self.degraded() else "ok"


def status_path(root: Path) -> Path:
    return root / STATUS_FILE


def write_node_status(root: Path, processes: dict[str, dict[str, Any]]) -> None:
    path = status_path(root)
    path.parent.mkdir(parents=True, exist_ok=True)
    scratch = path.with_suffix(".tmp")
    scratch.write_text(json.dumps({"supervisor_pid": os.getpid(), "processes": processes}))
    scratch.replace(path)


def read_node_status(root: Path) -> NodeStatus | None:
    """The status ``radrouter up`` left, or None without a live supervisor (compose, systemd, stopped)."""
    try:
        status = NodeStatus.model_validate_json(status_path(root).read_bytes())
    except (OSError, ValueError):
        return None
    try:
        os.kill(status.supervisor_pid, 0)
    except ProcessLookupError:
        return None  # left by an `up` that is gone
    except PermissionError:
        pass
    return status
