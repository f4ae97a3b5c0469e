"""The index cannot be written for a while, mid-study: the SCP answers a failure for what it cannot
record, and the node carries on by itself once it can write again.

Why a lock and not a read-only disk: the kernel refuses to remount read-only a file system on which a
file is open for writing (``mount -o remount,ro`` and a read-only bind remount both fail with EBUSY while
SQLite holds the index open), and a read-only remount the kernel forces after a disk error
(``errors=remount-ro``) aborts the journal and cannot be undone without unmounting; this kernel has no
device-mapper either. So another process (a backup tool, an administrator's ``sqlite3`` shell) holds the
index's write lock for longer than the node's SQLite busy timeout (30 s): every write of the node fails
with ``OperationalError`` then, as it would on a read-only or failing disk, and works again afterwards.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from sqlalchemy import select

from radrouter.storage.index import Delivery, DeliveryState, Job, JobState
from tests.faults.conftest import FILES, STUDY, FaultTally
from tests.faults.harness import PIPELINE_WORKER, NodeProcesses, sop_uid, study_uid_of
from tests.services import Orthanc, as_new_study, storescu, wait_until

#: The node's SQLite busy timeout (radrouter.storage.index): a write waits this long for the lock.
BUSY_TIMEOUT_S = 30


def test_the_index_unwritable_for_a_while_fails_c_stores_and_the_study_in_flight_still_gets_its_results(
    node: NodeProcesses, orthanc: Orthanc, tmp_path: Path, tally: FaultTally
) -> None:
    assert storescu(node.port, FILES).returncode == 0
    tally.sent(FILES)
    wait_until(
        lambda: [j["state"] for j in node.study(STUDY)["jobs"]] == ["RUNNING"], 120, "job RUNNING", 0.02
    )
    worker_log = node.log(PIPELINE_WORKER)
    logged_before = worker_log.read_text().count("database is locked")
    other = as_new_study(FILES[:1], tmp_path)

    index = sqlite3.connect(node.workdir / "data" / "index.sqlite3", isolation_level=None)
    index.execute("BEGIN IMMEDIATE")  # the write lock: readers go on, every writer waits, then fails
    tally.fault(f"the index unwritable for over {BUSY_TIMEOUT_S} s (its write lock held)")
    locked_at = time.monotonic()
    try:
        refused = storescu(node.port, other)
        assert "(Success)" not in refused.stderr, "Success answered for an instance not recorded"
        assert "Status: 0x110" in refused.stderr, refused.stderr[-1500:]  # Processing Failure
        # The job's result, computed meanwhile, could not be recorded either.
        wait_until(
            lambda: worker_log.read_text().count("database is locked") > logged_before,
            120,
            "the worker failing to write the index",
            0.5,
        )
    finally:
        index.rollback()
        index.close()
    print(f"index unwritable for {time.monotonic() - locked_at:.0f} s")

    node.wait_for_state(STUDY, "DONE", timeout_s=120)
    assert node.job_count(STUDY) == 1
    tally.results_in_pacs(orthanc, STUDY, 1)
    assert sop_uid(other[0]) not in node.indexed_sop_uids(study_uid_of(other[0]))
    again = storescu(node.port, other)
    assert again.returncode == 0 and "(Success)" in again.stderr
    with node.index.session() as session:
        stuck = session.scalars(select(Job.id).where(Job.state == JobState.RUNNING)).all()
        undelivered = session.scalars(
            select(Delivery.id).where(Delivery.state != DeliveryState.DELIVERED)
        ).all()
    assert not stuck and not undelivered
