"""The SCP's own Prometheus exporter, summed over its receiver processes.

Each receiver counts associations, instances and bytes in its own process; prometheus_client's
multiprocess mode keeps those counts in files under one folder, and the parent's exporter adds them
up. The folder must be named before prometheus_client is first imported, hence this module imports
it only inside ``serve_metrics``.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"


def share_metrics_between_processes(folder: Path) -> None:
    """Start from an empty folder (counts of a previous run must not add up) and name it for children."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    os.environ[MULTIPROCESS_ENV] = str(folder)


def serve_metrics(port: int, host: str) -> None:
    """Export the sum of every receiver's counters on ``host:port`` (a daemon thread)."""
    from prometheus_client import CollectorRegistry, multiprocess, start_http_server

    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    start_http_server(port, addr=host, registry=registry)
