"""Store versus index after a crash: every stored instance is indexed, no partial file stays behind.

The SCP writes a file, then indexes it, then answers Success. A process killed between the write and
the index leaves a complete file the index does not know (the sender got no Success and will send it
again, but the file must not be orphaned); one killed during the write leaves only a temporary
``.incoming-*.part`` file, which is removed.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

from pydicom.errors import InvalidDicomError
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from radrouter.storage.index import Hop, Index, Instance
from radrouter.storage.ingest import ReceivedInstance, record_instance
from radrouter.storage.store import InstanceStore, InvalidUID

log = logging.getLogger(__name__)

#: Files younger than this may still be on their way into the index through a live SCP.
SETTLE_S = 5.0


@dataclass(frozen=True)
class StoreReconciliation:
    """What one pass found: instances indexed late, partial files removed, indexed files missing."""

    indexed: int
    partial_removed: int
    missing_files: int


def reconcile_store(store: InstanceStore, index: Index, settle_s: float = SETTLE_S) -> StoreReconciliation:
    """Index the stored instances the index lacks and remove partial writes older than ``settle_s``."""
    instances = store.root / "instances"
    cutoff = time.time() - settle_s
    with index.session() as session:
        known = dict(session.execute(select(Instance.sop_uid, Instance.path)).all())
    indexed = partial = 0
    for path in sorted(instances.glob("*/*/*")) if instances.is_dir() else []:
        if path.stat().st_mtime > cutoff:
            continue
        if path.name.startswith(".incoming-"):
            path.unlink(missing_ok=True)
            partial += 1
        elif path.suffix == ".dcm" and path.stem not in known and _index_file(index, path):
            indexed += 1
    missing = sum(1 for stored in known.values() if not Path(stored).is_file())
    if indexed or partial or missing:
        log.warning(
            "store reconciled: %d indexed late, %d partial file(s) removed, %d indexed file(s) missing",
            indexed,
            partial,
            missing,
        )
    return StoreReconciliation(indexed, partial, missing)


def _index_file(index: Index, path: Path) -> bool:
    try:
        received = ReceivedInstance.of_stored_file(path)
    except (InvalidDicomError, InvalidUID, AttributeError, ValueError, EOFError, OSError) as error:
        log.error("stored file %s cannot be indexed: %s", path.name, type(error).__name__)
        return False
    try:
        record_instance(index, received)
    except IntegrityError:
        return False  # a live SCP indexed it meanwhile
    with index.session() as session:
        index.record_event(session, received.study_uid, Hop.RECOVERED, sop_uid=received.sop_uid, indexed=True)
    return True
