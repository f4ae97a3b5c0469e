"""Received data sets go to disk as they arrive, never whole into memory.

pynetdicom writes each C-STORE's data set, fragment by fragment, to a Part 10 file
(``_config.STORE_RECV_CHUNKED_DATASET``, its documented switch) in ``tempfile``'s folder; a receiver
process points that folder at ``<root>/.receiving/<node>/<pid>``, on the store's own file system, so
that the finished file is linked into place rather than copied, and a large instance never lands on a
RAM-backed ``/tmp``. A receiver that was killed leaves its folder; the next one of the same node to
start removes it. A cluster's nodes share the root, and a process number means something only on its
own machine: a node never touches another node's folders.
"""

from __future__ import annotations

import mmap
import os
import shutil
import struct
import tempfile
from pathlib import Path

from pynetdicom import _config

#: Preamble, ``DICM``, then (0002,0000) UL: the File Meta group's length.
_META_LENGTH = struct.Struct("<HH2sHI")
_META_START = 132


def receive_to_files() -> None:
    """C-STORE data sets are written to files as they arrive (the SCP's handler reads them there)."""
    _config.STORE_RECV_CHUNKED_DATASET = True


def spool_in(root: Path, node: str) -> Path:
    """Make this process's spool folder under the storage root the one ``tempfile`` uses, and remove
    the folders of ``node``'s receivers no longer alive."""
    spools = root / ".receiving" / node
    spools.mkdir(parents=True, exist_ok=True)
    for folder in spools.iterdir():
        if folder.name.isdigit() and not _alive(int(folder.name)):
            shutil.rmtree(folder, ignore_errors=True)
    mine = spools / str(os.getpid())
    mine.mkdir(exist_ok=True)
    tempfile.tempdir = str(mine)
    return mine


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def data_set_offset(view: mmap.mmap | bytes) -> int:
    """Where the data set starts in a Part 10 file: after the preamble and the File Meta group."""
    group, element, vr, _, length = _META_LENGTH.unpack_from(view, _META_START)
    if view[128:132] != b"DICM" or (group, element, vr) != (0x0002, 0x0000, b"UL"):
        raise ValueError("not a Part 10 file with a File Meta group length")
    return int(_META_START + _META_LENGTH.size + length)
