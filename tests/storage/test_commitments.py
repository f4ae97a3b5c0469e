"""What the node vouches for when asked for Storage Commitment: indexed, in the store, fsynced."""

from __future__ import annotations

from pathlib import Path

import pydicom

from radrouter.storage.commitments import Kept, kept
from radrouter.storage.index import Index
from radrouter.storage.ingest import ReceivedInstance, record_instance
from radrouter.storage.store import InstanceStore
from tests.services import CT_HEAD


def test_only_an_instance_indexed_and_durably_in_the_store_is_kept(tmp_path: Path) -> None:
    index = Index(f"sqlite:///{tmp_path}/i.db")
    store = InstanceStore(tmp_path / "store")
    source = sorted(CT_HEAD.glob("I*"))[0]
    header = pydicom.dcmread(source, stop_before_pixels=True)
    sop_class, uid = str(header.SOPClassUID), str(header.SOPInstanceUID)
    path = store.instance_path(str(header.StudyInstanceUID), str(header.SeriesInstanceUID), uid)
    store.write(path, source.read_bytes())
    record_instance(index, ReceivedInstance.of_stored_file(path))
    try:
        assert kept(
            index, store, [(sop_class, uid), (sop_class, "1.2.3"), ("1.2.840.10008.5.1.4.1.1.4", uid)]
        ) == [
            Kept.STORED,
            Kept.ABSENT,
            Kept.OTHER_CLASS,
        ]
        # Written without fsync (storage.fsync: false), a crash could still lose it.
        assert kept(index, InstanceStore(tmp_path / "store", fsync=False), [(sop_class, uid)]) == [
            Kept.NOT_DURABLE
        ]
        path.unlink()  # removed since (an operator, a purge): no longer vouched for
        assert kept(index, store, [(sop_class, uid)]) == [Kept.ABSENT]
    finally:
        index.engine.dispose()
