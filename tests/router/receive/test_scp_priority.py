"""A sender's C-STORE Priority HIGH (0000,0700) is kept with the study, over the real network."""

from __future__ import annotations

from pathlib import Path

import pydicom
import pytest
from pynetdicom import AE
from pynetdicom.sop_class import CTImageStorage

from radrouter.storage.index import Study
from tests.router.receive.test_scp import ONE_SLICE, RunningSCP


def send_with_priority(port: int, path: Path, priority: int) -> int:
    sender = AE(ae_title="MODALITY")
    sender.add_requested_context(CTImageStorage)
    association = sender.associate("127.0.0.1", port, ae_title="RADROUTER")
    assert association.is_established
    status = association.send_c_store(pydicom.dcmread(path), priority=priority)
    association.release()
    return int(status.Status)


@pytest.mark.parametrize(("priority", "high"), [(1, True), (0, False), (2, False)])
def test_a_high_priority_store_marks_the_study(tmp_path: Path, priority: int, high: bool) -> None:
    with RunningSCP(tmp_path / "data") as scp:
        assert send_with_priority(scp.settings.node.port, ONE_SLICE[0], priority) == 0
        study_uid = str(pydicom.dcmread(ONE_SLICE[0], stop_before_pixels=True).StudyInstanceUID)
        with scp.index.session() as session:
            study = session.get(Study, study_uid)
            assert study is not None and study.sent_as_high_priority is high
