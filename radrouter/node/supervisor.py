"""``radrouter up``: the whole node on one machine, as child processes it keeps running.

A child that ends (a crash, an OOM kill, kill -9) is started again after a backoff while the rest of
the node goes on; Ctrl-C or SIGTERM stops them all.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

from radrouter.config.pipelines import pool_queue
from radrouter.config.settings import CONFIG_ENV, Settings
from radrouter.inference.registry import available
from radrouter.node.broker import EmbeddedRedis
from radrouter.router.dispatch.contract import DELIVERY_QUEUE, queue_for
from radrouter.storage.accounts import has_users
from radrouter.storage.index import Index
from radrouter.storage.node_status import ProcessState, status_path, write_node_status

log = logging.getLogger(__name__)

#: The embedded redis-server's name among the node's processes.
BROKER = "redis"


@dataclass(frozen=True)
class NodeProcess:
    """One child process of the node: its command line and the environment it adds."""

    command: list[str]
    env: dict[str, str] = field(default_factory=dict)


def node_commands(settings: Settings) -> dict[str, NodeProcess]:
    """The processes of a node: the SCP, the web app, one worker for delivery, and the inference workers.

    A pool with GPUs gets one worker process per GPU (it sees only that one through
    CUDA_VISIBLE_DEVICES); a pool without GPUs one CPU worker; a pipeline in no pool its own worker.
    """
    radrouter = [sys.executable, "-m", "radrouter.cli"]
    commands = {
        "scp": NodeProcess([*radrouter, "scp"]),
        "web": NodeProcess([*radrouter, "web"]),
        "worker-delivery": NodeProcess(
            [*radrouter, "worker", "--queues", DELIVERY_QUEUE, "--pool", "threads", "--concurrency", "4"]
        ),
    }
    overlap = ["--pool", "threads", "--concurrency", str(settings.inference.jobs_per_worker)]
    for pool_name, pool in settings.pools.items():
        serve = [*radrouter, "worker", "--queues", pool_queue(pool_name), *overlap]
        for gpu in pool.gpus:
            commands[f"worker-{pool_name}-gpu{gpu}"] = NodeProcess(serve, {"CUDA_VISIBLE_DEVICES": str(gpu)})
        if not pool.gpus:
            commands[f"worker-{pool_name}"] = NodeProcess(serve, {"CUDA_VISIBLE_DEVICES": ""})
    pooled = {name for pool in settings.pools.values() for name in pool.pipelines}
    for pipeline in available(settings):
        if pipeline not in pooled:
            commands[f"worker-{pipeline}"] = NodeProcess(
                [*radrouter, "worker", "--queues", queue_for(settings, pipeline), *overlap]
            )
    return commands


@dataclass
class SupervisedProcess:
    """One child and its history: the supervisor restarts it, sooner or later, whenever it ends."""

    name: str
    spec: NodeProcess
    popen: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    restarts: int = 0
    failures_in_a_row: int = 0
    last_exit: int | None = None
    start_due: float | None = None

    def status(self, crash_loop_after: int) -> dict[str, Any]:
        if self.start_due is None:
            state = ProcessState.RUNNING
        elif self.failures_in_a_row >= crash_loop_after:
            state = ProcessState.CRASH_LOOPING
        else:
            state = ProcessState.RESTARTING
        return {
            "state": state,
            "pid": self.popen.pid if self.popen is not None and self.start_due is None else None,
            "restarts": self.restarts,
            "last_exit": self.last_exit,
        }


class NodeSupervisor:
    """Keeps every child of the node running: one that ends is started again after an exponential
    backoff (reset once it has run ``supervisor.stable_after_s``), and the others go on meanwhile.

    How each child stands is written under the storage root whenever it changes (``storage.node_status``;
    read by the web app for ``/api/health``, the dashboard and ``/metrics``).
    """

    def __init__(self, settings: Settings, env: dict[str, str], broker: EmbeddedRedis | None) -> None:
        self.settings = settings.supervisor
        self.env = env
        self.broker = broker
        self.root = settings.storage.root
        self.children = {
            name: SupervisedProcess(name, spec) for name, spec in node_commands(settings).items()
        }
        self.broker_restarts = 0
        self._written: dict[str, Any] | None = None

    def start_all(self) -> None:
        for child in self.children.values():
            self._start(child)
        self._write_status()

    def watch_once(self) -> None:
        """Notice children that ended, start those whose backoff is over; restart a dead broker."""
        now = time.monotonic()
        if self.broker is not None and not self.broker.running():
            log.error(
                "the embedded redis-server ended; starting it again (its append-only file keeps the queues)"
            )
            try:
                self.broker.start()
                self.broker_restarts += 1
            except RuntimeError as error:  # its port not yet free: the next pass tries again
                log.error("%s", error)
        for child in self.children.values():
            if child.start_due is None and child.popen is not None and child.popen.poll() is not None:
                self._ended(child, now)
            elif child.start_due is not None and now >= child.start_due:
                child.restarts += 1
                self._start(child)
        self._write_status()

    def stop_all(self) -> None:
        _stop_children({name: c.popen for name, c in self.children.items() if c.popen is not None})
        status_path(self.root).unlink(missing_ok=True)

    def _start(self, child: SupervisedProcess) -> None:
        child.popen = subprocess.Popen(
            child.spec.command, env={**self.env, **child.spec.env}, start_new_session=True
        )
        child.started_at, child.start_due = time.monotonic(), None

    def _ended(self, child: SupervisedProcess, now: float) -> None:
        assert child.popen is not None
        child.last_exit = child.popen.returncode
        if now - child.started_at >= self.settings.stable_after_s:
            child.failures_in_a_row = 0
        child.failures_in_a_row += 1
        delay = min(
            self.settings.restart_backoff_max_s,
            self.settings.restart_backoff_initial_s * 2 ** (child.failures_in_a_row - 1),
        )
        child.start_due = now + delay
        level = (
            logging.ERROR if child.failures_in_a_row >= self.settings.crash_loop_after else logging.WARNING
        )
        log.log(
            level,
            "%s ended (exit %s, %d time(s) in a row); starting it again in %.1f s, the rest of the node "
            "goes on",
            child.name,
            child.last_exit,
            child.failures_in_a_row,
            delay,
        )

    def _write_status(self) -> None:
        crash_loop_after = self.settings.crash_loop_after
        processes = {name: child.status(crash_loop_after) for name, child in self.children.items()}
        if self.broker is not None:
            running = self.broker.running()
            processes[BROKER] = {
                "state": ProcessState.RUNNING if running else ProcessState.RESTARTING,
                "pid": self.broker.pid if running else None,
                "restarts": self.broker_restarts,
                "last_exit": None,
            }
        if processes != self._written:
            write_node_status(self.root, processes)
            self._written = processes


def run_node(settings: Settings, config_file: Path | None) -> int:
    """Start everything and keep it running; on Ctrl-C or SIGTERM stop everything; return an exit code."""
    # Migrate once, here, before the processes share the index (they only check its revision).
    index = Index(settings.storage.resolved_index_url(), migrate=True)
    if not has_users(index):
        config = f" --config {config_file}" if config_file is not None else ""
        log.warning(
            "no web user yet: create the first admin with `radrouter users add <name> --role admin%s`",
            config,
        )
    env = dict(os.environ)
    if config_file is not None:
        env[CONFIG_ENV] = str(config_file.resolve())
    broker: EmbeddedRedis | None = None
    if not settings.broker.url:
        broker = EmbeddedRedis(settings.broker.embedded_port, settings.storage.root / "redis")
        broker.start()
        env["RADROUTER_BROKER__URL"] = broker.url
        log.info("embedded redis-server on %s", broker.url)

    stopping = False

    def request_stop(signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    supervisor = NodeSupervisor(settings, env, broker)
    try:
        supervisor.start_all()
        log.info(
            "node up: SCP %s on port %d, web on %s://%s:%d",
            settings.node.ae_title,
            settings.node.port,
            "https" if settings.web.tls.enabled else "http",
            settings.web.host,
            settings.web.port,
        )
        while not stopping:
            supervisor.watch_once()
            time.sleep(0.2)
    finally:
        supervisor.stop_all()
        if broker is not None:
            broker.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0


def _stop_children(children: dict[str, subprocess.Popen[bytes]], timeout_s: float = 20.0) -> None:
    for child in children.values():
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    for name, child in children.items():
        try:
            child.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            log.warning("%s did not stop in time; killing it", name)
            child.kill()
            child.wait()
