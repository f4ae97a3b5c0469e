"""A worker killed by the kernel's OOM killer mid-job: a real memory cgroup limit (not ``prlimit``, under
which an allocation fails with MemoryError instead of the kill that ends a worker at night).

The pipeline worker runs in a memory cgroup of :data:`LIMIT` bytes, its whole life, as under systemd's
``MemoryMax=``. The study goes to a pipeline brought by entry point (as an AI team ships one): deepbet's
brain extraction, which on its first attempt allocates twice the limit, the way a model does on an
unexpectedly large series; the kernel SIGKILLs the worker. The worker is started again in the same
cgroup (as ``radrouter up`` does), takes back the job its killed start left RUNNING, and this time the
pipeline stays within the limit: exactly one SEG and one SR reach the PACS, nothing is left in flight.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
from sqlalchemy import select

from radrouter.node.supervisor import NodeProcess
from radrouter.storage.index import Delivery, DeliveryState, Job, JobState
from tests.faults.cgroup import MemoryCgroup
from tests.faults.conftest import FILES, STUDY, FaultTally
from tests.faults.harness import PIPELINE_WORKER, NodeProcesses
from tests.services import Orthanc, storescu

GREEDY = "greedy-brain-extraction"
GREEDY_WORKER = f"worker-{GREEDY}"
#: Well above what the worker needs for the MPRAGE (measured: running deepbet on the CPU it peaks at
#: about 1.4 GiB, page cache included), so only the greedy first attempt goes over it.
LIMIT = 3 * 2**30
#: Where the pipeline notes it has made its greedy attempt, so the next attempt behaves.
MARKER_ENV = "RADROUTER_TEST_GREEDY_MARKER"

PIPELINE_MODULE = f'''
"""deepbet's brain extraction, greedy on its first attempt: it allocates twice the worker's memory limit."""

import os
from pathlib import Path

import numpy as np

from radrouter.inference.models.brain_extraction import BrainExtraction


class GreedyBrainExtraction(BrainExtraction):
    name = "{GREEDY}"
    version = "1.0-greedy"

    def predict(self, volume):
        marker = Path(os.environ["{MARKER_ENV}"])
        if not marker.exists():
            marker.touch()
            hog = np.ones({2 * LIMIT}, dtype=np.uint8)  # every page written: all of it resident
            print("greedy pipeline survived its allocation of", hog.nbytes, flush=True)
        return super().predict(volume)
'''


def _greedy_distribution(site: Path) -> None:
    """An installed distribution (a dist-info on PYTHONPATH) declaring the greedy pipeline."""
    site.mkdir()
    (site / "radrouter_greedy_pipeline.py").write_text(PIPELINE_MODULE)
    info = site / "radrouter_greedy_pipeline-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: radrouter-greedy-pipeline\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(
        f"[radrouter.pipelines]\n{GREEDY} = radrouter_greedy_pipeline:GreedyBrainExtraction\n"
    )


def test_a_worker_killed_by_the_oom_killer_comes_back_and_the_study_gets_one_seg_and_one_sr(
    tmp_path: Path, orthanc: Orthanc, tally: FaultTally, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = tmp_path / "site"
    _greedy_distribution(site)
    monkeypatch.syspath_prepend(str(site))  # this process plans the node's workers from its pipelines
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")])))
    marker = tmp_path / "greedy-attempt-made"
    monkeypatch.setenv(MARKER_ENV, str(marker))
    memory = MemoryCgroup(LIMIT)
    orthanc.delete_study(STUDY)
    node = NodeProcesses(
        tmp_path / "node",
        orthanc,
        # Overridden: the shipped brain rule, sending the MPRAGE to the greedy pipeline instead.
        rules=[
            {
                "name": "brain-t1-3d-greedy",
                "match": {"Modality": "MR", "MRAcquisitionType": "3D"},
                "pipelines": [GREEDY],
                "results_to": ["pacs"],
            }
        ],
    )
    # No rule sends anything to the built-in brain extraction here: its worker would only take memory.
    del node.commands[PIPELINE_WORKER]
    worker = node.commands[GREEDY_WORKER]
    node.commands[GREEDY_WORKER] = NodeProcess(memory.wrap(worker.command), worker.env)
    try:
        node.start()
        assert storescu(node.port, FILES).returncode == 0
        tally.sent(FILES)

        killed = node.processes.pop(GREEDY_WORKER)
        killed.wait(timeout=300)
        assert killed.returncode == -signal.SIGKILL, f"the worker ended with {killed.returncode}"
        assert memory.oom_kills() == 1, "the worker did not die by the OOM killer"
        assert marker.exists()
        assert [job["state"] for job in node.study(STUDY)["jobs"]] == ["RUNNING"]
        tally.fault("the pipeline worker killed by the kernel's OOM killer (memory cgroup limit)")

        node.start(GREEDY_WORKER)  # in the same cgroup, as the supervisor starts it again
        study = node.wait_for_state(STUDY, "DONE", timeout_s=300)
        assert memory.oom_kills() == 1
        hops = [event["hop"] for event in study["events"]]
        assert hops.count("inference_started") == 2, "the job was not run again"
        assert node.job_count(STUDY) == 1
        tally.results_in_pacs(orthanc, STUDY, 1)
        with node.index.session() as session:
            in_flight = session.scalars(
                select(Job.id).where(Job.state.in_([JobState.QUEUED, JobState.RUNNING]))
            ).all()
            undelivered = session.scalars(
                select(Delivery.id).where(Delivery.state != DeliveryState.DELIVERED)
            ).all()
        assert not in_flight and not undelivered
    finally:
        node.stop()
        memory.remove()
        # The greedy pipeline's results are not the built-in one's: later tests read this study's SR.
        orthanc.delete_study(STUDY)
