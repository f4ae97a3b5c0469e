"""A SOP Instance UID sent again with another patient or study, over the real network (dcmtk's
storescu to the SCP): kept apart, replaced or refused as ``storage.conflicting_resend`` says, in both
studies' audit trails, and never a file left on disk that the index does not know."""

from __future__ import annotations

from pathlib import Path

import pydicom
import pytest
from pydicom.uid import generate_uid
from sqlalchemy import select

from radrouter.storage.index import AuditEvent, Hop, Instance, ResentInstance, Series
from tests.router.receive.test_scp import RunningSCP
from tests.services import CT_HEAD, storescu

SLICES = [CT_HEAD / "I10", CT_HEAD / "I20"]


def _copy(folder: Path, source: Path, study_uid: str, series_uid: str, sop_uid: str, patient: str) -> Path:
    """A real CT slice under the given UIDs and Patient ID."""
    dataset = pydicom.dcmread(source)
    dataset.StudyInstanceUID, dataset.SeriesInstanceUID, dataset.PatientID = study_uid, series_uid, patient
    dataset.SOPInstanceUID = dataset.file_meta.MediaStorageSOPInstanceUID = sop_uid
    path = folder / f"{len(list(folder.iterdir()))}.dcm"
    dataset.save_as(path, enforce_file_format=True)
    return path


@pytest.fixture
def first(tmp_path: Path) -> dict[str, str]:
    """Study 1 of patient 1, two slices, ready to send; the UID that will come back is ``sop_uid``."""
    folder = tmp_path / "send"
    folder.mkdir()
    ids = {"study_uid": generate_uid(), "series_uid": generate_uid(), "sop_uid": generate_uid()}
    for source, sop_uid in zip(SLICES, (ids["sop_uid"], generate_uid()), strict=True):
        _copy(folder, source, ids["study_uid"], ids["series_uid"], sop_uid, "PATIENT-1")
    return {**ids, "folder": str(folder)}


def _send(scp: RunningSCP, files: list[Path]) -> str:
    sent = storescu(scp.settings.node.port, files)
    assert sent.returncode in (0, 1), sent.stderr  # 1: a store was refused (its status is logged)
    return sent.stderr


def _resent_trail(scp: RunningSCP, study_uid: str) -> list[dict[str, object]]:
    with scp.index.session() as session:
        events = session.scalars(
            select(AuditEvent).where(AuditEvent.study_uid == study_uid, AuditEvent.hop == Hop.RESENT)
        ).all()
        return [dict(event.detail) for event in events]


def _no_unindexed_file(scp: RunningSCP, root: Path) -> None:
    with scp.index.session() as session:
        indexed = set(session.scalars(select(Instance.path))) | set(
            session.scalars(select(ResentInstance.path))
        )
    on_disk = {str(path) for path in root.rglob("*.dcm") if "results" not in path.parts}
    assert on_disk == indexed


def _second_study(tmp_path: Path, first: dict[str, str], same_study: bool = False) -> list[Path]:
    """Patient 2: one slice of its own, then one that reuses the first study's SOP Instance UID."""
    folder = tmp_path / "again"
    folder.mkdir()
    study_uid = first["study_uid"] if same_study else generate_uid()
    series_uid = first["series_uid"] if same_study else generate_uid()
    own = [] if same_study else [_copy(folder, SLICES[1], study_uid, series_uid, generate_uid(), "PATIENT-2")]
    return [*own, _copy(folder, SLICES[0], study_uid, series_uid, first["sop_uid"], "PATIENT-2")]


@pytest.mark.parametrize("same_study", [False, True], ids=["another-study", "same-study-another-patient"])
def test_keep_first_by_default_keeps_the_resent_copy_apart(
    tmp_path: Path, first: dict[str, str], same_study: bool
) -> None:
    root = tmp_path / "data"
    with RunningSCP(root) as scp:
        _send(scp, sorted(Path(first["folder"]).iterdir()))
        held = root / "instances" / first["study_uid"] / first["series_uid"] / f"{first['sop_uid']}.dcm"
        original = held.read_bytes()
        again = _second_study(tmp_path, first, same_study)
        assert "Received Store Response (Success)" in _send(scp, again)

        assert held.read_bytes() == original
        with scp.index.session() as session:
            instance = session.get(Instance, first["sop_uid"])
            assert instance is not None and instance.series.study_uid == first["study_uid"]
            [kept] = session.scalars(select(ResentInstance)).all()
            assert pydicom.dcmread(kept.path).PatientID == "PATIENT-2"
            resent_study = kept.study_uid
        trails = [_resent_trail(scp, first["study_uid"]), _resent_trail(scp, resent_study)]
        for trail in trails:
            assert [(e["policy"], e["conflict"]) for e in trail] == [
                ("keep_first", "another patient" if same_study else "another study")
            ]
        _no_unindexed_file(scp, root)


def test_replace_moves_the_instance_and_removes_the_first_file(tmp_path: Path, first: dict[str, str]) -> None:
    root = tmp_path / "data"
    with RunningSCP(root, storage={"conflicting_resend": "replace"}) as scp:
        _send(scp, sorted(Path(first["folder"]).iterdir()))
        again = _second_study(tmp_path, first)
        _send(scp, again)
        with scp.index.session() as session:
            instance = session.get(Instance, first["sop_uid"])
            assert instance is not None
            new_study = instance.series.study_uid
            assert new_study != first["study_uid"]
            assert pydicom.dcmread(instance.path).PatientID == "PATIENT-2"
        assert not (
            root / "instances" / first["study_uid"] / first["series_uid"] / f"{first['sop_uid']}.dcm"
        ).exists()
        assert [e["policy"] for e in _resent_trail(scp, first["study_uid"])] == ["replace"]
        assert [e["policy"] for e in _resent_trail(scp, new_study)] == ["replace"]
        _no_unindexed_file(scp, root)


def test_reject_refuses_the_resend_and_stores_nothing(tmp_path: Path, first: dict[str, str]) -> None:
    root = tmp_path / "data"
    with RunningSCP(root, storage={"conflicting_resend": "reject"}) as scp:
        _send(scp, sorted(Path(first["folder"]).iterdir()))
        held = root / "instances" / first["study_uid"] / first["series_uid"] / f"{first['sop_uid']}.dcm"
        original = held.read_bytes()
        answer = _send(scp, _second_study(tmp_path, first))
        assert "Received Store Response (Unknown Status: 0x111)" in answer  # Duplicate SOP Instance
        assert held.read_bytes() == original
        with scp.index.session() as session:
            assert len(session.scalars(select(Instance)).all()) == 3  # two of study 1, one of study 2
        assert [e["policy"] for e in _resent_trail(scp, first["study_uid"])] == ["reject"]
        _no_unindexed_file(scp, root)


def test_the_same_instance_resent_to_another_series_leaves_no_orphan(
    tmp_path: Path, first: dict[str, str]
) -> None:
    """Same patient and study: replaced as before (no conflict), and the first file goes with it."""
    root = tmp_path / "data"
    with RunningSCP(root) as scp:
        _send(scp, sorted(Path(first["folder"]).iterdir()))
        folder = tmp_path / "moved"
        folder.mkdir()
        moved = _copy(folder, SLICES[0], first["study_uid"], generate_uid(), first["sop_uid"], "PATIENT-1")
        _send(scp, [moved])
        with scp.index.session() as session:
            instance = session.get(Instance, first["sop_uid"])
            assert instance is not None and instance.series_uid != first["series_uid"]
            assert session.get(Series, instance.series_uid) is not None
            assert session.scalars(select(ResentInstance)).all() == []
        assert _resent_trail(scp, first["study_uid"]) == []
        _no_unindexed_file(scp, root)
