"""kill -9 of the SCP mid-association and of a worker mid-inference: nothing lost, processed once."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from radrouter.node.supervisor import NodeProcess
from tests.faults.conftest import FILES, STUDY, FaultTally
from tests.faults.harness import PIPELINE_WORKER, NodeProcesses, sop_uid
from tests.services import STORESCU, Orthanc, storescu, wait_until


def _kill_the_scp_mid_study(node: NodeProcesses, folder: Path) -> list[Path]:
    """storescu the study; kill -9 the SCP once 10 instances are answered; the files answered Success."""
    log = folder / "storescu.log"
    with log.open("w") as stderr:
        sender = subprocess.Popen(
            [STORESCU, "-v", "-aec", "RADROUTER", "-aet", "MODALITY", "127.0.0.1", str(node.port), *FILES],
            stdout=stderr,
            stderr=stderr,
            env={**os.environ, "TCP_NODELAY": "1"},
        )
        wait_until(lambda: log.read_text().count("(Success)") >= 10, 120, "10 instances acknowledged", 0.01)
        node.kill("scp")
        sender.wait(timeout=60)
    acknowledged = FILES[: log.read_text().count("(Success)")]
    assert 10 <= len(acknowledged) < len(FILES), "the SCP died mid-association"
    return acknowledged


def test_scp_killed_mid_association(
    node: NodeProcesses, orthanc: Orthanc, tmp_path: Path, tally: FaultTally
) -> None:
    acknowledged_files = _kill_the_scp_mid_study(node, tmp_path)
    tally.fault("kill -9 of the SCP mid-association")

    node.start("scp")
    acknowledged = {sop_uid(path) for path in acknowledged_files}
    tally.lost(acknowledged, node.indexed_sop_uids(STUDY))
    assert not list((tmp_path / "data").rglob(".incoming-*")), "a partial file was left behind"

    retry = storescu(node.port, FILES)
    assert retry.returncode == 0 and retry.stderr.count("(Success)") == len(FILES)
    tally.sent(FILES)
    tally.sent(acknowledged_files, new_study=False)
    study = node.wait_for_state(STUDY, "DONE")
    assert study["series"][0]["instances"] == len(FILES)
    assert node.job_count(STUDY) == 1, "the study was processed more than once"
    tally.results_in_pacs(orthanc, STUDY, 1)


def test_worker_killed_mid_inference(node: NodeProcesses, orthanc: Orthanc, tally: FaultTally) -> None:
    assert storescu(node.port, FILES).returncode == 0
    tally.sent(FILES)
    wait_until(
        lambda: [j["state"] for j in node.study(STUDY)["jobs"]] == ["RUNNING"], 120, "job RUNNING", 0.02
    )
    node.kill(PIPELINE_WORKER)  # while it loads the series or runs the model
    tally.fault("kill -9 of the pipeline worker mid-inference")
    node.start(PIPELINE_WORKER)

    study = node.wait_for_state(STUDY, "DONE", timeout_s=300)
    hops = [event["hop"] for event in study["events"]]
    assert hops.count("inference_started") == 2, "the job was not delivered again"
    assert node.job_count(STUDY) == 1
    assert [d["state"] for d in study["deliveries"]] == ["DELIVERED", "DELIVERED"]
    tally.results_in_pacs(orthanc, STUDY, 1)


def test_a_worker_lost_for_good_has_its_job_taken_by_another(
    node: NodeProcesses, orthanc: Orthanc, tally: FaultTally
) -> None:
    """A worker killed and never restarted (its machine died): once its heartbeat has been missing for
    inference.worker_lost_after_s (30 s as shipped), the SCP's reconciler queues its job again and
    another worker of the same queue runs it; not after the 3600 s visibility timeout."""
    spare = node.commands[PIPELINE_WORKER]
    node.commands["worker-spare"] = NodeProcess([*spare.command, "--name", "spare@%h"], spare.env)
    assert storescu(node.port, FILES).returncode == 0
    tally.sent(FILES)
    wait_until(
        lambda: [j["state"] for j in node.study(STUDY)["jobs"]] == ["RUNNING"], 120, "job RUNNING", 0.02
    )
    node.kill(PIPELINE_WORKER)
    tally.fault("kill -9 of the pipeline worker, never restarted")
    node.start("worker-spare")

    study = node.wait_for_state(STUDY, "DONE", timeout_s=240)
    assert any(event["detail"].get("lost_worker") for event in study["events"] if event["hop"] == "recovered")
    assert node.job_count(STUDY) == 1
    tally.results_in_pacs(orthanc, STUDY, 1)


def test_a_study_whose_scp_was_killed_is_completed_by_the_next_one(
    node: NodeProcesses, tmp_path: Path, tally: FaultTally
) -> None:
    """The sender gives up after the SCP died mid-study: what was answered Success is still routed,
    once the dead SCP's heartbeat has expired (recovery.scp_lost_after_s, 30 s), not after the
    300 s receiving_timeout_s meant for a sender that went quiet."""
    acknowledged_files = _kill_the_scp_mid_study(node, tmp_path)
    tally.fault("kill -9 of the SCP mid-study, the sender gives up")
    node.start("scp")

    wait_until(lambda: node.study_state(STUDY) != "RECEIVING", 90, "the study completed by the new SCP", 0.5)
    study = node.study(STUDY)
    assert any(e["detail"].get("completed_late") for e in study["events"] if e["hop"] == "recovered")
    tally.lost({sop_uid(path) for path in acknowledged_files}, node.indexed_sop_uids(STUDY))
