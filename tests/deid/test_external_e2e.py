"""A destination marked external, over the real network: a head CT with distinctive PHI is forwarded to
a second Orthanc (the "cloud"), which receives it de-identified; a result made there from the
pseudonymous copy is sent back to the node, which files it under the patient's real study.

The story runs on the session's node: its config file is edited (an external destination and a rule
for this test's studies) and put back at the end.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import datetime, timedelta
from io import BytesIO
from pathlib import Path
from typing import Any

import pydicom
import pytest
import yaml
from pydicom.uid import generate_uid

from radrouter.config.deidentification import Deidentification
from radrouter.deid.profile import Keys
from tests.services import CT_HEAD, Node, Orthanc, as_new_study, storescu, wait_until

HEAD_CT = sorted(p for p in CT_HEAD.iterdir() if p.name.startswith("I"))
KEY = "the-cloud-key-of-this-test"
PHI = {
    "PatientName": "DOE^JANE^DEID",
    "PatientID": "MRN-DEID-4711",
    "PatientBirthDate": "19610314",
    "AccessionNumber": "ACC-DEID-1",
    "StudyDate": "20240229",
    "StudyDescription": "deid external test",
}
OPTIONS = Deidentification.model_validate({"key": KEY, "dates": "shift", "max_date_shift_days": 90})


def replace_atomically(path: Path, text: str) -> None:
    temporary = path.with_suffix(".editing")
    temporary.write_text(text)
    os.replace(temporary, path)


@pytest.fixture(scope="module")
def cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Orthanc]:
    external = Orthanc(tmp_path_factory.mktemp("cloud"))
    external.start()
    yield external
    external.stop()


@pytest.fixture(scope="module")
def external_config(node: Node, cloud: Orthanc) -> Iterator[None]:
    original = node.config_path.read_text()
    config = yaml.safe_load(original)
    config["destinations"]["cloud"] = {
        "host": "127.0.0.1",
        "port": cloud.dicom_port,
        "ae_title": "CLOUD",
        "external": True,
        "deidentify": OPTIONS.model_dump(mode="json") | {"key": KEY},
    }
    config.setdefault("rules", []).append(
        {
            "name": "deid-to-cloud",
            "match": {"StudyDescription": PHI["StudyDescription"]},
            "forward_to": ["cloud"],
        }
    )
    replace_atomically(node.config_path, yaml.safe_dump(config))
    yield
    replace_atomically(node.config_path, original)


def settled(node: Node, study_uid: str) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        response = node.http.get(f"{node.api}/studies/{study_uid}")
        study = response.json() if response.status_code == 200 else None
        return study if study and study["state"] in ("DONE", "FAILED") else None

    study: dict[str, Any] = wait_until(done, 180, f"study {study_uid} settled", interval_s=0.3)
    return study


@pytest.fixture(scope="module")
def sent(node: Node, external_config: None, tmp_path_factory: pytest.TempPathFactory) -> list[list[Path]]:
    """Two studies of the same patient, each forwarded to the cloud."""
    studies = []
    for _ in range(2):
        files = as_new_study(HEAD_CT, tmp_path_factory.mktemp("phi"), **PHI)
        result = storescu(node.port, files)
        assert result.returncode == 0, result.stderr
        study = settled(node, str(pydicom.dcmread(files[0]).StudyInstanceUID))
        assert study["state"] == "DONE", study["reason"]
        assert [(f["destination"], f["state"]) for f in study["forwards"]] == [("cloud", "DELIVERED")]
        delivered = [e for e in study["events"] if e["hop"] == "delivered"][-1]
        assert delivered["detail"]["deidentified"] is True
        studies.append(files)
    return studies


def in_cloud(cloud: Orthanc, original_study_uid: str) -> list[pydicom.Dataset]:
    (series,) = cloud.find_series(Keys(OPTIONS).uid(original_study_uid), "CT")
    return [pydicom.dcmread(BytesIO(data)) for data in cloud.instance_files(series)]


def test_the_cloud_receives_the_studies_deidentified(sent: list[list[Path]], cloud: Orthanc) -> None:
    keys = Keys(OPTIONS)
    pseudonyms = set()
    for files in sent:
        originals = {str(ds.SOPInstanceUID): ds for ds in map(pydicom.dcmread, files)}
        copies = in_cloud(cloud, str(next(iter(originals.values())).StudyInstanceUID))
        assert len(copies) == len(originals)
        for copy in copies:
            text = str(copy)
            for value in (
                PHI["PatientName"],
                PHI["PatientID"],
                PHI["PatientBirthDate"],
                PHI["AccessionNumber"],
            ):
                assert value not in text
            pseudonyms.add(str(copy.PatientID))
            original = next(o for uid, o in originals.items() if keys.uid(uid) == copy.SOPInstanceUID)
            assert (
                copy.SeriesInstanceUID == keys.uid(original.SeriesInstanceUID) != original.SeriesInstanceUID
            )
            assert copy.PixelData == original.PixelData
            shift = timedelta(days=keys.date_shift_days(PHI["PatientID"]))
            assert copy.StudyDate == (datetime(2024, 2, 29) - shift).strftime("%Y%m%d")
            assert copy.PatientIdentityRemoved == "YES"
    assert pseudonyms == {keys.patient(PHI["PatientID"])}  # one patient, one pseudonym, across studies


def test_a_result_from_the_cloud_lands_in_the_real_study(
    sent: list[list[Path]], cloud: Orthanc, node: Node, tmp_path: Path
) -> None:
    original = pydicom.dcmread(sent[0][0])
    derived = in_cloud(cloud, str(original.StudyInstanceUID))[0]
    derived.SeriesInstanceUID, derived.SOPInstanceUID = generate_uid(), generate_uid()
    derived.file_meta.MediaStorageSOPInstanceUID = derived.SOPInstanceUID
    derived.SeriesDescription, derived.SeriesNumber = "made in the cloud", 901
    derived.save_as(tmp_path / "derived.dcm", enforce_file_format=True)
    result = storescu(node.port, [tmp_path / "derived.dcm"], calling_ae="CLOUD")
    assert result.returncode == 0, result.stderr

    def filed() -> list[Path]:
        return list((node.workdir / "data" / "instances" / str(original.StudyInstanceUID)).glob("*/*.dcm"))

    wait_until(lambda: len(filed()) == len(sent[0]) + 1, 60, "the derived instance filed in the real study")
    stored = pydicom.dcmread(
        next(p for p in filed() if p.parent.name == derived.SeriesInstanceUID), stop_before_pixels=True
    )
    for keyword in ("PatientName", "PatientID", "PatientBirthDate", "AccessionNumber", "StudyDate"):
        assert str(stored[keyword].value) == PHI[keyword], keyword
    assert stored.FrameOfReferenceUID == original.FrameOfReferenceUID
    assert "PatientIdentityRemoved" not in stored
    wait_until(
        lambda: any(
            s["series_uid"] == derived.SeriesInstanceUID
            for s in node.study(original.StudyInstanceUID)["series"]
        ),
        60,
        "the derived series indexed in the real study",
    )
