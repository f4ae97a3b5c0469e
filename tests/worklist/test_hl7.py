"""HL7 v2.5 to the RIS: well-formed ORU^R01 and OMI^O23 (checked by hl7apy), sent over real MLLP."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

import pydicom
import pytest
from hl7apy.consts import VALIDATION_LEVEL
from hl7apy.parser import parse_message

from radrouter.config.rules import Priority
from radrouter.config.worklist import Hl7Settings, TriageRule
from radrouter.inference.results.summary import ResultSummary
from radrouter.worklist import hl7
from radrouter.worklist.triage import evaluate
from tests.services import MPRAGE, RisListener

NOW = datetime(2026, 3, 2, 8, 30, 0)
SUMMARY = ResultSummary.model_validate(
    {
        "pipeline": "ich-detect",
        "version": "ich 2.1",
        "measurements": [
            {"name": "Bleed volume", "code": "SCT:118565006", "value": 12.5, "unit": "mL", "segment": "Bleed"}
        ],
        "findings": [{"name": "Intracranial haemorrhage", "code": "SCT:50960005", "probability": 0.93}],
    }
)
RULES = [
    TriageRule.model_validate(
        {
            "name": "ich",
            "pipeline": "ich-detect",
            "finding": {"code": "SCT:50960005", "min_probability": 0.5},
            "priority": "stat",
            "reason": "Intracranial haemorrhage | suspected",
        }
    )
]


@pytest.fixture(scope="module")
def order() -> hl7.Order:
    return hl7.Order.from_header(pydicom.dcmread(sorted(MPRAGE.glob("*.dcm"))[0], stop_before_pixels=True))


def strictly_parsed(text: str) -> object:
    """hl7apy parses against the v2.5 message structures and raises on anything malformed."""
    message = parse_message(text, validation_level=VALIDATION_LEVEL.STRICT)
    assert message.validate()
    return message


def test_the_results_message_is_a_well_formed_oru_with_flags(order: hl7.Order) -> None:
    text = hl7.results_message(Hl7Settings(), "CTRL1", order, SUMMARY, evaluate(RULES, SUMMARY), NOW)
    strictly_parsed(text)
    segments = text.split("\r")
    assert segments[0].split("|")[8:12] == ["ORU^R01^ORU_R01", "CTRL1", "P", "2.5"]
    observations = {s.split("|")[3]: s.split("|") for s in segments if s.startswith("OBX")}
    volume = observations["118565006^Bleed volume^SCT"]
    assert (volume[2], volume[4], volume[5], volume[6], volume[8]) == (
        "NM",
        "Bleed",
        "12.5",
        "mL^mL^UCUM",
        "N",
    )
    finding = observations["121071^Finding^DCM"]
    assert (finding[2], finding[5], finding[8]) == ("CWE", "50960005^Intracranial haemorrhage^SCT", "AA")
    assert observations["111003^Algorithm Version^DCM"][5] == "ich 2.1"
    obr = next(s for s in segments if s.startswith("OBR")).split("|")
    assert obr[3] == order.study_uid and obr[25] == "F"
    note = next(s for s in segments if s.startswith("NTE"))
    assert note.endswith("STAT: Intracranial haemorrhage \\F\\ suspected"), "separators escaped"


def test_the_priority_update_is_a_well_formed_order_change(order: hl7.Order) -> None:
    text = hl7.priority_update_message(Hl7Settings(), "CTRL2", order, Priority.STAT, "Bleed", NOW)
    strictly_parsed(text)
    segments = {s[:3]: s.split("|") for s in text.split("\r")}
    assert segments["MSH"][8] == "OMI^O23^OMI_O23"
    assert segments["ORC"][1] == "XX"
    assert segments["TQ1"][9] == "S^Stat^HL70485"
    assert segments["IPC"][3] == order.study_uid
    assert segments["NTE"][3] == "Priority raised to STAT: Bleed"
    header = pydicom.dcmread(sorted(MPRAGE.glob("*.dcm"))[0], stop_before_pixels=True)
    assert segments["PID"][3].split("^")[0] == str(header.PatientID)


@pytest.fixture
def ris(request: pytest.FixtureRequest) -> Iterator[RisListener]:
    listener = RisListener(**getattr(request, "param", {}))
    listener.start()
    yield listener
    listener.stop()


def test_a_message_is_sent_and_its_ack_awaited(ris: RisListener, order: hl7.Order) -> None:
    text = hl7.priority_update_message(Hl7Settings(), "CTRL3", order, Priority.URGENT, "why", NOW)
    assert hl7.send(Hl7Settings(host="127.0.0.1", port=ris.port), text, "CTRL3") == "AA"
    assert [message.rstrip("\r") for message in ris.messages] == [text]


@pytest.mark.parametrize("ris", [{"ack_code": "AR"}], indirect=True)
def test_a_rejection_is_final(ris: RisListener, order: hl7.Order) -> None:
    text = hl7.priority_update_message(Hl7Settings(), "CTRL4", order, Priority.URGENT, "why", NOW)
    with pytest.raises(hl7.Hl7Rejected):
        hl7.send(Hl7Settings(host="127.0.0.1", port=ris.port), text, "CTRL4")


@pytest.mark.parametrize("ris", [{"drop_first": 1}], indirect=True)
def test_no_ack_is_an_error_to_retry(ris: RisListener, order: hl7.Order) -> None:
    settings = Hl7Settings(host="127.0.0.1", port=ris.port, timeout_s=5)
    text = hl7.priority_update_message(Hl7Settings(), "CTRL5", order, Priority.URGENT, "why", NOW)
    with pytest.raises(hl7.Hl7Error) as raised:
        hl7.send(settings, text, "CTRL5")
    assert not isinstance(raised.value, hl7.Hl7Rejected)
    assert hl7.send(settings, text, "CTRL5") == "AA", "the resend is acknowledged"


def test_no_listener_is_an_error_to_retry(order: hl7.Order) -> None:
    from tests.services import free_port

    with pytest.raises(hl7.Hl7Error, match="no ACK"):
        hl7.send(Hl7Settings(host="127.0.0.1", port=free_port(), timeout_s=2), "MSH|^~\\&|", "X")
