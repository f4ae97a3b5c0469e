"""The one worker app: every task the router names is registered, and importing builds nothing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from radrouter.config.settings import Settings
from radrouter.router.dispatch.contract import TaskName
from radrouter.worker import create_worker_app

#: Released task names: messages already queued in Redis carry them, so they never change.
RELEASED = {
    "radrouter.infer",
    "radrouter.deliver",
    "radrouter.forward",
    "radrouter.triage",
    "radrouter.hl7",
    "radrouter.monitor",
}


def test_the_worker_app_registers_every_task_by_its_released_name(tmp_path: Path) -> None:
    app = create_worker_app(Settings(storage={"root": tmp_path}))
    app.loader.import_default_modules()
    assert {name.value for name in TaskName} == RELEASED
    assert set(app.tasks) >= RELEASED


def test_importing_the_worker_and_its_tasks_reads_no_config(tmp_path: Path) -> None:
    """A config file that does not exist would fail any import that loads settings."""
    probe = (
        "import radrouter.worker, radrouter.inference.tasks, radrouter.router.deliver.tasks, "
        "radrouter.worklist.tasks, radrouter.monitoring.tasks, radrouter.cli"
    )
    environment = {**os.environ, "RADROUTER_CONFIG": str(tmp_path / "missing.yaml")}
    result = subprocess.run([sys.executable, "-c", probe], env=environment, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert not (tmp_path / "missing.yaml").exists()
