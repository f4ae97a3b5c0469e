"""HL7 v2.5 to the RIS over MLLP (python-hl7): AI results as ORU^R01, escalations as OMI^O23.

ORU^R01: one OBX per measurement (NM, UCUM unit) and per finding (CWE), OBX-8 abnormal flag from
table 0078 (AA: critical, a STAT trigger; A: another trigger; N: none), algorithm name and version as
DCM 111001 / 111003. OMI^O23 (the v2.5 imaging order message of IHE Scheduled Workflow) with ORC-1
``XX`` (order changed) carries the new priority in TQ1-9 (S, A or R) and the study in IPC. Every
message waits for its ACK (MSA-1 AA or CA = accepted).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import hl7
from hl7.mllp import open_hl7_connection
from pydicom.dataset import Dataset

from radrouter.config.rules import Priority
from radrouter.config.worklist import Hl7Settings
from radrouter.inference.results.summary import ResultSummary
from radrouter.worklist.triage import TriageMatch, abnormal_flag

VERSION = "2.5"
#: TQ1-9 priority codes (HL7 table 0485).
PRIORITY_CODES = {Priority.STAT: "S", Priority.URGENT: "A", Priority.ROUTINE: "R"}
PRIORITY_NAMES = {Priority.STAT: "Stat", Priority.URGENT: "ASAP", Priority.ROUTINE: "Routine"}
ACCEPTED = ("AA", "CA")
REJECTED = ("AR", "CR")

# Escaping needs the separators of a message; every message here uses the standard ones.
_SEPARATORS = hl7.parse("MSH|^~\\&|")


class Hl7Error(Exception):
    """A message was not acknowledged (no connection, timeout, or an error ACK); worth retrying."""


class Hl7Rejected(Hl7Error):
    """The RIS rejected the message (AR/CR): resending the same message cannot help."""


def _text(value: object) -> str:
    return str(_SEPARATORS.escape(str(value))) if value is not None else ""


def _composite(*components: object) -> str:
    return "^".join(_text(component) for component in components).rstrip("^")


def _segment(name: str, *fields: str) -> str:
    return "|".join((name, *fields)).rstrip("|")


def _hl7_time(moment: datetime) -> str:
    return moment.strftime("%Y%m%d%H%M%S")


def _coded(code: str | None, name: str) -> str:
    """``SCHEME:VALUE`` and a name as a CWE: value^text^scheme (local scheme when uncoded)."""
    if code and ":" in code:
        scheme, value = code.split(":", 1)
        return _composite(value, name, scheme)
    return _composite(name.upper().replace(" ", "_"), name, "99RADRTR")


@dataclass(frozen=True)
class Order:
    """What the RIS needs to find the study's order, read from a stored instance's header."""

    study_uid: str
    patient_id: str
    issuer_of_patient_id: str
    patient_name: str
    accession_number: str
    study_datetime: str
    procedure: str
    requested_procedure_id: str
    procedure_step_id: str
    modality: str

    @classmethod
    def from_header(cls, dataset: Dataset) -> Order:
        procedures = dataset.get("ProcedureCodeSequence") or []
        if procedures:
            item = procedures[0]
            procedure = _composite(
                item.get("CodeValue"), item.get("CodeMeaning"), item.get("CodingSchemeDesignator")
            )
        else:
            procedure = _composite("", dataset.get("StudyDescription") or "imaging study")
        name = str(dataset.get("PatientName") or "")
        request = (dataset.get("RequestAttributesSequence") or [Dataset()])[0]
        accession = str(dataset.get("AccessionNumber") or "")
        # IPC needs identifiers; a study sent without an order is known by its Study Instance UID.
        fallback = accession or str(dataset.StudyInstanceUID)
        return cls(
            study_uid=str(dataset.StudyInstanceUID),
            patient_id=str(dataset.get("PatientID") or ""),
            issuer_of_patient_id=str(dataset.get("IssuerOfPatientID") or ""),
            patient_name="^".join(_text(part) for part in name.split("^")).rstrip("^"),
            accession_number=accession,
            study_datetime=(str(dataset.get("StudyDate") or "") + str(dataset.get("StudyTime") or ""))[:14],
            procedure=procedure,
            requested_procedure_id=str(request.get("RequestedProcedureID") or fallback),
            procedure_step_id=str(request.get("ScheduledProcedureStepID") or fallback),
            modality=str(dataset.get("Modality") or ""),
        )


def _header(settings: Hl7Settings, message_type: str, control_id: str, now: datetime) -> list[str]:
    msh = "|".join(
        (
            "MSH",
            "^~\\&",
            _text(settings.sending_application),
            _text(settings.sending_facility),
            _text(settings.receiving_application),
            _text(settings.receiving_facility),
            _hl7_time(now),
            "",
            message_type,
            control_id,
            "P",
            VERSION,
        )
    )
    return [msh]


def _patient(order: Order) -> str:
    identifier = _composite(order.patient_id, "", "", order.issuer_of_patient_id, "PI")
    return _segment("PID", "1", "", identifier, "", order.patient_name or '""')


def _order_control(control: str, order: Order, status: str) -> str:
    return _segment("ORC", control, _text(order.accession_number), _text(order.study_uid), "", status)


def results_message(
    settings: Hl7Settings,
    control_id: str,
    order: Order,
    summary: ResultSummary,
    matches: Sequence[TriageMatch],
    now: datetime,
) -> str:
    """ORU^R01: the results of one pipeline on one study, flagged by the triage rules they triggered."""
    service = _composite(summary.pipeline, f"AI {summary.pipeline}", "99RADRTR")
    segments = _header(settings, "ORU^R01^ORU_R01", control_id, now)
    segments.append(_patient(order))
    segments.append(_order_control("RE", order, status="CM"))
    obr = ["1", _text(order.accession_number), _text(order.study_uid), service, "", "", order.study_datetime]
    obr += [""] * 14 + [_hl7_time(now), "", "", "F"]  # OBR-22 result time, OBR-25 status final
    segments.append(_segment("OBR", *obr))
    for number, match in enumerate(matches, start=1):
        segments.append(
            _segment("NTE", str(number), "L", _text(f"{match.priority.value.upper()}: {match.reason}"))
        )
    observations: list[tuple[str, str, str, str, str, str]] = [
        ("ST", _composite("111001", "Algorithm Name", "DCM"), "", _text(summary.pipeline), "", "N"),
        ("ST", _composite("111003", "Algorithm Version", "DCM"), "", _text(summary.version), "", "N"),
    ]
    for measurement in summary.measurements:
        observations.append(
            (
                "NM",
                _coded(measurement.code, measurement.name),
                _text(measurement.segment),
                _text(f"{measurement.value:g}"),
                _composite(measurement.unit, measurement.unit, "UCUM"),
                abnormal_flag(measurement.name, matches),
            )
        )
    for number, finding in enumerate(summary.findings, start=1):
        flag = abnormal_flag(finding.name, matches)
        observations.append(
            (
                "CWE",
                _composite("121071", "Finding", "DCM"),
                str(number),
                _coded(finding.code, finding.name),
                "",
                flag,
            )
        )
        if finding.probability is not None:
            probability = _composite("PROBABILITY", "Probability", "99RADRTR")
            observations.append(("NM", probability, str(number), f"{finding.probability:g}", "1^^UCUM", flag))
    for set_id, (value_type, identifier, sub_id, value, unit, flag) in enumerate(observations, start=1):
        segments.append(
            _segment("OBX", str(set_id), value_type, identifier, sub_id, value, unit, "", flag, "", "", "F")
        )
    return "\r".join(segments)


def priority_update_message(
    settings: Hl7Settings, control_id: str, order: Order, priority: Priority, reason: str, now: datetime
) -> str:
    """OMI^O23 order changed (ORC-1 XX): the study's reading priority went up (TQ1-9), and why (NTE)."""
    code = PRIORITY_CODES[priority]
    segments = _header(settings, "OMI^O23^OMI_O23", control_id, now)
    segments.append(_patient(order))
    segments.append(_order_control("XX", order, status="IP"))
    segments.append(_segment("TQ1", "1", *[""] * 7, _composite(code, PRIORITY_NAMES[priority], "HL70485")))
    segments.append(
        _segment("OBR", "1", _text(order.accession_number), _text(order.study_uid), order.procedure)
    )
    segments.append(
        _segment("NTE", "1", "L", _text(f"Priority raised to {priority.value.upper()}: {reason}"))
    )
    ipc = (
        order.accession_number or order.study_uid,
        order.requested_procedure_id,
        order.study_uid,
        order.procedure_step_id,
    )
    segments.append(_segment("IPC", *(_text(value) for value in ipc), _text(order.modality)))
    return "\r".join(segments)


async def _exchange(settings: Hl7Settings, message: str) -> hl7.Message:
    reader, writer = await asyncio.wait_for(
        open_hl7_connection(settings.host, settings.port, encoding="ascii"), settings.timeout_s
    )
    try:
        writer.writemessage(message)
        await writer.drain()
        return await asyncio.wait_for(reader.readmessage(), settings.timeout_s)
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


def send(settings: Hl7Settings, message: str, control_id: str) -> str:
    """Send one message over MLLP and wait for its ACK; return the ACK code or raise :class:`Hl7Error`."""
    try:
        ack = asyncio.run(_exchange(settings, message))
    except (OSError, TimeoutError, asyncio.IncompleteReadError, ValueError) as error:
        raise Hl7Error(
            f"no ACK from {settings.host}:{settings.port}: {type(error).__name__} {error}"
        ) from error
    try:
        code, acknowledged = str(ack.segment("MSA")(1)), str(ack.segment("MSA")(2))
    except (KeyError, IndexError) as error:
        raise Hl7Error("the answer has no MSA segment") from error
    if acknowledged != control_id:
        raise Hl7Error(f"the ACK is for message {acknowledged!r}, not {control_id!r}")
    if code in REJECTED:
        raise Hl7Rejected(f"the RIS rejected the message ({code})")
    if code not in ACCEPTED:
        raise Hl7Error(f"the RIS answered {code}")
    return code
