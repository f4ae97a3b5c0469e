"""Each receiver's spool folder: a dead receiver's is removed by the next of its node, and a node
never removes another's, since on a shared storage root a process number names a process only on
its own machine."""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from radrouter.router.receive.spool import spool_in


@pytest.fixture
def restore_tempdir() -> Iterator[None]:
    previous = tempfile.tempdir
    yield
    tempfile.tempdir = previous


def _dead_pid() -> int:
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


@pytest.mark.usefixtures("restore_tempdir")
def test_a_dead_receivers_folder_of_this_node_goes_and_another_nodes_stays(tmp_path: Path) -> None:
    dead = _dead_pid()
    own_dead = tmp_path / ".receiving" / "node-a" / str(dead)
    others = tmp_path / ".receiving" / "node-b" / str(dead)  # alive on node-b's machine, for all we know
    for folder in (own_dead, others):
        folder.mkdir(parents=True)
        (folder / "in-progress.dcm").write_bytes(b"\0" * 16)

    mine = spool_in(tmp_path, "node-a")

    assert mine == tmp_path / ".receiving" / "node-a" / str(os.getpid())
    assert tempfile.gettempdir() == str(mine)
    assert not own_dead.exists()
    assert (others / "in-progress.dcm").exists()
