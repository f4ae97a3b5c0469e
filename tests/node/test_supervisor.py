"""``radrouter up`` keeps its processes running: a killed worker comes back and its study still gets
its results; the rest of the node never stops; a child that keeps failing is reported crash-looping."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import httpx
import pydicom

from radrouter.config.settings import Settings
from radrouter.node.supervisor import BROKER, NodeProcess, NodeSupervisor, SupervisedProcess
from radrouter.storage.node_status import ProcessState, read_node_status
from tests.services import MPRAGE, Node, Orthanc, as_new_study, port_open, storescu, wait_until

PIPELINE_WORKER = "worker-brain-extraction"


def kill_and_wait_until_back(root: Path, *names: str, timeout_s: float = 60) -> None:
    """kill -9 each named process of the node, then wait until each runs again under a new PID."""
    status = read_node_status(root)
    assert status is not None
    killed = {name: status.processes[name].pid for name in names}
    for pid in killed.values():
        assert pid is not None
        os.kill(pid, signal.SIGKILL)

    def back() -> bool:
        now = read_node_status(root)
        return now is not None and all(
            now.processes[name].state == ProcessState.RUNNING and now.processes[name].pid != pid
            for name, pid in killed.items()
        )

    wait_until(back, timeout_s, f"{', '.join(names)} started again")


def send_new_study(node: Node, folder: Path) -> str:
    """The MPRAGE under new UIDs, sent with dcmtk's storescu (again, as a modality does, while the SCP
    is not yet accepting); its Study Instance UID."""
    files = as_new_study(sorted(MPRAGE.glob("*.dcm")), folder)
    wait_until(lambda: storescu(node.port, files).returncode == 0, 120, "the SCP storing the study", 1.0)
    return str(pydicom.dcmread(files[0], stop_before_pixels=True).StudyInstanceUID)


def wait_for_results(orthanc: Orthanc, study_uid: str, after: str) -> None:
    wait_until(
        lambda: orthanc.find_series(study_uid, "SEG") and orthanc.find_series(study_uid, "SR"),
        240,
        f"SEG and SR in Orthanc after {after}",
    )


def test_a_worker_killed_mid_inference_comes_back_and_the_study_gets_its_results(
    node: Node, orthanc: Orthanc, tmp_path: Path
) -> None:
    """With the shipped defaults (visibility timeout 3600 s): the restarted worker takes its job back."""
    root = node.workdir / "data"
    before = read_node_status(root)
    assert before is not None and before.summary() == "ok"
    study_uid = send_new_study(node, tmp_path)

    def running() -> bool:
        return [job["state"] for job in node.study(study_uid).get("jobs", [])] == ["RUNNING"]

    wait_until(running, 120, "the job RUNNING", 0.02)
    kill_and_wait_until_back(root, PIPELINE_WORKER, timeout_s=30)
    # The SCP and the web app never went down; the web app says what happened.
    assert node.http.get(f"{node.api}/health").json()["checks"]["index"] == "ok"
    wait_for_results(orthanc, study_uid, "the worker came back")
    study = node.study(study_uid)
    hops = [event["hop"] for event in study["events"]]
    assert hops.count("inference_started") == 2 and "recovered" in hops
    assert [job["state"] for job in study["jobs"]] == ["DONE"]
    status = read_node_status(root)
    assert status is not None and status.processes[PIPELINE_WORKER].restarts >= 1
    metrics = httpx.get(f"http://127.0.0.1:{node.web_port}/metrics").text
    assert f'radrouter_process_up{{process="{PIPELINE_WORKER}"}} 1.0' in metrics
    assert f'radrouter_process_restarts_total{{process="{PIPELINE_WORKER}"}}' in metrics


def test_a_child_that_keeps_failing_is_reported_crash_looping_and_the_others_run_on(tmp_path: Path) -> None:
    # Overridden: waits of 50 ms (not 1 s doubling to 60 s) so three failures play out in a second.
    settings = Settings(
        storage={"root": tmp_path},
        supervisor={"restart_backoff_initial_s": 0.05, "restart_backoff_max_s": 0.1, "crash_loop_after": 3},
    )
    supervisor = NodeSupervisor(settings, dict(os.environ), broker=None)
    supervisor.children = {
        "failing": SupervisedProcess("failing", NodeProcess([sys.executable, "-c", "raise SystemExit(3)"])),
        "steady": SupervisedProcess(
            "steady", NodeProcess([sys.executable, "-c", "import time; time.sleep(60)"])
        ),
    }
    supervisor.start_all()
    try:
        steady_pid = read_node_status(tmp_path).processes["steady"].pid  # type: ignore[union-attr]
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            supervisor.watch_once()
            status = read_node_status(tmp_path)
            assert status is not None
            if status.processes["failing"].state == ProcessState.CRASH_LOOPING:
                break
            time.sleep(0.02)
        failing = status.processes["failing"]
        assert failing.state == ProcessState.CRASH_LOOPING and failing.last_exit == 3
        assert failing.restarts >= 2
        assert status.processes["steady"].state == ProcessState.RUNNING
        assert status.processes["steady"].pid == steady_pid, "a healthy child was restarted"
        assert "failing crash-looping" in status.summary()
    finally:
        supervisor.stop_all()
    assert read_node_status(tmp_path) is None, "a stopped node leaves no status behind"


def test_the_embedded_redis_killed_is_started_again_and_studies_still_get_results(
    node: Node, orthanc: Orthanc, tmp_path: Path
) -> None:
    kill_and_wait_until_back(node.workdir / "data", BROKER, timeout_s=30)
    wait_for_results(orthanc, send_new_study(node, tmp_path), "redis came back")
    assert node.http.get(f"{node.api}/health").json()["checks"]["broker"] == "ok"


def test_the_scp_and_the_web_app_killed_come_back_and_the_next_study_gets_its_results(
    node: Node, orthanc: Orthanc, tmp_path: Path
) -> None:
    """kill -9 of the SCP's parent (its receivers die with it) and of the web app, with the defaults."""
    kill_and_wait_until_back(node.workdir / "data", "scp", "web")
    wait_until(lambda: port_open(node.web_port), 60, "the web app listening again")
    study_uid = send_new_study(node, tmp_path)
    wait_for_results(orthanc, study_uid, "the SCP came back")
    assert len(orthanc.find_series(study_uid, "SEG")) == 1 and len(orthanc.find_series(study_uid, "SR")) == 1
    health = node.http.get(f"{node.api}/health").json()
    assert health["status"] == "ok" and health["checks"]["processes"] == "ok"
