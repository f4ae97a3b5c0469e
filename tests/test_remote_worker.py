"""Scale-out story: a worker on "another machine" (its own network namespace and empty storage root)
serves the brain-extraction queue of a node that keeps its index in PostgreSQL. It reaches Redis,
PostgreSQL and the node's DICOMweb only over a private link, fetches the series by WADO-RS, returns
SEG and SR by STOW-RS, and the node delivers them to the PACS.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pydicom
import pytest
from prometheus_client.parser import text_string_to_metric_families

from radrouter.config.settings import Settings
from radrouter.node.supervisor import node_commands
from radrouter.router.dispatch.contract import queue_for
from tests.access import bearer
from tests.remote import NetworkNamespace
from tests.services import MPRAGE, Orthanc, PostgreSQL, free_port, storescu, wait_until

PIPELINE = "brain-extraction"
REMOTE_WORKER = "remote@other-machine"
#: The one service token of web.api_token, set on node and worker alike: the way remote workers have
#: always reached the node's DICOMweb (tokens made by `radrouter tokens add` work the same way).
API_TOKEN = "remote-worker-shared-token"


class Processes:
    """Started processes that stop together (SIGTERM to each session, then wait)."""

    def __init__(self) -> None:
        self.running: list[subprocess.Popen[bytes]] = []

    def add(self, process: subprocess.Popen[bytes]) -> subprocess.Popen[bytes]:
        self.running.append(process)
        return process

    def stop(self) -> None:
        for process in self.running:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.running:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


@pytest.fixture(scope="module")
def link() -> Iterator[NetworkNamespace]:
    namespace = NetworkNamespace()
    namespace.create()
    yield namespace
    namespace.delete()


@pytest.fixture(scope="module")
def scaled_out(
    link: NetworkNamespace, orthanc: Orthanc, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Any]]:
    """Node (SCP, web, delivery worker) on the host, PostgreSQL and Redis on the link, a worker beyond it."""
    workdir = tmp_path_factory.mktemp("scale-out")
    postgres = PostgreSQL(listen=("127.0.0.1", link.host_address), trusted_network=link.network)
    postgres.start()
    processes = Processes()
    try:
        database = postgres.create_database()
        redis_port, web_port, scp_port, scp_metrics_port = free_port(), free_port(), free_port(), free_port()
        processes.add(
            subprocess.Popen(
                ["redis-server", "--port", str(redis_port), "--bind", f"127.0.0.1 {link.host_address}",
                 "--save", "", "--appendonly", "no", "--dir", str(workdir), "--protected-mode", "no"],
                stdout=(workdir / "redis.log").open("wb"), stderr=subprocess.STDOUT, start_new_session=True,
            )
        )  # fmt: skip
        node_config = workdir / "node.yaml"
        node_config.write_text(
            f"""
node: {{port: {scp_port}, metrics_port: {scp_metrics_port}}}
web: {{host: {link.host_address}, port: {web_port}, api_token: {API_TOKEN}}}
storage: {{root: {workdir / "node"}, index_url: '{database}', free_space_reserve_mb: 64}}
broker: {{url: 'redis://127.0.0.1:{redis_port}/0'}}
logging: {{format: json}}
destinations:
  pacs: {{host: 127.0.0.1, port: {orthanc.dicom_port}, ae_title: {orthanc.ae_title}}}
"""
        )
        remote_root = workdir / "remote"
        remote_config = workdir / "remote.yaml"
        remote_config.write_text(
            f"""
storage: {{root: {remote_root}, index_url: '{database.replace("127.0.0.1", link.host_address)}'}}
broker: {{url: 'redis://{link.host_address}:{redis_port}/0'}}
web: {{api_token: {API_TOKEN}}}
worker: {{series_access: dicomweb, node_url: 'http://{link.host_address}:{web_port}/dicomweb'}}
logging: {{format: json}}
"""
        )
        env = {**os.environ, "RADROUTER_CONFIG": str(node_config)}
        radrouter = [sys.executable, "-m", "radrouter.cli"]
        subprocess.run([*radrouter, "db", "upgrade"], env=env, check=True, capture_output=True, timeout=120)
        logs: dict[str, Path] = {}
        for name, process in node_commands(Settings()).items():
            if name in ("scp", "web", "worker-delivery"):  # no pipeline worker on the node itself
                logs[name] = workdir / f"{name}.log"
                processes.add(
                    subprocess.Popen(
                        process.command, env={**env, **process.env}, stdout=logs[name].open("wb"),
                        stderr=subprocess.STDOUT,
                        start_new_session=True,
                    )
                )  # fmt: skip
        logs["remote"] = workdir / "remote-worker.log"
        processes.add(
            link.popen(
                [*radrouter, "worker", "--queues", queue_for(Settings(), PIPELINE), "--name", REMOTE_WORKER],
                logs["remote"],
                {**os.environ, "RADROUTER_CONFIG": str(remote_config)},
            )
        )

        def ready() -> bool:
            for process in processes.running:
                if process.poll() is not None:
                    tails = {name: path.read_text()[-2000:] for name, path in logs.items()}
                    raise RuntimeError(f"a process ended: {tails}")
            text = {name: path.read_text() for name, path in logs.items()}
            return (
                "listening on" in text["scp"]
                and " ready." in text["worker-delivery"]
                and " ready." in text["remote"]
                and "Uvicorn running" in text["web"]
            )

        wait_until(ready, 240, "node and remote worker")
        yield {
            "scp_port": scp_port,
            "api": f"http://{link.host_address}:{web_port}/api",
            "redis_port": redis_port,
            "postgres_port": postgres.port,
            "web_port": web_port,
            "scp_metrics": f"http://127.0.0.1:{scp_metrics_port}/metrics",
            "web_metrics": f"http://{link.host_address}:{web_port}/metrics",
            "remote_root": remote_root,
            "node_root": workdir / "node",
            "logs": logs,
        }
    finally:
        processes.stop()
        postgres.stop()


def test_the_other_machine_reaches_the_node_only_over_the_link(
    link: NetworkNamespace, scaled_out: dict[str, Any]
) -> None:
    for port in (scaled_out["redis_port"], scaled_out["postgres_port"]):
        assert link.can_connect(link.host_address, port)
        assert not link.can_connect("127.0.0.1", port)


@pytest.fixture(scope="module")
def computed(scaled_out: dict[str, Any]) -> dict[str, Any]:
    """Send the MPRAGE to the node and wait until its study has settled."""
    files = sorted(MPRAGE.glob("*.dcm"))
    first = pydicom.dcmread(files[0], stop_before_pixels=True)
    study_uid = str(first.StudyInstanceUID)
    assert not scaled_out["remote_root"].exists() or not any(scaled_out["remote_root"].rglob("*.dcm"))
    sent = storescu(scaled_out["scp_port"], files)
    assert sent.returncode == 0, sent.stderr

    def settled() -> dict[str, Any] | None:
        current = dict(
            httpx.get(
                f"{scaled_out['api']}/studies/{study_uid}", headers=bearer(API_TOKEN), timeout=10
            ).json()
        )
        return current if current.get("state") in ("DONE", "FAILED") else None

    study = wait_until(settled, 400, "the study to settle", interval_s=0.5)
    return {
        "files": files,
        "study_uid": study_uid,
        "series_uid": str(first.SeriesInstanceUID),
        "study": study,
    }


def test_a_study_is_computed_on_the_other_machine_and_delivered_by_the_node(
    scaled_out: dict[str, Any], computed: dict[str, Any], orthanc: Orthanc
) -> None:
    files, study_uid, series_uid, finished = (
        computed["files"], computed["study_uid"], computed["series_uid"], computed["study"]
    )  # fmt: skip
    assert finished["state"] == "DONE", finished
    started = [e for e in finished["events"] if e["hop"] == "inference_started"]
    assert [e["detail"]["worker"] for e in started] == [REMOTE_WORKER]

    # The series travelled by WADO-RS into the remote worker's own storage root (its cache) ...
    cached = sorted((scaled_out["remote_root"] / "instances" / study_uid / series_uid).glob("*.dcm"))
    assert len(cached) == len(files)
    assert {p.stem for p in cached} == {
        str(pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID) for f in files
    }
    # ... and the results came back by STOW-RS to the node, which delivered them from its own storage.
    for result in finished["results"]:
        on_node = scaled_out["node_root"] / "results" / study_uid / f"{result['sop_uid']}.dcm"
        on_remote = scaled_out["remote_root"] / "results" / study_uid / f"{result['sop_uid']}.dcm"
        assert on_node.read_bytes() == on_remote.read_bytes()
    assert {d["state"] for d in finished["deliveries"]} == {"DELIVERED"}
    assert orthanc.find_series(study_uid, "SEG") and orthanc.find_series(study_uid, "SR")


def _samples(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = httpx.get(url, timeout=10).text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_metrics_count_what_the_node_did(scaled_out: dict[str, Any], computed: dict[str, Any]) -> None:
    files = computed["files"]
    scp = _samples(scaled_out["scp_metrics"])
    assert scp[("radrouter_instances_received_total", (("status", "0x0000"),))] == len(files)
    stored = (scaled_out["node_root"] / "instances").rglob("*.dcm")
    assert scp[("radrouter_received_bytes_total", ())] == sum(path.stat().st_size for path in stored)
    assert scp[("radrouter_associations_total", (("outcome", "accepted"),))] >= 1
    web = _samples(scaled_out["web_metrics"])
    assert web[("radrouter_studies", (("state", "DONE"),))] == 1
    assert web[("radrouter_deliveries", (("state", "DELIVERED"),))] == len(computed["study"]["deliveries"])
    assert web[("radrouter_inference_seconds_count", (("pipeline", PIPELINE),))] == 1
    assert web[("radrouter_inference_seconds_bucket", (("le", "+Inf"), ("pipeline", PIPELINE)))] == 1
    assert web[("radrouter_queue_depth", (("queue", "delivery"),))] == 0
    assert web[("radrouter_queue_depth", (("queue", queue_for(Settings(), PIPELINE)),))] == 0


def test_logs_are_json_lines_with_the_study_uid_and_no_patient_data(
    scaled_out: dict[str, Any], computed: dict[str, Any]
) -> None:
    header = pydicom.dcmread(computed["files"][0], stop_before_pixels=True)
    patient = [str(header.get(k)) for k in ("PatientName", "PatientID", "PatientBirthDate") if header.get(k)]
    assert patient, "the test data should carry patient attributes to look for"
    about_the_study: dict[str, int] = {}
    for name, path in scaled_out["logs"].items():
        text = path.read_text()
        assert not any(value in text for value in patient), f"patient data in the {name} log"
        lines = [json.loads(line) for line in text.splitlines() if line.strip()]
        assert all({"time", "level", "name", "message", "study_uid"} <= line.keys() for line in lines), name
        about_the_study[name] = sum(line["study_uid"] == computed["study_uid"] for line in lines)
    # Each process that handled the study said so, with its UID: received/routed, inferred, delivered.
    assert about_the_study["scp"] and about_the_study["remote"] and about_the_study["worker-delivery"]
