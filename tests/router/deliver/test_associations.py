"""Associations kept open between deliveries, against a real pynetdicom storage SCP that can drop them."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pydicom
import pytest
from pynetdicom import AE, StoragePresentationContexts, evt
from pynetdicom.association import Association

from radrouter.config.settings import Destination
from radrouter.router.deliver.associations import AssociationPool
from radrouter.router.deliver.scu import OutgoingObject, send
from tests.services import CT_HEAD, as_new_study, free_port, wait_until


class StorageSCP:
    """Stores what it receives in memory; counts associations; can drop one under a C-STORE."""

    def __init__(self) -> None:
        self.port = free_port()
        self.stored: list[str] = []
        self.associations: list[Association] = []
        self.drop_second_store = False
        self._per_association: dict[int, int] = {}
        self._lock = threading.Lock()
        ae = AE(ae_title="TESTSCP")
        ae.supported_contexts = StoragePresentationContexts
        handlers = [(evt.EVT_C_STORE, self._store), (evt.EVT_ACCEPTED, self._accepted)]
        self._server = ae.start_server(("127.0.0.1", self.port), block=False, evt_handlers=handlers)

    def _accepted(self, event: Any) -> None:
        with self._lock:
            self.associations.append(event.assoc)

    def _store(self, event: Any) -> int:
        with self._lock:
            count = self._per_association.get(id(event.assoc), 0) + 1
            self._per_association[id(event.assoc)] = count
        if self.drop_second_store and count == 2:
            event.assoc.abort()
            return 0xA700
        self.stored.append(str(event.request.AffectedSOPInstanceUID))
        return 0x0000

    def open_associations(self) -> list[Association]:
        return [assoc for assoc in self.associations if assoc.is_established]

    def stop(self) -> None:
        self._server.shutdown()


@pytest.fixture
def scp() -> Iterator[StorageSCP]:
    server = StorageSCP()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def instances(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Three real CT slices under new UIDs."""
    sources = sorted(p for p in CT_HEAD.iterdir() if p.name.startswith("I"))[:3]
    return as_new_study(sources, tmp_path_factory.mktemp("ct"))


def sop_uid(path: Path) -> str:
    return str(pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID)


def deliver(scp: StorageSCP, path: Path, pool: AssociationPool) -> list[str]:
    destination = Destination(host="127.0.0.1", port=scp.port, ae_title="TESTSCP")
    return send(destination, [OutgoingObject(path)], "RADROUTER", 10, pool)


def test_a_kept_association_carries_the_next_deliveries(scp: StorageSCP, instances: list[Path]) -> None:
    pool = AssociationPool(keep_open_s=60)
    for path in instances:
        deliver(scp, path, pool)
    assert scp.stored == [sop_uid(path) for path in instances]
    assert len(scp.associations) == 1 and pool.reused == 2
    pool.close()
    wait_until(lambda: not scp.open_associations(), 10, "the association released")


def test_an_association_the_peer_closed_while_idle_is_replaced(
    scp: StorageSCP, instances: list[Path]
) -> None:
    pool = AssociationPool(keep_open_s=60)
    deliver(scp, instances[0], pool)
    for assoc in scp.open_associations():
        assoc.abort()
    wait_until(lambda: not scp.open_associations(), 10, "the peer's abort")
    deliver(scp, instances[1], pool)
    assert scp.stored == [sop_uid(path) for path in instances[:2]]
    assert len(scp.associations) == 2
    pool.close()


def test_a_kept_association_dropped_under_a_store_is_retried_on_a_new_one(
    scp: StorageSCP, instances: list[Path]
) -> None:
    pool = AssociationPool(keep_open_s=60)
    scp.drop_second_store = True
    deliver(scp, instances[0], pool)
    deliver(scp, instances[1], pool)  # reused, dropped by the peer under the C-STORE, sent again
    assert pool.reused == 1
    assert scp.stored == [sop_uid(path) for path in instances[:2]]
    assert len(scp.associations) == 2
    pool.close()


def test_idle_associations_are_released_after_keep_open_s(scp: StorageSCP, instances: list[Path]) -> None:
    pool = AssociationPool(keep_open_s=0.2)
    deliver(scp, instances[0], pool)
    wait_until(lambda: scp.associations and not scp.open_associations(), 30, "the idle association released")
    deliver(scp, instances[1], pool)
    assert pool.reused == 0 and len(scp.associations) == 2
