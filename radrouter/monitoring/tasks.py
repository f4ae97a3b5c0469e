"""The Celery task that adds a finished job's report to its pipeline's monitoring series."""

from __future__ import annotations

from radrouter.inference.app import app, worker_index, worker_settings
from radrouter.monitoring.service import Monitor

MONITOR_TASK = "radrouter.monitor"


@app.task(name=MONITOR_TASK, acks_late=True)
def monitor(job_id: int) -> None:
    """Record the job's result with its input descriptors, then bring the drift alerts up to date."""
    watcher = Monitor(worker_settings(), worker_index())
    watcher.record_job(job_id)
    watcher.check()
