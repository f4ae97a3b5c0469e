"""Real services for the tests: Orthanc as the PACS, and the radrouter node itself, on free ports."""

from __future__ import annotations

import asyncio
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
import pydicom
import yaml
from hl7.mllp import start_hl7_server
from pydicom.uid import generate_uid

from radrouter.config.access import Role
from radrouter.config.settings import Settings
from radrouter.node.supervisor import node_commands
from tests.access import add_token, add_user, bearer
from tests.user_models import user_pipelines_yaml

PROJECT = Path(__file__).resolve().parents[1]


def _shared_data() -> Path:
    """``../shared/data`` beside the checkout (or RADROUTER_TEST_DATA); a clone in /tmp still finds it."""
    candidates = [Path(os.environ["RADROUTER_TEST_DATA"])] if "RADROUTER_TEST_DATA" in os.environ else []
    candidates += [PROJECT.parent / "shared" / "data", Path("/work/shared/data")]
    return next((path for path in candidates if path.is_dir()), candidates[0])


DATA = _shared_data()
MPRAGE = DATA / "mr-t1-philips-mprage"
CT_HEAD = DATA / "ct-head-philips-phantom-5mm"
CT_CHEST = DATA / "ct-chest-lidc0001-partial"
STORESCU = "/usr/bin/storescu"
ECHOSCU = "/usr/bin/echoscu"
DCMSEND = "/usr/bin/dcmsend"


def _ephemeral_ports() -> range:
    """Where the kernel picks the local port of an outgoing connection (Linux's default if unreadable)."""
    try:
        low, high = map(int, Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    except (OSError, ValueError):
        low, high = 32768, 60999
    return range(low, high + 1)


_EPHEMERAL = _ephemeral_ports()
#: Below the ephemeral range, above every default port of radrouter, Orthanc, Redis and PostgreSQL.
_CANDIDATES = [port for port in range(15000, 32768) if port not in _EPHEMERAL] or list(range(15000, 65536))
#: Ports handed to a service in this run: never handed out again, even once that service has stopped.
_HANDED_OUT: set[int] = set()
_PICK = random.Random(os.getpid())


def free_port() -> int:
    """A port nothing holds now, for a service about to start on it.

    Picked below the ephemeral range: a port the kernel chose there (bind to 0) is taken back by the
    suite's own outgoing connections, thousands of them, before the service binds it, and the
    service then ends with "Address already in use"."""
    while True:
        port = _PICK.choice(_CANDIDATES)
        if port in _HANDED_OUT:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("", port))  # every IPv4 address: services bind 0.0.0.0 or a link's address
            except OSError:
                continue
        _HANDED_OUT.add(port)
        return port


def wait_until(predicate: Any, timeout_s: float, what: str, interval_s: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval_s)
    raise TimeoutError(f"timed out after {timeout_s} s waiting for {what}")


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


DICOMWEB_PLUGIN = "/usr/share/orthanc/plugins/libOrthancDicomWeb.so"


class Orthanc:
    """Debian's Orthanc with its own temporary configuration (and TCP_NODELAY=1, which its build needs)."""

    def __init__(self, workdir: Path, lua_scripts: Sequence[Path] = ()) -> None:
        self.workdir = workdir
        self.dicom_port = free_port()
        self.http_port = free_port()
        self.ae_title = "ORTHANC"
        #: Lua scripts Orthanc runs (its ``LuaScripts``): callbacks such as ``OnStoredInstance``.
        self.lua_scripts = list(lua_scripts)
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def start(self) -> None:
        storage = self.workdir / "storage"
        storage.mkdir(parents=True, exist_ok=True)
        config = {
            "Name": "radrouter-test-pacs",
            "StorageDirectory": str(storage),
            "IndexDirectory": str(storage),
            "DicomAet": self.ae_title,
            "DicomPort": self.dicom_port,
            "HttpPort": self.http_port,
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False,
            "DicomCheckCalledAet": False,
            # DICOMweb (Debian's orthanc-dicomweb) for the viewer test: OHIF reads the PACS through it.
            "Plugins": [DICOMWEB_PLUGIN],
            "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
            "LuaScripts": [str(script) for script in self.lua_scripts],
        }
        config_path = self.workdir / "orthanc.json"
        config_path.write_text(json.dumps(config))
        log = (self.workdir / "orthanc.log").open("wb")
        self._process = subprocess.Popen(
            ["Orthanc", str(config_path)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "TCP_NODELAY": "1"},
        )
        wait_until(lambda: port_open(self.http_port) and port_open(self.dicom_port), 30, "Orthanc")

    def stop(self) -> None:
        if self._process is not None:
            self._process.terminate()
            self._process.wait(timeout=30)

    def find_series(self, study_uid: str, modality: str) -> list[str]:
        query = {"Level": "Series", "Query": {"StudyInstanceUID": study_uid, "Modality": modality}}
        return list(httpx.post(f"{self.url}/tools/find", json=query).json())

    def count_instances(self, study_uid: str, modality: str) -> int:
        series = self.find_series(study_uid, modality)
        return sum(len(httpx.get(f"{self.url}/series/{s}/instances").json()) for s in series)

    def delete_study(self, study_uid: str) -> None:
        query = {"Level": "Study", "Query": {"StudyInstanceUID": study_uid}}
        for study_id in httpx.post(f"{self.url}/tools/find", json=query).json():
            httpx.delete(f"{self.url}/studies/{study_id}")

    def instance_files(self, series_id: str) -> list[bytes]:
        instances = httpx.get(f"{self.url}/series/{series_id}/instances").json()
        return [httpx.get(f"{self.url}/instances/{item['ID']}/file").content for item in instances]


class RisListener:
    """A test RIS: python-hl7's asyncio MLLP server that records each message and ACKs it.

    ``drop_first`` messages get no ACK (the connection closes), so senders must retry.
    """

    def __init__(self, ack_code: str = "AA", drop_first: int = 0) -> None:
        self.port = free_port()
        self.ack_code = ack_code
        self.drop_first = drop_first
        self.messages: list[str] = []
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="test-ris", daemon=True)
        self._server: asyncio.Server | None = None

    async def _handle(self, reader: Any, writer: Any) -> None:
        try:
            while not reader.at_eof():
                message = await reader.readmessage()
                self.messages.append(str(message))
                if len(self.messages) <= self.drop_first:
                    break
                writer.writemessage(message.create_ack(self.ack_code))
                await writer.drain()
        except asyncio.IncompleteReadError:
            pass
        finally:
            writer.close()

    def start(self) -> None:
        self._thread.start()
        opening = start_hl7_server(self._handle, "127.0.0.1", self.port, encoding="ascii")
        self._server = asyncio.run_coroutine_threadsafe(opening, self._loop).result(timeout=10)

    def stop(self) -> None:
        async def close_connections() -> None:
            if self._server is not None:
                self._server.close()
            handlers = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
            for task in handlers:
                task.cancel()
            await asyncio.gather(*handlers, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(close_connections(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    def of_type(self, message_type: str) -> list[str]:
        return [m for m in self.messages if m.split("\r", 1)[0].split("|")[8].startswith(message_type)]


#: The AE title of the tests' Storage Commitment requester (tests/router/receive/test_commitment.py).
COMMITMENT_REQUESTER = "COMMITTER"


class Node:
    """``radrouter up`` as a user runs it, with a config file naming free ports and the test PACS."""

    def __init__(
        self, workdir: Path, pacs: Orthanc, ris: RisListener | None = None, pipelines: str | None = None
    ) -> None:
        """``pipelines``: the YAML of pipelines, pools and rules (None: the test models; "": defaults)."""
        self.workdir = workdir
        self.port = free_port()
        self.web_port = free_port()
        self.redis_port = free_port()
        self.config_path = workdir / "radrouter.yaml"
        #: Where the test's Storage Commitment requester takes reports on a new association.
        self.commitment_port = free_port()
        # Overrides, each for a reason: free ports, so several nodes and a developer's own run coexist;
        # the test PACS as destination (and as `viewer`: the PACS of a reading station whose viewer shows
        # no SEG, which also gets key images; only the viewer test's rule sends there); a 64 MB free-space
        # reserve instead of 1024 MB, as a CI disk may have less than a GB free
        # (tests/faults/test_disk_full.py fills a real tmpfs to test the reserve); a Storage Commitment
        # requester's address (there is none by default); the test PACS again as a destination that must
        # commit what it is sent.
        self.config_path.write_text(
            f"""
node: {{ae_title: RADROUTER, port: {self.port}, metrics_port: {free_port()}}}
web: {{port: {self.web_port}}}
storage: {{root: {workdir / "data"}, free_space_reserve_mb: 64}}
broker: {{embedded_port: {self.redis_port}}}
commitment: {{requesters: {{{COMMITMENT_REQUESTER}: {{host: 127.0.0.1, port: {self.commitment_port}}}}}}}
destinations:
  pacs: {{host: 127.0.0.1, port: {pacs.dicom_port}, ae_title: {pacs.ae_title}}}
  viewer: {{host: 127.0.0.1, port: {pacs.dicom_port}, ae_title: {pacs.ae_title},
           results: [seg, sr, key_images]}}
  pacs-committed:
    {{host: 127.0.0.1, port: {pacs.dicom_port}, ae_title: {pacs.ae_title}, storage_commitment: true}}
"""
            + (
                user_pipelines_yaml(workdir / "models", viewer="viewer", committed="pacs-committed")
                if pipelines is None
                else pipelines
            )
        )
        if ris is not None:
            with self.config_path.open("a") as config:
                config.write(worklist_config(ris.port))
        self._process: subprocess.Popen[bytes] | None = None
        self._users: set[str] = set()

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.web_port}/api"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    def start(self) -> None:
        self.log_path = self.workdir / "node.log"
        self._process = subprocess.Popen(
            [sys.executable, "-m", "radrouter.cli", "up", "--config", str(self.config_path)],
            stdout=self.log_path.open("wb"),
            stderr=subprocess.STDOUT,
        )
        try:
            wait_until(self._ready, 120, "radrouter up")
        except (TimeoutError, RuntimeError) as failed:
            # A node that never got ready is stopped, so that its processes hold no port and no CPU
            # through the rest of the run; what it was doing instead goes to the CI log.
            self._stop_or_kill()
            if isinstance(failed, RuntimeError):
                raise
            raise TimeoutError(f"{failed}; its log ends: {self.log_path.read_text()[-3000:]}") from None
        # The tests' own admin token, made as an admin makes one; `http` carries it to the API.
        self.token = add_token(self.config_path, "tests", Role.ADMIN)
        self.http = httpx.Client(base_url=f"http://127.0.0.1:{self.web_port}", headers=bearer(self.token))

    def _ready(self) -> bool:
        assert self._process is not None
        if self._process.poll() is not None:
            raise RuntimeError(f"radrouter up exited: {self.log_path.read_text()[-3000:]}")
        if not port_open(self.web_port):
            return False
        log = self.log_path.read_text()
        settings = Settings(**yaml.safe_load(self.config_path.read_text()))
        workers = sum(name.startswith("worker-") for name in node_commands(settings))
        # Each Celery worker says "<name> ready."; the SCP is not probed with bare TCP connections,
        # which it would count as associations until they time out.
        return "listening on" in log and log.count(" ready.") >= workers

    def stop(self) -> int:
        assert self._process is not None
        self._process.send_signal(signal.SIGINT)
        return self._process.wait(timeout=60)

    def _stop_or_kill(self) -> None:
        assert self._process is not None
        try:
            self.stop()
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()

    def user(self, role: Role) -> str:
        """A local account of ``role`` (made once per node, password ``tests.access.PASSWORD``)."""
        name = f"{role.value}-tests"
        if name not in self._users:
            add_user(self.config_path, name, role)
            self._users.add(name)
        return name

    def study(self, study_uid: str) -> dict[str, Any]:
        return dict(self.http.get(f"{self.api}/studies/{study_uid}").json())


#: The session node's triage rule: a real measurement of brain extraction makes the study STAT.
BRAIN_VOLUME_RULE = "large-brain"
#: And a finding the test TorchScript model reports (Bone present) makes a study URGENT.
BONE_FINDING_RULE = "bone-finding"
BONE_FINDING_REASON = "Bone present (test model finding)"


def worklist_config(ris_port: int) -> str:
    return f"""
worklist:
  triage_rules:
    - name: {BRAIN_VOLUME_RULE}
      pipeline: brain-extraction
      measurement: {{name: Brain volume, above: 500}}
      priority: stat
      reason: Brain volume above 500 mL (test rule)
    - name: {BONE_FINDING_RULE}
      pipeline: threshold-ts
      finding: {{code: "SCT:272673000", min_probability: 0.5}}
      priority: urgent
      reason: {BONE_FINDING_REASON}
  hl7: {{host: 127.0.0.1, port: {ris_port}, backoff_initial_s: 0.5, timeout_s: 5}}
"""


def storescu_command(
    port: int,
    files: list[Path],
    ae_title: str = "RADROUTER",
    calling_ae: str = "MODALITY",
    options: tuple[str, ...] = (),
) -> list[str]:
    return [
        STORESCU,
        *options,
        "-aec",
        ae_title,
        "-aet",
        calling_ae,
        "127.0.0.1",
        str(port),
        *map(str, files),
    ]


def storescu(
    port: int,
    files: list[Path],
    ae_title: str = "RADROUTER",
    calling_ae: str = "MODALITY",
    options: tuple[str, ...] = (),
) -> subprocess.CompletedProcess[str]:
    """dcmtk's storescu (not pynetdicom's, which the venv puts first on PATH), as a modality sends."""
    return subprocess.run(
        storescu_command(port, files, ae_title, calling_ae, ("-v", *options)),
        capture_output=True,
        text=True,
        env={**os.environ, "TCP_NODELAY": "1"},
        check=False,
    )


def as_new_study(sources: list[Path], folder: Path, **attributes: Any) -> list[Path]:
    """Real pixels under new study, series and instance UIDs (plus ``attributes``), written to ``folder``:
    a study no PACS or node in the session has seen."""
    study_uid, series_uid = generate_uid(), generate_uid()
    copies = []
    for source in sources:
        dataset = pydicom.dcmread(source)
        dataset.StudyInstanceUID, dataset.SeriesInstanceUID = study_uid, series_uid
        dataset.SOPInstanceUID = dataset.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        for keyword, value in attributes.items():
            setattr(dataset, keyword, value)
        copies.append(folder / source.name)
        dataset.save_as(copies[-1])
    return copies


class PostgreSQL:
    """Debian's PostgreSQL server as a private cluster in a temporary folder, run as the postgres user."""

    def __init__(self, listen: tuple[str, ...] = ("127.0.0.1",), trusted_network: str = "") -> None:
        self.listen = listen
        self.trusted_network = trusted_network
        self.port = free_port()
        bin_dirs = sorted(Path("/usr/lib/postgresql").glob("*/bin"))
        if not bin_dirs:
            raise RuntimeError("PostgreSQL server missing: run the tests through `make test`")
        self.bin = bin_dirs[-1]
        # Not under pytest's 0700 temp root: the postgres user must reach its data folder.
        self.folder = Path(tempfile.mkdtemp(prefix="radrouter-pg-"))
        self.data = self.folder / "data"
        shutil.chown(self.folder, "postgres", "postgres")
        self._databases = 0

    def _as_postgres(self, *command: str) -> None:
        subprocess.run(
            ["runuser", "-u", "postgres", "--", *command], check=True, capture_output=True, timeout=120
        )

    def start(self) -> None:
        self._as_postgres(
            str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres", "-A", "trust", "--no-sync"
        )
        if self.trusted_network:  # clients on a test link, trusted like loopback
            with (self.data / "pg_hba.conf").open("a") as hba:
                hba.write(f"host all all {self.trusted_network} trust\n")
        options = f"-p {self.port} -k {self.folder} -c listen_addresses={','.join(self.listen)} -c fsync=off"
        self._as_postgres(
            str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.folder / "log"), "-w",
            "-o", options, "start",
        )  # fmt: skip

    def create_database(self, host: str = "127.0.0.1") -> str:
        """A new empty database; its SQLAlchemy URL (psycopg 3)."""
        self._databases += 1
        name = f"radrouter{self._databases}"
        self._as_postgres(str(self.bin / "createdb"), "-h", str(self.folder), "-p", str(self.port), name)
        return f"postgresql+psycopg://postgres@{host}:{self.port}/{name}"

    def stop(self) -> None:
        self._as_postgres(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")
        shutil.rmtree(self.folder, ignore_errors=True)
