"""A 1 GiB C-STORE to ``radrouter scp`` running in a memory cgroup smaller than the instance: the data
set streams to disk as it arrives and is linked into the store, so it is stored whole and no receiver's
resident memory comes near its size (before, a receiver held it two or three times over)."""

from __future__ import annotations

import os
import signal
import struct
import subprocess
from pathlib import Path

import pydicom

from radrouter.config.settings import Settings
from radrouter.node.supervisor import node_commands
from radrouter.router.receive.spool import data_set_offset
from tests.faults.cgroup import MemoryCgroup
from tests.router.receive.test_scp import RunningSCP
from tests.services import CT_HEAD, free_port, storescu, wait_until

#: Below the instance's size: a receiver that held it in memory would be killed.
LIMIT = 768 * 2**20
FRAMES = 2048  # of a real 512 x 512 CT slice: 1 GiB of pixel data
#: A receiver's own needs (Python, pynetdicom, pydicom, SQLAlchemy) are about 100 MB.
RESIDENT_BUDGET = 256 * 2**20


def multi_frame(path: Path, frames: int = FRAMES, sop_uid: str = "", **attributes: str) -> str:
    """A real CT slice whose pixel data is repeated (2048 times: a multi-frame of 1 GiB), written
    piece by piece so this process does not hold it either; its SOP Instance UID."""
    dataset = pydicom.dcmread(CT_HEAD / "I10")
    frame = dataset.PixelData
    del dataset.PixelData
    dataset.NumberOfFrames = frames
    dataset.SOPInstanceUID = sop_uid or pydicom.uid.generate_uid()
    dataset.file_meta.MediaStorageSOPInstanceUID = dataset.SOPInstanceUID
    for keyword, value in attributes.items():
        setattr(dataset, keyword, value)
    path.parent.mkdir(parents=True, exist_ok=True)
    dataset.save_as(path, enforce_file_format=True)
    with path.open("ab") as handle:
        handle.write(struct.pack("<HH2s2xI", 0x7FE0, 0x0010, b"OW", len(frame) * frames))
        for _ in range(frames):
            handle.write(frame)
    return str(dataset.SOPInstanceUID)


def _head(path: Path) -> bytes:
    with path.open("rb") as handle:
        return handle.read(4096)


def _resident_peak(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def test_a_one_gib_instance_is_stored_within_a_smaller_memory_limit(tmp_path: Path) -> None:
    sent = tmp_path / "large.dcm"
    sop_uid = multi_frame(sent)
    port = free_port()
    config = tmp_path / "radrouter.yaml"
    # Free ports; a 64 MB free-space reserve (as the session's node, for a CI disk).
    config.write_text(
        f"node: {{port: {port}, metrics_port: 0}}\n"
        f"storage: {{root: {tmp_path / 'data'}, free_space_reserve_mb: 64}}\n"
    )
    cgroup = MemoryCgroup(LIMIT)
    log = tmp_path / "scp.log"
    scp = subprocess.Popen(
        cgroup.wrap(node_commands(Settings())["scp"].command),
        env={**os.environ, "RADROUTER_CONFIG": str(config)},
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        wait_until(lambda: log.read_text().count("listening on") >= 2, 60, "two receivers listening")
        answer = storescu(port, [sent])
        assert "Received Store Response (Success)" in answer.stderr, answer.stderr + log.read_text()[-2000:]
        peaks = [_resident_peak(int(pid)) for pid in (cgroup.path / "cgroup.procs").read_text().split()]
        assert cgroup.oom_kills() == 0
        assert 0 < max(peaks) < RESIDENT_BUDGET, peaks
        [stored] = (tmp_path / "data" / "instances").rglob(f"{sop_uid}.dcm")
        # The data set as sent, byte for byte in length and tail (the File Meta group is the node's).
        dataset_bytes = [path.stat().st_size - data_set_offset(_head(path)) for path in (stored, sent)]
        assert dataset_bytes[0] == dataset_bytes[1] > FRAMES * 512 * 512 * 2
        with stored.open("rb") as handle, sent.open("rb") as sent_file:
            sent_file.seek(-4096, os.SEEK_END)
            handle.seek(-4096, os.SEEK_END)
            assert handle.read() == sent_file.read()
        assert not any((tmp_path / "data" / ".receiving").rglob("*.dcm"))  # the spool is emptied
    finally:
        os.killpg(scp.pid, signal.SIGTERM)
        scp.wait(timeout=30)
        cgroup.remove()


def test_an_instance_above_the_configured_maximum_is_refused_and_nothing_stored(tmp_path: Path) -> None:
    """With storage.max_instance_mb 1 (the default is 8192), a 2 MB instance: Out of Resources."""
    sent = tmp_path / "two-mb.dcm"
    multi_frame(sent, frames=4)
    with RunningSCP(tmp_path / "data", storage={"max_instance_mb": 1}) as scp:
        answer = storescu(scp.settings.node.port, [sent])
        assert "Received Store Response (Refused: OutOfResources)" in answer.stderr, answer.stderr
        assert scp.instances() == 0
    assert not (tmp_path / "data" / "instances").exists()


def test_what_must_be_decoded_whole_waits_for_the_memory_budget(tmp_path: Path) -> None:
    """A deflated 2 MB instance is inflated whole to read its header: with node.memory_budget_mb 1
    (the default is 2048) it is answered Out of Resources, try later; the same budget held by nothing
    else admits a 0.5 MB one, and a budget held elsewhere refuses that too."""
    large, small = tmp_path / "two-mb.dcm", tmp_path / "half-mb.dcm"
    multi_frame(large, frames=4)
    multi_frame(small, frames=1)
    deflate = ("--propose-deflated", "--required")
    with RunningSCP(tmp_path / "data", memory_budget_mb=1) as scp:
        port = scp.settings.node.port
        refused = storescu(port, [large], options=deflate)
        assert "Received Store Response (Refused: OutOfResources)" in refused.stderr, refused.stderr
        assert "Received Store Response (Success)" in storescu(port, [small], options=deflate).stderr
        with scp.scp.budget.holding(900 * 1024):  # another reception holds most of it
            busy = storescu(port, [small], options=deflate)
        assert "Received Store Response (Refused: OutOfResources)" in busy.stderr, busy.stderr
        assert scp.instances() == 1
        assert scp.scp.budget.held() == 0
