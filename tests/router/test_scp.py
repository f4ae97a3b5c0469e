"""The SCP over the real network, with dcmtk's storescu as the modality: who may send, and bad input."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pydicom
import pytest

from radrouter.config.settings import CompletionSettings, Settings
from radrouter.router.assembler import StudyAssembler
from radrouter.router.scp import StorageSCP
from radrouter.storage.index import Index, Instance
from radrouter.storage.store import InstanceStore
from tests.services import CT_HEAD, free_port, storescu

ONE_SLICE = [CT_HEAD / "I10"]


class RunningSCP:
    def __init__(self, root: Path, **node: Any) -> None:
        storage = node.pop("storage", {})
        self.settings = Settings(node={"port": free_port(), **node}, storage={"root": root, **storage})
        self.index = Index(self.settings.storage.resolved_index_url())
        self.completed: list[str] = []
        self.done = threading.Event()
        self.assembler = StudyAssembler(CompletionSettings(quiet_period_s=0.2), self._complete)
        self.scp = StorageSCP(self.settings, InstanceStore(root, fsync=False), self.index, self.assembler)

    def _complete(self, study_uid: str) -> None:
        self.completed.append(study_uid)
        self.done.set()

    def __enter__(self) -> RunningSCP:
        self.assembler.start()
        self.server = self.scp.serve(block=False)
        return self

    def __exit__(self, *_: object) -> None:
        self.server.shutdown()
        self.assembler.stop()
        self.index.engine.dispose()

    def instances(self) -> int:
        with self.index.session() as session:
            return len(session.query(Instance).all())


@pytest.fixture
def root(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path / "data"


def test_a_study_is_stored_indexed_and_completed(root: Path) -> None:
    with RunningSCP(root) as scp:
        sent = storescu(scp.settings.node.port, ONE_SLICE)
        assert "Received Store Response (Success)" in sent.stderr
        assert scp.done.wait(10)
        assert scp.instances() == 1
        stored = list((root / "instances").rglob("*.dcm"))
        assert [p.read_bytes()[128:132] for p in stored] == [b"DICM"]


def test_a_wrong_called_ae_is_rejected(root: Path) -> None:
    with RunningSCP(root) as scp:
        sent = storescu(scp.settings.node.port, ONE_SLICE, ae_title="SOMEONE_ELSE")
        assert sent.returncode != 0
        assert "Called AE Title Not Recognized" in sent.stderr
        assert scp.instances() == 0


def test_a_calling_ae_outside_the_allow_list_is_rejected(root: Path) -> None:
    with RunningSCP(root, allowed_calling_aes=["CT01"]) as scp:
        sent = storescu(scp.settings.node.port, ONE_SLICE)  # calls as MODALITY
        assert sent.returncode != 0
        assert "Calling AE Title Not Recognized" in sent.stderr
        assert scp.instances() == 0


def test_below_the_free_space_reserve_the_answer_is_out_of_resources(root: Path) -> None:
    with RunningSCP(root, storage={"free_space_reserve_mb": 1 << 40}) as scp:
        sent = storescu(scp.settings.node.port, ONE_SLICE)
        assert "Received Store Response (Refused: OutOfResources)" in sent.stderr
        assert scp.instances() == 0
        assert not (root / "instances").exists()  # nothing half-written


def test_a_dataset_that_cannot_be_indexed_gets_a_failure_status(root: Path, tmp_path: Path) -> None:
    """Synthetic: the real CT slice without its Study Instance UID, which no real file lacks."""
    broken = pydicom.dcmread(ONE_SLICE[0])
    del broken.StudyInstanceUID
    path = tmp_path / "no-study-uid.dcm"
    broken.save_as(path)
    with RunningSCP(root) as scp:
        sent = storescu(scp.settings.node.port, [path])
        assert "Received Store Response (Error: CannotUnderstand)" in sent.stderr
        assert scp.instances() == 0
