"""UPS-RS on the running node: an outside Task Performer claims and completes a workitem, and a
WebSocket subscriber is told each state change (PS3.18 11, PS3.4 CC)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydicom import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import generate_uid
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from tests.access import bearer
from tests.services import Node

GLOBAL = "1.2.840.10008.5.1.4.34.5"
DICOM_JSON = {"Content-Type": "application/dicom+json"}


def _workitem(study_uid: str, series_uid: str) -> dict[str, Any]:
    ds = Dataset()
    ds.ProcedureStepState = "SCHEDULED"
    ds.ScheduledProcedureStepPriority = "HIGH"
    code = Dataset()
    code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = "remote-ai", "99RADROUTER", "remote-ai"
    ds.ScheduledWorkitemCodeSequence = Sequence([code])
    source = Dataset()
    source.StudyInstanceUID, source.SeriesInstanceUID = study_uid, series_uid
    ds.InputInformationSequence = Sequence([source])
    return ds.to_json_dict()


def _state(state: str, transaction: str) -> str:
    ds = Dataset()
    ds.ProcedureStepState, ds.TransactionUID = state, transaction
    return json.dumps(ds.to_json_dict())


def test_an_outside_performer_claims_and_completes_while_a_subscriber_watches(node: Node) -> None:
    web = f"http://127.0.0.1:{node.web_port}/dicomweb"
    assert node.http.post(f"{web}/workitems/{GLOBAL}/subscribers/WATCHER").status_code == 201
    channel = f"ws://127.0.0.1:{node.web_port}/dicomweb/subscribers/WATCHER"
    with pytest.raises(InvalidStatus):  # the event channel needs an admin's token like the rest of UPS-RS
        connect(channel, open_timeout=10)
    with connect(channel, open_timeout=10, additional_headers=bearer(node.token)) as events:
        study_uid, series_uid = generate_uid(), generate_uid()
        created = node.http.post(
            f"{web}/workitems", json=_workitem(study_uid, series_uid), headers=DICOM_JSON
        )
        assert created.status_code == 201, created.text
        uid = created.headers["Location"].rsplit("/", 1)[1]
        found = node.http.get(
            f"{web}/workitems", params={"ProcedureStepState": "SCHEDULED", "StudyInstanceUID": study_uid}
        )
        assert [Dataset.from_json(item).SOPInstanceUID for item in found.json()] == [uid]

        transaction = generate_uid()
        claimed = node.http.put(
            f"{web}/workitems/{uid}/state", content=_state("IN PROGRESS", transaction), headers=DICOM_JSON
        )
        assert claimed.status_code == 200, claimed.text
        again = node.http.put(
            f"{web}/workitems/{uid}/state", content=_state("IN PROGRESS", generate_uid()), headers=DICOM_JSON
        )
        assert again.status_code == 409  # claimed already
        stolen = node.http.put(
            f"{web}/workitems/{uid}/state", content=_state("COMPLETED", generate_uid()), headers=DICOM_JSON
        )
        assert stolen.status_code == 409  # not the owner's transaction

        output = Dataset()
        ref, sop = Dataset(), Dataset()
        ref.StudyInstanceUID, ref.SeriesInstanceUID = study_uid, generate_uid()
        sop.ReferencedSOPClassUID, sop.ReferencedSOPInstanceUID = (
            "1.2.840.10008.5.1.4.1.1.66.4",
            generate_uid(),
        )
        ref.ReferencedSOPSequence = Sequence([sop])
        performed = Dataset()
        performed.OutputInformationSequence = Sequence([ref])
        output.UnifiedProcedureStepPerformedProcedureSequence = Sequence([performed])
        updated = node.http.post(
            f"{web}/workitems/{uid}", params={"transaction-uid": transaction}, json=output.to_json_dict()
        )
        assert updated.status_code == 200, updated.text
        done = node.http.put(
            f"{web}/workitems/{uid}/state", content=_state("COMPLETED", transaction), headers=DICOM_JSON
        )
        assert done.status_code == 200, done.text

        seen: list[str] = []
        while len(seen) < 3:
            report = Dataset.from_json(json.loads(events.recv(timeout=10)))
            if report.AffectedSOPInstanceUID == uid:
                seen.append(str(report.ProcedureStepState))
    assert seen == ["SCHEDULED", "IN PROGRESS", "COMPLETED"]
    retrieved = Dataset.from_json(node.http.get(f"{web}/workitems/{uid}").json())
    assert retrieved.ProcedureStepState == "COMPLETED"
    assert "TransactionUID" not in retrieved  # only its owner knows it
    [item] = retrieved.UnifiedProcedureStepPerformedProcedureSequence[0].OutputInformationSequence
    assert item.ReferencedSOPSequence[0].ReferencedSOPInstanceUID == sop.ReferencedSOPInstanceUID


def test_a_workitem_that_is_not_there_is_404_and_a_bad_one_400(node: Node) -> None:
    web = f"http://127.0.0.1:{node.web_port}/dicomweb"
    assert node.http.get(f"{web}/workitems/{generate_uid()}").status_code == 404
    assert node.http.get(f"{web}/workitems", params={"StudyInstanceUID": generate_uid()}).status_code == 204
    assert node.http.post(f"{web}/workitems/{generate_uid()}/cancelrequest").status_code == 404
    not_scheduled = _workitem(generate_uid(), generate_uid())
    not_scheduled["00741000"]["Value"] = ["COMPLETED"]
    assert node.http.post(f"{web}/workitems", json=not_scheduled, headers=DICOM_JSON).status_code == 400


FILTERED = "1.2.840.10008.5.1.4.34.5.1"


def _reports(events: Any, count: int) -> list[tuple[str, str]]:
    """The next ``count`` (workitem, state) reports on the channel."""
    return [
        (str(report.AffectedSOPInstanceUID), str(report.ProcedureStepState))
        for report in (Dataset.from_json(json.loads(events.recv(timeout=10))) for _ in range(count))
    ]


def _create(node: Node, pipeline: str) -> str:
    web = f"http://127.0.0.1:{node.web_port}/dicomweb"
    workitem = _workitem(generate_uid(), generate_uid())
    workitem["00404018"]["Value"][0]["00080100"]["Value"] = [pipeline]
    created = node.http.post(f"{web}/workitems", json=workitem, headers=DICOM_JSON)
    assert created.status_code == 201, created.text
    return str(created.headers["Location"].rsplit("/", 1)[1])


def test_a_filtered_subscription_follows_only_matching_workitems_until_suspended(node: Node) -> None:
    web = f"http://127.0.0.1:{node.web_port}/dicomweb"
    pipeline = f"filtered-{generate_uid()[-8:]}"  # no other test's workitem matches
    subscribed = node.http.post(
        f"{web}/workitems/{FILTERED}/subscribers/FILTERED",
        params={"filter": f"ScheduledWorkitemCodeSequence.CodeValue={pipeline}"},
    )
    assert subscribed.status_code == 201, subscribed.text
    assert subscribed.headers["Content-Location"].endswith("/dicomweb/subscribers/FILTERED")
    channel = f"ws://127.0.0.1:{node.web_port}/dicomweb/subscribers/FILTERED"
    with connect(channel, open_timeout=10, additional_headers=bearer(node.token)) as events:
        _create(node, "another-pipeline")
        followed = _create(node, pipeline)
        assert _reports(events, 1) == [(followed, "SCHEDULED")]  # not the other pipeline's

        assert node.http.post(f"{web}/workitems/{FILTERED}/subscribers/FILTERED/suspend").status_code == 200
        _create(node, pipeline)  # after the suspension: not followed
        transaction = generate_uid()
        claimed = node.http.put(
            f"{web}/workitems/{followed}/state",
            content=_state("IN PROGRESS", transaction),
            headers=DICOM_JSON,
        )
        assert claimed.status_code == 200, claimed.text
        # The workitem followed before the suspension still reports; the new one never did.
        assert _reports(events, 1) == [(followed, "IN PROGRESS")]


def test_a_new_subscriber_gets_the_workitems_state_first(node: Node) -> None:
    web = f"http://127.0.0.1:{node.web_port}/dicomweb"
    uid = _create(node, "state-first")
    channel = f"ws://127.0.0.1:{node.web_port}/dicomweb/subscribers/LATECOMER"
    with connect(channel, open_timeout=10, additional_headers=bearer(node.token)) as events:
        assert node.http.post(f"{web}/workitems/{uid}/subscribers/LATECOMER").status_code == 201
        assert _reports(events, 1) == [(uid, "SCHEDULED")]  # no change happened: its state as it is


@pytest.mark.parametrize(
    ("uid", "params", "why"),
    [
        (FILTERED, {}, "needs at least one filter"),
        (FILTERED, {"filter": "PatientName=DOE"}, "is not <attribute>=<value> on one of"),
        (GLOBAL, {"filter": "ProcedureStepState=SCHEDULED"}, "with the filtered global UID"),
        (GLOBAL, {"deletionlock": "maybe"}, "deletionlock is true or false"),
    ],
)
def test_a_subscription_the_node_cannot_keep_is_400_with_the_reason(
    node: Node, uid: str, params: dict[str, str], why: str
) -> None:
    web = f"http://127.0.0.1:{node.web_port}/dicomweb"
    refused = node.http.post(f"{web}/workitems/{uid}/subscribers/REFUSED", params=params)
    assert refused.status_code == 400
    assert why in refused.json()["detail"]
