"""Storage Commitment over the network: the node commits only what it holds durably stored and
indexed, and reports on the request's association, or on a new one to a requester that released.

dcmtk has no Storage Commitment requester (no tool of it sends N-ACTION), so both requesters here
are pynetdicom's; Orthanc, a real Storage Commitment SCP, is the peer of the node as requester.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import httpx
import pydicom
import pytest
from pydicom import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import MRImageStorage, generate_uid
from pynetdicom import AE, evt
from pynetdicom.sop_class import StorageCommitmentPushModel  # type: ignore[attr-defined]

from radrouter.config.settings import Destination
from radrouter.router.deliver.commitment import COMMITMENT_INSTANCE, NotCommitted, request_commitment
from radrouter.storage.commitments import CommitmentRequest
from radrouter.storage.index import Index
from tests.router.receive.mpps_scu import two_series
from tests.services import COMMITMENT_REQUESTER, CT_HEAD, Node, Orthanc, as_new_study, storescu, wait_until
from tests.user_models import COMMITMENT_TESTER


class Reports:
    """The N-EVENT-REPORTs a requester receives."""

    def __init__(self) -> None:
        self.received: list[tuple[int, Dataset]] = []
        self._lock = threading.Lock()

    def __call__(self, event: Any) -> tuple[int, None]:
        with self._lock:
            self.received.append((int(event.event_type), event.event_information))
        return 0x0000, None

    def one(self) -> tuple[int, Dataset]:
        wait_until(lambda: self.received, 30, "the commitment report")
        [received] = self.received
        return received


def _references(files: list[Path]) -> list[tuple[str, str]]:
    headers = [pydicom.dcmread(path, stop_before_pixels=True) for path in files]
    return [(str(h.SOPClassUID), str(h.SOPInstanceUID)) for h in headers]


def _action(references: list[tuple[str, str]]) -> Dataset:
    info = Dataset()
    info.TransactionUID = generate_uid()
    items = []
    for sop_class, uid in references:
        item = Dataset()
        item.ReferencedSOPClassUID, item.ReferencedSOPInstanceUID = sop_class, uid
        items.append(item)
    info.ReferencedSOPSequence = Sequence(items)
    return info


def _failures(info: Dataset) -> dict[str, int]:
    return {str(i.ReferencedSOPInstanceUID): int(i.FailureReason) for i in info.get("FailedSOPSequence", [])}


def _committed(info: Dataset) -> set[str]:
    return {str(i.ReferencedSOPInstanceUID) for i in info.get("ReferencedSOPSequence", [])}


def test_commitment_is_refused_for_what_the_node_does_not_hold(node: Node, tmp_path: Path) -> None:
    _study, stored, _rest = two_series(tmp_path, first=2)
    assert storescu(node.port, stored).returncode == 0
    references = _references(stored)
    never_sent = (references[0][0], generate_uid())
    wrong_class = (str(MRImageStorage), references[1][1])  # stored, but as CT
    reports = Reports()
    ae = AE(ae_title="MODALITY")
    ae.add_requested_context(StorageCommitmentPushModel)
    assoc = ae.associate(
        "127.0.0.1", node.port, ae_title="RADROUTER", evt_handlers=[(evt.EVT_N_EVENT_REPORT, reports)]
    )
    assert assoc.is_established
    try:
        request = _action([*references, never_sent, wrong_class])
        status, _ = assoc.send_n_action(request, 1, StorageCommitmentPushModel, COMMITMENT_INSTANCE)
        assert status.Status == 0x0000
        event_type, info = reports.one()  # on this association, which stays open for it
    finally:
        assoc.release()
    assert event_type == 2  # some failures
    assert info.TransactionUID == request.TransactionUID
    assert _committed(info) == {uid for _class, uid in references}
    assert _failures(info) == {never_sent[1]: 0x0112, wrong_class[1]: 0x0119}


def test_a_requester_that_released_gets_its_report_on_a_new_association(node: Node, tmp_path: Path) -> None:
    _study, stored, _rest = two_series(tmp_path, first=2)
    assert storescu(node.port, stored).returncode == 0
    reports = Reports()
    requester = AE(ae_title=COMMITMENT_REQUESTER)
    requester.add_supported_context(StorageCommitmentPushModel, scp_role=True, scu_role=False)
    requester.add_requested_context(StorageCommitmentPushModel)
    server = requester.start_server(
        ("127.0.0.1", node.commitment_port), block=False, evt_handlers=[(evt.EVT_N_EVENT_REPORT, reports)]
    )
    try:
        assoc = requester.associate("127.0.0.1", node.port, ae_title="RADROUTER")
        assert assoc.is_established
        request = _action(_references(stored))
        status, _ = assoc.send_n_action(request, 1, StorageCommitmentPushModel, COMMITMENT_INSTANCE)
        assoc.release()  # at once: the report cannot come on this association
        assert status.Status == 0x0000
        event_type, info = reports.one()
    finally:
        server.shutdown()
    assert (event_type, info.TransactionUID, _failures(info)) == (1, request.TransactionUID, {})
    assert _committed(info) == {uid for _class, uid in _references(stored)}


def test_the_node_asks_orthanc_and_takes_its_report_on_a_new_association(
    node: Node, orthanc: Orthanc, tmp_path: Path
) -> None:
    """Orthanc reports on an association of its own to the node's SCP (it must know the node)."""
    modality = {"AET": "RADROUTER", "Host": "127.0.0.1", "Port": node.port}
    httpx.put(f"{orthanc.url}/modalities/radrouter", json=modality).raise_for_status()
    _study, files, _rest = two_series(tmp_path, first=2)
    assert (
        storescu(orthanc.dicom_port, files, ae_title=orthanc.ae_title, calling_ae="RADROUTER").returncode == 0
    )
    pacs = Destination(host="127.0.0.1", port=orthanc.dicom_port, ae_title=orthanc.ae_title)
    index = Index(f"sqlite:///{node.workdir / 'data' / 'index.sqlite3'}")
    try:
        references = _references(files)
        transaction = request_commitment("pacs", pacs, references, "RADROUTER", index, timeout_s=30)
        with index.session() as session:
            answered = session.get(CommitmentRequest, transaction)
            assert answered is not None and answered.answered_at is not None and answered.failed == []
        never_sent = (references[0][0], generate_uid())
        with pytest.raises(NotCommitted, match="0x0112"):
            request_commitment("pacs", pacs, [*references, never_sent], "RADROUTER", index, timeout_s=30)
    finally:
        index.engine.dispose()


def test_a_forward_to_a_destination_that_must_commit_is_delivered_once_committed(
    node: Node, orthanc: Orthanc, tmp_path: Path
) -> None:
    modality = {"AET": "RADROUTER", "Host": "127.0.0.1", "Port": node.port}
    httpx.put(f"{orthanc.url}/modalities/radrouter", json=modality).raise_for_status()
    files = as_new_study(sorted(CT_HEAD.glob("I*"))[:3], tmp_path)
    study_uid = str(pydicom.dcmread(files[0], stop_before_pixels=True).StudyInstanceUID)
    assert storescu(node.port, files, calling_ae=COMMITMENT_TESTER).returncode == 0

    study = wait_until(
        lambda: (s := node.study(study_uid))["state"] in ("DONE", "FAILED") and s, 180, "settled"
    )
    assert study["state"] == "DONE", study["reason"]
    assert [(f["destination"], f["state"]) for f in study["forwards"]] == [("pacs-committed", "DELIVERED")]
    [delivered] = [event for event in study["events"] if event["hop"] == "delivered"]
    index = Index(f"sqlite:///{node.workdir / 'data' / 'index.sqlite3'}")
    try:
        with index.session() as session:
            commitment = session.get(CommitmentRequest, delivered["detail"]["commitment"])
            assert commitment is not None and commitment.answered_at is not None
            assert (len(commitment.requested), commitment.failed) == (len(files), [])
    finally:
        index.engine.dispose()
