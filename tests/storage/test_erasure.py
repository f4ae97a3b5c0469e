"""Erasure on request: real instance files and a real index; one patient goes, the others stay."""

from __future__ import annotations

from io import BytesIO
from pathlib import Path

import pydicom
import pytest
from pydicom.uid import generate_uid
from sqlalchemy import func, select
from typer.testing import CliRunner

from radrouter import cli
from radrouter.config.rules import Priority
from radrouter.storage import erasure
from radrouter.storage.erasure import ErasureRefused, erase, resume_erasures
from radrouter.storage.index import (
    AuditEvent,
    Base,
    Delivery,
    DeliveryState,
    Erasure,
    ErasureScope,
    Feedback,
    Hl7Message,
    Hop,
    Index,
    Job,
    JobState,
    MessageKind,
    MonitoredResult,
    PriorityChange,
    Pseudonym,
    PseudonymKind,
    Result,
    ResultKind,
    Study,
    StudyState,
    Verdict,
    WorklistItem,
    utcnow,
)
from radrouter.storage.ingest import ReceivedInstance, record_instance
from radrouter.storage.store import InstanceStore
from tests.services import CT_HEAD
from tests.storage.commands import config_for

SLICES = sorted(CT_HEAD.iterdir())[:3]


@pytest.fixture
def node(tmp_path: Path) -> tuple[Index, InstanceStore]:
    return Index(f"sqlite:///{tmp_path / 'index.sqlite3'}"), InstanceStore(tmp_path / "data", fsync=False)


def _study(index: Index, store: InstanceStore, patient_id: str, state: StudyState = StudyState.DONE) -> str:
    """A study of ``patient_id`` received as the SCP does (real CT slices, new UIDs), with a job, a
    SEG result file, a delivery, an HL7 message, a worklist item and its change, feedback, a monitored
    result, audit events and the pseudonyms a de-identified send issued."""
    study_uid, series_uid = generate_uid(), generate_uid()
    for source in SLICES:
        dataset = pydicom.dcmread(source)
        dataset.PatientID, dataset.PatientName = patient_id, f"Doe^{patient_id}"
        dataset.StudyInstanceUID, dataset.SeriesInstanceUID = study_uid, series_uid
        dataset.SOPInstanceUID = generate_uid()
        buffer = BytesIO()
        dataset.save_as(buffer, enforce_file_format=True)
        path = store.instance_path(study_uid, series_uid, dataset.SOPInstanceUID)
        store.write(path, buffer.getvalue())
        record_instance(index, ReceivedInstance.of_stored_file(path, calling_ae="CT"))
    seg_uid, seg_series = generate_uid(), generate_uid()
    seg_path = store.result_path(study_uid, seg_uid)
    store.write(seg_path, b"SEG of " + patient_id.encode())
    with index.session() as session:
        study = session.get(Study, study_uid)
        assert study is not None
        study.state, study.settled_at = state, utcnow()
        job = Job(
            study_uid=study_uid,
            series_uid=series_uid,
            pipeline="brain-extraction",
            priority=Priority.ROUTINE,
            rule="r",
            state=JobState.DONE if state == StudyState.DONE else JobState.RUNNING,
        )
        session.add(job)
        session.flush()
        result = Result(
            job_id=job.id,
            kind=ResultKind.SEG,
            sop_uid=seg_uid,
            sop_class_uid="1.2.840.10008.5.1.4.1.1.66.4",
            series_uid=seg_series,
            path=str(seg_path.relative_to(store.root)),
        )
        session.add(result)
        session.flush()
        session.add(Delivery(result_id=result.id, destination="pacs", state=DeliveryState.DELIVERED))
        session.add(
            Hl7Message(
                study_uid=study_uid,
                job_id=job.id,
                kind=MessageKind.ORU,
                control_id=generate_uid()[-20:],
                state=DeliveryState.DELIVERED,
            )
        )
        session.add(
            WorklistItem(study_uid=study_uid, priority=Priority.ROUTINE, base_priority=Priority.ROUTINE)
        )
        session.flush()
        session.add(
            PriorityChange(study_uid=study_uid, new_priority=Priority.ROUTINE, source="rule", reason="r")
        )
        session.add(
            Feedback(
                result_id=result.id,
                pipeline="brain-extraction",
                version="1",
                verdict=Verdict.AGREE,
                source="web",
            )
        )
        session.add(
            MonitoredResult(
                result_id=result.id,
                study_uid=study_uid,
                pipeline="brain-extraction",
                version="1",
                at=utcnow(),
                manufacturer="m",
                model="m",
                slice_thickness="5",
                protocol="p",
            )
        )
        index.record_event(session, study_uid, Hop.DELIVERED, destination="pacs")
        session.merge(Pseudonym(pseudonym=f"RR{patient_id}", kind=PseudonymKind.PATIENT, original=patient_id))
        session.add(Pseudonym(pseudonym=generate_uid(), kind=PseudonymKind.STUDY, original=study_uid))
        session.add(Pseudonym(pseudonym=generate_uid(), kind=PseudonymKind.UID, original=series_uid))
    return study_uid


def _mentions(index: Index, store: InstanceStore, study_uid: str, patient_id: str) -> list[str]:
    """Every file, row or pseudonym left that names the study or the patient."""
    left = [str(p) for p in store.root.rglob("*") if p.is_file() and study_uid in str(p)]
    with index.session() as session:
        for table in Base.metadata.sorted_tables:
            for row in session.execute(select(table)):
                text = " ".join(str(value) for value in row)
                if study_uid in text or patient_id in text:
                    left.append(f"{table.name}: {text}")
    return left


def _rows(index: Index, model: type[Base]) -> int:
    with index.session() as session:
        return session.scalar(select(func.count()).select_from(model)) or 0


def test_erase_a_patient_leaves_nothing_of_them_and_the_others_intact(
    node: tuple[Index, InstanceStore],
) -> None:
    index, store = node
    first, second = _study(index, store, "PAT-1"), _study(index, store, "PAT-1")
    other = _study(index, store, "PAT-2")
    files_before = {p for p in store.root.rglob("*") if p.is_file() and other in str(p)}

    report = erase(index, store, requested_by="dpo", patient_id="PAT-1")

    assert sorted(report.studies) == sorted([first, second])
    assert (report.instances, report.results, report.pseudonyms) == (6, 2, 5)  # 1 patient, 2x(study, uid)
    assert _mentions(index, store, first, "PAT-1") == [] and _mentions(index, store, second, "PAT-1") == []
    assert {p for p in store.root.rglob("*") if p.is_file()} == files_before
    for model in (Job, Result, Delivery, Hl7Message, WorklistItem, PriorityChange, Feedback, MonitoredResult):
        assert _rows(index, model) == 1, model.__name__
    with index.session() as session:
        assert session.get(Study, other) is not None
        assert len(session.scalars(select(Pseudonym)).all()) == 3
        (audit,) = session.scalars(select(Erasure)).all()
        assert (audit.scope, audit.requested_by, audit.studies, audit.instances, audit.forced) == (
            ErasureScope.PATIENT,
            "dpo",
            2,
            6,
            False,
        )
        assert audit.finished_at is not None and audit.bytes > 0
        assert "PAT-1" not in str(vars(audit)) and first not in str(vars(audit))
        assert set(session.scalars(select(AuditEvent.study_uid))) == {other}


def test_a_study_with_work_in_progress_is_refused_unless_forced(node: tuple[Index, InstanceStore]) -> None:
    index, store = node
    busy = _study(index, store, "PAT-3", state=StudyState.PROCESSING)
    files = sorted(p for p in store.root.rglob("*") if p.is_file())

    with pytest.raises(ErasureRefused, match=rf"1 study\(ies\) have work in progress.*{busy} \(PROCESSING\)"):
        erase(index, store, requested_by="dpo", study_uid=busy)
    assert sorted(p for p in store.root.rglob("*") if p.is_file()) == files
    assert _rows(index, Erasure) == 0

    report = erase(index, store, requested_by="dpo", study_uid=busy, force=True)
    assert report.studies == [busy] and report.instances == 3
    assert _mentions(index, store, busy, "no patient here") == []
    with index.session() as session:
        assert session.scalars(select(Erasure.forced)).one() is True
        # A study erase drops the study's UID pseudonyms, not the patient's (other studies may use it).
        assert session.scalars(select(Pseudonym.kind)).all() == [PseudonymKind.PATIENT]


def test_an_erasure_a_crash_interrupted_is_finished(
    node: tuple[Index, InstanceStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    index, store = node
    gone = _study(index, store, "PAT-4")
    monkeypatch.setattr(erasure, "_finish", lambda *args: (0, 0, 0))  # crash after the mark
    erase(index, store, requested_by="dpo", study_uid=gone)
    monkeypatch.undo()
    with index.session() as session:
        study = session.get(Study, gone)
        assert study is not None and study.erasure_id is not None  # marked, files still there
    assert any(store.root.rglob("*.dcm"))

    assert resume_erasures(index, store) == [1]
    assert _mentions(index, store, gone, "no patient here") == []
    with index.session() as session:
        assert session.scalars(select(Erasure.instances)).one() == 3


def test_erase_command(
    node: tuple[Index, InstanceStore], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    index, store = node
    kept, busy = _study(index, store, "PAT-5"), _study(index, store, "PAT-6", state=StudyState.ROUTED)
    config = config_for(store, tmp_path, monkeypatch)
    runner = CliRunner()
    refused = runner.invoke(cli.app, ["erase", "--patient-id", "PAT-6", "--config", str(config)])
    assert refused.exit_code == 1 and "work in progress" in refused.output and "--force" in refused.output
    done = runner.invoke(
        cli.app,
        ["erase", "--patient-id", "PAT-6", "--force", "--requested-by", "ticket 42", "--config", str(config)],
    )
    assert done.exit_code == 0, done.output
    assert "requested by ticket 42): 1 study(ies), 3 instance(s)" in done.output
    assert _mentions(index, store, busy, "PAT-6") == []
    unknown = runner.invoke(cli.app, ["erase", "--patient-id", "NOBODY", "--config", str(config)])
    assert unknown.exit_code == 1 and "no stored study names that patient ID" in unknown.output
    with index.session() as session:
        assert session.get(Study, kept) is not None
