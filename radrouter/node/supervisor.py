"""``radrouter up``: the whole node on one machine, as child processes that stop together."""

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

from radrouter.config.pipelines import pool_queue
from radrouter.config.settings import CONFIG_ENV, Settings
from radrouter.inference.registry import available
from radrouter.node.broker import EmbeddedRedis
from radrouter.router.dispatch.contract import DELIVERY_QUEUE, queue_for
from radrouter.storage.index import Index

log = logging.getLogger(__name__)


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


def run_node(settings: Settings, config_file: Path | None) -> int:
    """Start everything; on Ctrl-C, SIGTERM or a child's death stop everything; return an exit code."""
    # Migrate once, here, before the processes share the index (they only check its revision).
    Index(settings.storage.resolved_index_url(), migrate=True)
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
    children: dict[str, subprocess.Popen[bytes]] = {}
    exit_code = 0
    try:
        for name, process in node_commands(settings).items():
            children[name] = subprocess.Popen(
                process.command, env={**env, **process.env}, start_new_session=True
            )
        log.info(
            "node up: SCP %s on port %d, web on http://%s:%d",
            settings.node.ae_title,
            settings.node.port,
            settings.web.host,
            settings.web.port,
        )
        while not stopping:
            dead = {name: child.returncode for name, child in children.items() if child.poll() is not None}
            if dead:
                log.error("stopping the node because a process ended: %s", dead)
                exit_code = 1
                break
            time.sleep(0.2)
    finally:
        _stop_children(children)
        if broker is not None:
            broker.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return exit_code


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
