"""Redis killed with a job queued, Redis down when a study completes, and late instances after results."""

from __future__ import annotations

from io import BytesIO

import pydicom
from sqlalchemy import select

from radrouter.storage.index import Job
from tests.faults.conftest import FILES, STUDY, FaultTally
from tests.faults.harness import PIPELINE_WORKER, NodeProcesses
from tests.services import Orthanc, storescu, wait_until


def _jobs(node: NodeProcesses) -> list[Job]:
    with node.index.session() as session:
        return list(session.scalars(select(Job).where(Job.study_uid == STUDY).order_by(Job.id)).all())


def test_redis_restarts_and_late_instances(node: NodeProcesses, orthanc: Orthanc, tally: FaultTally) -> None:
    # A job waits in Redis (no worker serves its queue) when Redis is killed: the append-only file keeps it.
    node.kill(PIPELINE_WORKER)
    assert storescu(node.port, FILES).returncode == 0
    tally.sent(FILES)
    wait_until(lambda: [j.dispatched_at is not None for j in _jobs(node)] == [True], 60, "job dispatched")
    node.kill_redis()
    tally.fault("kill -9 of Redis with a job queued")
    node.redis.start()
    node.start(PIPELINE_WORKER)
    node.wait_for_state(STUDY, "DONE")
    tally.results_in_pacs(orthanc, STUDY, 1)

    # Redis is down when a late instance reopens the study: the job is recorded but the broker never
    # gets it; the reconciler queues it once Redis is back.
    node.kill_redis()
    tally.fault("Redis down while a late instance reopens a processed study")
    late = storescu(node.port, FILES[:1])
    assert late.returncode == 0 and "(Success)" in late.stderr
    tally.sent(FILES[:1], new_study=False)
    wait_until(lambda: len(_jobs(node)) == 2, 60, "the reopened study routed")
    assert _jobs(node)[1].dispatched_at is None
    node.redis.start()
    study = node.wait_for_state(STUDY, "DONE")
    assert study["revision"] == 1 and [j["revision"] for j in study["jobs"]] == [0, 1]
    assert any(e["hop"] == "recovered" and "redispatched_job" in e["detail"] for e in study["events"])
    tally.results_in_pacs(orthanc, STUDY, 2)  # one SEG and one SR per revision

    reports = [
        pydicom.dcmread(BytesIO(data))
        for series in orthanc.find_series(STUDY, "SR")
        for data in orthanc.instance_files(series)
    ]
    old, new = sorted(reports, key=lambda sr: "PredecessorDocumentsSequence" in sr)
    predecessor = new.PredecessorDocumentsSequence[0].ReferencedSeriesSequence[0]
    assert predecessor.ReferencedSOPSequence[0].ReferencedSOPInstanceUID == old.SOPInstanceUID
    assert new.SOPInstanceUID != old.SOPInstanceUID
