"""Store versus index after a crash: a file written but never indexed is indexed; a partial one goes."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pydicom
from sqlalchemy import select

from radrouter.storage.consistency import reconcile_store
from radrouter.storage.index import AuditEvent, Hop, Index, Instance
from radrouter.storage.store import InstanceStore
from tests.services import CT_HEAD


def _orphan(tmp_path: Path) -> tuple[InstanceStore, Index, Path, str]:
    """A store and index, and a CT slice written into the store as if the SCP died before indexing it."""
    store = InstanceStore(tmp_path / "data", fsync=False)
    index = Index(f"sqlite:///{tmp_path / 'index.sqlite3'}")
    header = pydicom.dcmread(CT_HEAD / "I10", stop_before_pixels=True)
    path = store.instance_path(header.StudyInstanceUID, header.SeriesInstanceUID, header.SOPInstanceUID)
    path.parent.mkdir(parents=True)
    shutil.copyfile(CT_HEAD / "I10", path)
    return store, index, path, str(header.SOPInstanceUID)


def test_an_orphan_file_is_indexed_and_a_partial_write_removed(tmp_path: Path) -> None:
    store, index, path, sop_uid = _orphan(tmp_path)
    partial = path.parent / ".incoming-abc.part"
    partial.write_bytes(b"DICM half")
    old = time.time() - 60
    for leftover in (path, partial):
        os.utime(leftover, (old, old))

    first = reconcile_store(store, index)
    assert (first.indexed, first.partial_removed, first.missing_files) == (1, 1, 0)
    assert not partial.exists()
    with index.session() as session:
        instance = session.get(Instance, sop_uid)
        assert instance is not None and instance.path == str(path)
        hops = session.scalars(select(AuditEvent.hop)).all()
        assert Hop.RECOVERED in hops
    second = reconcile_store(store, index)
    assert (second.indexed, second.partial_removed) == (0, 0)


def test_young_files_are_left_to_the_live_scp(tmp_path: Path) -> None:
    store, index, _, _ = _orphan(tmp_path)
    assert reconcile_store(store, index, settle_s=30).indexed == 0
    with index.session() as session:
        assert session.scalars(select(Instance)).all() == []
