"""Several radrouter SCP nodes behind HAProxy, each in its own network namespace, as separate machines.

One PostgreSQL (the shared index) and one Redis on the host, reached by the nodes over their links; a
storage root every node writes at the same path (the shared-mount layout); HAProxy on the host's
loopback as the one address senders use. Used by tests/router/test_cluster_e2e.py and bench/cluster.py.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

from radrouter.config.settings import Settings
from radrouter.node.supervisor import node_commands
from radrouter.router.dispatch.contract import queue_for
from radrouter.storage.index import Index
from tests.remote import NetworkNamespace
from tests.services import PostgreSQL, free_port, port_open, wait_until

HAPROXY = "/usr/sbin/haproxy"
#: Every node listens on this port in its own namespace (no clash: each has its own network).
NODE_PORT = 11112
#: The nodes of the README's example haproxy.cfg.
README_SERVERS = [("node-a", "10.0.0.11", NODE_PORT), ("node-b", "10.0.0.12", NODE_PORT)]


def haproxy_config(port: int, servers: list[tuple[str, str, int]], bind: str = "0.0.0.0") -> str:
    """The haproxy.cfg of the README: TCP mode, least connections, a TCP check every second, and a
    connection refused by a dead node retried on another."""
    lines = "".join(f"    server {name} {host}:{server_port} check\n" for name, host, server_port in servers)
    return f"""global
    maxconn 4096

defaults
    mode tcp
    timeout connect 2s
    timeout client 10m
    timeout server 10m
    retries 2
    option redispatch

frontend dicom
    bind {bind}:{port}
    default_backend radrouter

backend radrouter
    balance leastconn
    option tcp-check
    default-server inter 1s fall 2 rise 1
{lines}"""


class ClusterNode:
    """``radrouter scp`` inside its own namespace, optionally pinned to CPUs with taskset."""

    def __init__(self, name: str, namespace: NetworkNamespace, config: Path, log: Path, cpus: str) -> None:
        self.name, self.namespace, self.config, self.log, self.cpus = name, namespace, config, log, cpus
        self.process: subprocess.Popen[bytes] | None = None
        self.metrics_port = free_port()

    def start(self) -> None:
        pin = ["taskset", "-c", self.cpus] if self.cpus and shutil.which("taskset") else []
        command = [*pin, sys.executable, "-m", "radrouter.cli", "scp"]
        self.log.write_bytes(b"")
        self.process = self.namespace.popen(
            command, self.log, {**os.environ, "RADROUTER_CONFIG": str(self.config)}
        )
        try:
            wait_until(self._ready, 120, f"SCP node {self.name}")
        except TimeoutError as late:  # what it was doing instead, for the CI log
            raise TimeoutError(f"{late}; its log ends: {self.log.read_text()[-3000:]}") from None

    def _ready(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise RuntimeError(f"node {self.name} ended: {self.log.read_text()[-3000:]}")
        return "listening on" in self.log.read_text()

    def kill(self) -> None:
        """kill -9 of the node's whole process group (its parent and receivers), as a power cut."""
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()


class Cluster:
    """PostgreSQL, Redis, ``nodes`` SCP nodes in namespaces and HAProxy; with ``destinations``, also a
    pipeline worker and a delivery worker on the host for the ``pipelines`` that ``extra`` declares."""

    def __init__(
        self,
        workdir: Path,
        nodes: int,
        extra: str = "",
        workers: tuple[str, ...] = (),
        shared: bool = True,
        first_slot: int = 1,
    ) -> None:
        """``shared`` False: each node's own in-memory assembler (the bench's one-node peer);
        ``first_slot``: the namespaces' slots, so that several clusters run side by side."""
        self.workdir = workdir
        self.shared = shared
        self.extra = extra
        self.workers = workers
        self.namespaces = [NetworkNamespace(slot=first_slot + n) for n in range(nodes)]
        self.postgres = PostgreSQL(
            listen=("127.0.0.1", *(ns.host_address for ns in self.namespaces)),
            trusted_network="10.231.0.0/16",
        )
        self.port = free_port()
        self.redis_port = free_port()
        self.nodes: list[ClusterNode] = []
        self.others: list[subprocess.Popen[bytes]] = []
        self.storage = workdir / "shared-storage"

    def _config(self, host: str, database: str, node: str = "", metrics: str = "") -> str:
        # Overrides, each for a reason: the shared index and broker at the address this machine reaches
        # them by; node names, as the test's "machines" share one host name; the metrics port on the
        # namespace's own address, so the test reads each node's counters; a 64 MB reserve (CI disks).
        enabled = "true" if self.shared else "false"
        cluster = f"cluster: {{enabled: {enabled}" + (f", node_name: {node}}}\n" if node else "}\n")
        return (
            f"storage: {{root: {self.storage}, index_url: '{database.replace('127.0.0.1', host)}', "
            "free_space_reserve_mb: 64}\n"
            f"broker: {{url: 'redis://{host}:{self.redis_port}/0'}}\n"
            + cluster
            + (f"node: {{port: {NODE_PORT}, {metrics}}}\n" if metrics else "")
            + self.extra
        )

    def start(self, cpus: list[str] | None = None) -> None:
        for namespace in self.namespaces:
            namespace.create()
        self.postgres.start()
        self.database = self.postgres.create_database()
        binds = " ".join(["127.0.0.1", *(ns.host_address for ns in self.namespaces)])
        self.others.append(
            subprocess.Popen(
                ["redis-server", "--port", str(self.redis_port), "--bind", binds, "--save", "",
                 "--appendonly", "no", "--dir", str(self.workdir), "--protected-mode", "no"],
                stdout=(self.workdir / "redis.log").open("wb"), stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        )  # fmt: skip
        redis = self.others[-1]
        wait_until(lambda: port_open(self.redis_port) or redis.poll() is not None, 30, "Redis")
        if redis.poll() is not None:
            raise RuntimeError(f"redis-server ended: {(self.workdir / 'redis.log').read_text()[-2000:]}")
        host_config = self.workdir / "host.yaml"
        host_config.write_text(self._config("127.0.0.1", self.database))
        self.host_env = {**os.environ, "RADROUTER_CONFIG": str(host_config)}
        radrouter = [sys.executable, "-m", "radrouter.cli"]
        subprocess.run(
            [*radrouter, "db", "upgrade"], env=self.host_env, check=True, capture_output=True, timeout=120
        )
        self.index = Index(self.database)
        for n, namespace in enumerate(self.namespaces):
            name = f"node-{chr(ord('a') + n)}"
            config = self.workdir / f"{name}.yaml"
            node = ClusterNode(name, namespace, config, self.workdir / f"{name}.log", (cpus or [""] * 8)[n])
            metrics = f"metrics_port: {node.metrics_port}, metrics_host: {namespace.address}"
            config.write_text(self._config(namespace.host_address, self.database, name, metrics))
            node.start()
            self.nodes.append(node)
        settings = Settings()
        commands = [node_commands(settings)["worker-delivery"].command] if self.workers else []
        commands += [[*radrouter, "worker", "--queues", queue_for(settings, p)] for p in self.workers]
        for n, command in enumerate(commands):
            log = (self.workdir / f"worker-{n}.log").open("wb")
            self.others.append(
                subprocess.Popen(
                    command, env=self.host_env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
                )
            )
        servers = [(node.name, node.namespace.address, NODE_PORT) for node in self.nodes]
        (self.workdir / "haproxy.cfg").write_text(haproxy_config(self.port, servers, bind="127.0.0.1"))
        self.others.append(
            subprocess.Popen(
                [HAPROXY, "-db", "-f", str(self.workdir / "haproxy.cfg")],
                stdout=(self.workdir / "haproxy.log").open("wb"), stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        )  # fmt: skip
        wait_until(lambda: port_open(self.port), 30, "HAProxy")
        worker_logs = [self.workdir / f"worker-{n}.log" for n in range(len(commands))]
        wait_until(lambda: all(" ready." in log.read_text() for log in worker_logs), 180, "workers")

    def stop(self) -> None:
        """SIGTERM to every process group at once, then wait for each (SIGKILL after 30 s)."""
        running = [node.process for node in self.nodes if node.process is not None] + self.others
        for process in running:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in running:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        self.postgres.stop()
        for namespace in self.namespaces:
            namespace.delete()
