"""The node's DICOMweb: WADO-RS returns instances byte for byte (STOW-RS: test_stow.py)."""

from __future__ import annotations

from email.parser import BytesParser
from email.policy import HTTP
from pathlib import Path

import pydicom
import pytest
from fastapi.testclient import TestClient

from radrouter.config.settings import Settings
from radrouter.storage.index import Index
from radrouter.storage.ingest import record_instance
from radrouter.web.app import create_app
from tests.access import token_client
from tests.router.route.test_study_router import received  # a ReceivedInstance from a file's header
from tests.services import MPRAGE

FILES = sorted(MPRAGE.glob("*.dcm"))[:3]
ANY_SYNTAX = 'multipart/related; type="application/dicom"; transfer-syntax=*'


@pytest.fixture
def client(tmp_path: Path) -> TestClient:
    settings = Settings(storage={"root": tmp_path})
    index = Index(settings.storage.resolved_index_url())
    for path in FILES:
        record_instance(index, received(path))
    return token_client(create_app(settings, index), index)


def _parts(content_type: str, body: bytes) -> list[bytes]:
    message = BytesParser(policy=HTTP).parsebytes(f"Content-Type: {content_type}\r\n\r\n".encode() + body)
    return [part.get_payload(decode=True) for part in message.iter_parts()]


def test_wado_rs_returns_the_series_as_received(client: TestClient) -> None:
    header = pydicom.dcmread(FILES[0], stop_before_pixels=True)
    url = f"/dicomweb/studies/{header.StudyInstanceUID}/series/{header.SeriesInstanceUID}"
    response = client.get(url, headers={"Accept": ANY_SYNTAX})
    assert response.status_code == 200
    assert sorted(_parts(response.headers["content-type"], response.content)) == sorted(
        path.read_bytes() for path in FILES
    )
    one = client.get(f"{url}/instances/{header.SOPInstanceUID}", headers={"Accept": ANY_SYNTAX})
    assert _parts(one.headers["content-type"], one.content) == [FILES[0].read_bytes()]
    assert client.get(f"{url}/instances/1.2.3", headers={"Accept": ANY_SYNTAX}).status_code == 404


def test_wado_rs_refuses_a_transfer_syntax_it_would_have_to_transcode(client: TestClient) -> None:
    header = pydicom.dcmread(FILES[0], stop_before_pixels=True)
    stored = str(header.file_meta.TransferSyntaxUID)
    url = f"/dicomweb/studies/{header.StudyInstanceUID}"
    other = "1.2.840.10008.1.2.4.90" if stored != "1.2.840.10008.1.2.4.90" else "1.2.840.10008.1.2.1"
    refused = client.get(
        url, headers={"Accept": f'multipart/related; type="application/dicom"; transfer-syntax={other}'}
    )
    assert refused.status_code == 406 and "transfer-syntax=*" in refused.json()["detail"]
    named = client.get(
        url, headers={"Accept": f'multipart/related; type="application/dicom"; transfer-syntax={stored}'}
    )
    assert named.status_code == 200
