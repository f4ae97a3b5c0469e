"""One set of real services per test session: Orthanc as the PACS and a running radrouter node."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from radrouter.config.settings import CONFIG_ENV
from tests.services import DATA, DICOMWEB_PLUGIN, Node, Orthanc, PostgreSQL, RisListener, port_open

pytest_plugins = ["tests.browser"]

REQUIRED_TOOLS = (
    "redis-server",
    "Orthanc",
    "/usr/bin/storescu",
    "/usr/bin/echoscu",
    "dciodvfy",
    "chromium",
    "runuser",
    "/usr/sbin/haproxy",
)


def pytest_sessionstart(session: pytest.Session) -> None:
    missing = [tool for tool in REQUIRED_TOOLS if shutil.which(tool) is None]
    missing += [] if Path(DICOMWEB_PLUGIN).is_file() else [DICOMWEB_PLUGIN]
    if missing or not DATA.is_dir():
        raise pytest.UsageError(
            f"missing {missing or DATA}: run the tests through `make test`, which installs what is needed"
        )


@pytest.fixture(scope="session")
def orthanc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Orthanc]:
    pacs = Orthanc(tmp_path_factory.mktemp("orthanc"))
    pacs.start()
    yield pacs
    pacs.stop()


@pytest.fixture(scope="session")
def ris() -> Iterator[RisListener]:
    """The RIS the node sends HL7 to; it drops the first message unanswered, so retries are exercised."""
    listener = RisListener(drop_first=1)
    listener.start()
    yield listener
    listener.stop()


@pytest.fixture(scope="session")
def node(tmp_path_factory: pytest.TempPathFactory, orthanc: Orthanc, ris: RisListener) -> Iterator[Node]:
    running = Node(tmp_path_factory.mktemp("node"), orthanc, ris)
    running.start()
    yield running
    assert running.stop() == 0, "radrouter up did not stop cleanly on Ctrl-C"
    for port in (running.port, running.web_port, running.redis_port):
        assert not port_open(port), f"port {port} still open after Ctrl-C"


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgreSQL]:
    server = PostgreSQL()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    return tmp_path


@pytest.fixture(autouse=True)
def _config_file_of_the_test_only() -> Iterator[None]:
    """A command run in-process with ``--config`` names its file in RADROUTER_CONFIG for the processes it
    starts; the next test must not read that file as its own settings."""
    before = os.environ.get(CONFIG_ENV)
    yield
    if before is None:
        os.environ.pop(CONFIG_ENV, None)
    else:
        os.environ[CONFIG_ENV] = before
