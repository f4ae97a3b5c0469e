"""A second machine inside the sandbox: a network namespace joined to the host by a veth pair.

The namespace has its own loopback and one private link; a process started in it reaches the host's
services only at the host's address on that link, never at 127.0.0.1.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=30)


class NetworkNamespace:
    """``ip netns`` + veth: the host at ``host_address``, the namespace at ``address``, a /24 of 10.231/16."""

    def __init__(self, slot: int = 0) -> None:
        """``slot``: several namespaces of one test process (each its own name and /24)."""
        tag = (os.getpid() + slot) % 10000
        self.name = f"rr{tag}"
        self.host_link, self.link = f"rrh{tag}", f"rrw{tag}"
        subnet = f"10.231.{tag % 250}"
        self.host_address, self.address, self.network = f"{subnet}.1", f"{subnet}.2", f"{subnet}.0/24"

    def create(self) -> None:
        _ip("netns", "add", self.name)
        _ip("link", "add", self.host_link, "type", "veth", "peer", "name", self.link)
        _ip("link", "set", self.link, "netns", self.name)
        _ip("addr", "add", f"{self.host_address}/24", "dev", self.host_link)
        _ip("link", "set", self.host_link, "up")
        _ip("-n", self.name, "addr", "add", f"{self.address}/24", "dev", self.link)
        _ip("-n", self.name, "link", "set", self.link, "up")
        _ip("-n", self.name, "link", "set", "lo", "up")

    def delete(self) -> None:
        subprocess.run(["ip", "link", "del", self.host_link], capture_output=True, timeout=30)
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True, timeout=30)

    def popen(self, command: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            ["ip", "netns", "exec", self.name, *command],
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )

    def can_connect(self, host: str, port: int) -> bool:
        """Whether a TCP connection from inside the namespace to ``host:port`` succeeds."""
        probe = (
            "import socket,sys; s=socket.socket(); s.settimeout(2); "
            f"sys.exit(s.connect_ex(({host!r}, {port})))"
        )
        command = ["ip", "netns", "exec", self.name, sys.executable, "-c", probe]
        return subprocess.run(command, capture_output=True, timeout=30).returncode == 0
