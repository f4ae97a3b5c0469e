"""A full disk (a real one: a small tmpfs under the storage root): Out of Resources, nothing partial,
and the node takes instances again once there is space."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pydicom

from tests.faults.conftest import FILES, STUDY, FaultTally
from tests.faults.harness import NodeProcesses, sop_uid
from tests.services import Orthanc, storescu


def test_disk_full_answers_out_of_resources_and_recovers(
    tmp_path: Path, orthanc: Orthanc, tally: FaultTally
) -> None:
    disk = tmp_path / "disk"
    disk.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=12m", "tmpfs", str(disk)], check=True)
    try:
        node = NodeProcesses(
            tmp_path / "node",
            orthanc,
            storage={
                "root": str(disk),
                "index_url": f"sqlite:///{tmp_path / 'index.sqlite3'}",
                "free_space_reserve_mb": 0,
            },
            rules=[],
        )
        node.start("scp", "web")
        tally.fault("disk full")
        sent = storescu(node.port, FILES)
        tally.sent(FILES)
        stored = sent.stderr.count("(Success)")
        refused = sent.stderr.count("Refused: OutOfResources")
        # dcmtk's storescu stops at the first refusal, as a modality would, and sends again later.
        assert stored > 0 and refused == 1, sent.stderr[-2000:]
        on_disk = sorted((disk / "instances").rglob("*.dcm"))
        assert len(on_disk) == stored
        assert not list(disk.rglob(".incoming-*")), "a partial file was left behind"
        assert all(pydicom.dcmread(path).pixel_array.size for path in on_disk), "a stored file is cut short"
        tally.lost({path.stem for path in on_disk}, node.indexed_sop_uids(STUDY))

        subprocess.run(["mount", "-o", "remount,size=64m", str(disk)], check=True)
        again = storescu(node.port, FILES)
        assert again.stderr.count("(Success)") == len(FILES)
        tally.sent(FILES, new_study=False)
        tally.lost({sop_uid(path) for path in FILES}, node.indexed_sop_uids(STUDY))
    finally:
        node.stop()
        subprocess.run(["umount", "-l", str(disk)], check=False)
