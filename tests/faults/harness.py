"""A node as separate processes (as systemd or compose runs them), so a test can kill -9 any one of them."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pydicom
import yaml
from sqlalchemy import func, select

from radrouter.config.access import Role
from radrouter.config.settings import Settings
from radrouter.node.broker import EmbeddedRedis
from radrouter.node.supervisor import node_commands
from radrouter.storage.accounts import add_token
from radrouter.storage.index import Index, Instance, Job, Series
from tests.access import bearer
from tests.services import Orthanc, free_port, port_open, wait_until

PIPELINE_WORKER = "worker-brain-extraction"
DELIVERY_WORKER = "worker-delivery"

#: Short waits, so each fault plays out in seconds; the broker's visibility timeout keeps its shipped
#: 3600 s, so a killed worker's job must come back by the worker's own take-over, not by the timeout.
QUICK: dict[str, Any] = {
    # the quiet period and the reconciler's pass: how soon completion and recovery run, not whether
    "completion": {"quiet_period_s": 0.5},
    "recovery": {"interval_s": 1.0, "undispatched_after_s": 1.0},
    # retries every 0.5-2 s while the PACS is down, instead of waiting minutes between attempts
    "delivery": {"backoff_initial_s": 0.5, "backoff_max_s": 2.0, "max_attempts": 1000, "timeout_s": 5.0},
}


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in extra.items():
        merged[key] = _merge(merged[key], value) if isinstance(merged.get(key), dict) else value
    return merged


class NodeProcesses:
    """The SCP, the web app and each worker as its own process, on a Redis the test controls."""

    def __init__(self, workdir: Path, pacs: Orthanc, **overrides: Any) -> None:
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.port, self.web_port = free_port(), free_port()
        self.redis = EmbeddedRedis(free_port(), workdir / "redis")
        config = _merge(
            {
                "node": {"ae_title": "RADROUTER", "port": self.port, "metrics_port": free_port()},
                "web": {"port": self.web_port},
                # 64 MB reserve, not 1024: a CI disk may have less than a GB free (see tests/services.py)
                "storage": {"root": str(workdir / "data"), "free_space_reserve_mb": 64, "fsync": True},
                "broker": {"url": self.redis.url},
                "destinations": {
                    "pacs": {"host": "127.0.0.1", "port": pacs.dicom_port, "ae_title": pacs.ae_title}
                },
            },
            _merge(QUICK, overrides),
        )
        self.config_path = workdir / "radrouter.yaml"
        self.config_path.write_text(yaml.safe_dump(config))
        self.commands = node_commands(Settings(**config))
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.starts: dict[str, int] = {}
        self.index = Index(Settings(**config).storage.resolved_index_url())
        # An admin token of the test's own, made in the index as `radrouter tokens add` makes it.
        token = add_token(self.index, "faults", Role.ADMIN)
        self.http = httpx.Client(headers=bearer(token))

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.web_port}/api"

    def log(self, name: str) -> Path:
        return self.workdir / "logs" / f"{name}.log"

    def start(self, *names: str) -> None:
        """Start the named processes (all when none are named) and wait until each is ready."""
        if not self.redis.pid:
            self.redis.start()
        for name in names or tuple(self.commands):
            self.starts[name] = self.starts.get(name, 0) + 1
            self.log(name).parent.mkdir(exist_ok=True)
            with self.log(name).open("ab") as log:
                log.write(f"--- start {self.starts[name]}\n".encode())
                self.processes[name] = subprocess.Popen(
                    self.commands[name].command,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env={**os.environ, **self.commands[name].env, "RADROUTER_CONFIG": str(self.config_path)},
                    start_new_session=True,
                )
        for name in names or tuple(self.commands):
            wait_until(lambda name=name: self._ready(name), 300, f"{name} ready")

    def _ready(self, name: str) -> bool:
        process = self.processes[name]
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited: {self.log(name).read_text()[-3000:]}")
        if name == "web":
            return port_open(self.web_port)
        current = self.log(name).read_text().rsplit(f"--- start {self.starts[name]}\n", 1)[-1]
        return ("listening on" if name == "scp" else " ready.") in current

    def kill(self, name: str) -> None:
        """kill -9: no clean-up, no goodbye to the broker."""
        process = self.processes.pop(name)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)

    def kill_redis(self) -> None:
        assert self.redis.pid is not None
        os.kill(self.redis.pid, signal.SIGKILL)
        wait_until(lambda: not port_open(self.redis.port), 10, "redis gone")
        self.redis.stop()

    def stop(self) -> None:
        for process in self.processes.values():
            process.send_signal(signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
        self.processes.clear()
        self.redis.stop()
        self.index.engine.dispose()

    # What the node knows, read from its index and its API.

    def study(self, study_uid: str) -> dict[str, Any]:
        return dict(self.http.get(f"{self.api}/studies/{study_uid}", timeout=30).json())

    def study_state(self, study_uid: str) -> str | None:
        response = self.http.get(f"{self.api}/studies/{study_uid}", timeout=30)
        return str(response.json()["state"]) if response.status_code == 200 else None

    def wait_for_state(self, study_uid: str, state: str, timeout_s: float = 240) -> dict[str, Any]:
        wait_until(lambda: self.study_state(study_uid) == state, timeout_s, f"study {state}", 0.25)
        return self.study(study_uid)

    def indexed_sop_uids(self, study_uid: str) -> set[str]:
        with self.index.session() as session:
            rows = session.scalars(
                select(Instance.sop_uid).join(Series).where(Series.study_uid == study_uid)
            ).all()
        return set(rows)

    def job_count(self, study_uid: str) -> int:
        with self.index.session() as session:
            return int(session.scalar(select(func.count()).where(Job.study_uid == study_uid)) or 0)


def _header(path: Path, keyword: str) -> str:
    return str(pydicom.dcmread(path, stop_before_pixels=True, specific_tags=[keyword])[keyword].value)


def sop_uid(path: Path) -> str:
    return _header(path, "SOPInstanceUID")


def study_uid_of(path: Path) -> str:
    return _header(path, "StudyInstanceUID")
