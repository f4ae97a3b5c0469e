"""DICOMweb for workers on other machines: WADO-RS serves stored instances, STOW-RS takes results back.

Only what a remote worker needs (PS3.18 10.4 Retrieve and 10.5 Store, multipart/related with
application/dicom parts, the instances byte for byte as they were received). STOW-RS accepts objects
of studies the node knows and files them as results, so delivery, audit and triage stay on the node.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from email.parser import BytesParser
from email.policy import HTTP
from io import BytesIO
from pathlib import Path
from typing import Any

import pydicom
from fastapi import APIRouter, HTTPException, Request, Response
from fastapi.responses import StreamingResponse
from pydicom.errors import InvalidDicomError
from sqlalchemy import select

from radrouter.storage.index import Index, Instance, Series, Study
from radrouter.storage.store import InstanceStore, InvalidUID
from radrouter.web.access import Role, require

DICOM = "application/dicom"
EXPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2.1"


def _acceptable(accept: str, stored: set[str]) -> bool:
    """Instances go out as received, so the client must accept their transfer syntaxes (or ``*``).

    Without a transfer-syntax parameter PS3.18 8.7.3.5.2 means Explicit VR Little Endian.
    """
    asked = set(re.findall(r'transfer-syntax="?([0-9.*]+)', accept))
    return "*" in asked or stored <= (asked or {EXPLICIT_VR_LITTLE_ENDIAN})


def _multipart(paths: list[Path], transfer_syntaxes: list[str]) -> StreamingResponse:
    boundary = uuid.uuid4().hex

    def parts() -> Iterator[bytes]:
        for path, syntax in zip(paths, transfer_syntaxes, strict=True):
            yield (f"--{boundary}\r\nContent-Type: {DICOM}; transfer-syntax={syntax}\r\n\r\n".encode())
            yield path.read_bytes()
            yield b"\r\n"
        yield f"--{boundary}--\r\n".encode()

    return StreamingResponse(parts(), media_type=f'multipart/related; type="{DICOM}"; boundary={boundary}')


def _dicom_parts(content_type: str, body: bytes) -> list[bytes]:
    """The application/dicom parts of a multipart/related body, read by the standard library's MIME parser."""
    if not content_type.startswith("multipart/related"):
        raise HTTPException(415, f'STOW-RS takes multipart/related; type="{DICOM}", not {content_type}')
    message = BytesParser(policy=HTTP).parsebytes(
        b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + body
    )
    if not message.is_multipart():
        raise HTTPException(400, "the multipart body has no parts (boundary missing or wrong)")
    parts = [part.get_payload(decode=True) for part in message.iter_parts()]
    return [part for part in parts if isinstance(part, bytes)]


def _referenced(sop_class: str, sop_uid: str, url: str | None = None) -> dict[str, Any]:
    item: dict[str, Any] = {
        "00081150": {"vr": "UI", "Value": [sop_class]},
        "00081155": {"vr": "UI", "Value": [sop_uid]},
    }
    if url:
        item["00081190"] = {"vr": "UR", "Value": [url]}
    return item


def dicomweb_router(index: Index, store: InstanceStore) -> APIRouter:
    router = APIRouter(prefix="/dicomweb", tags=["dicomweb"])

    def retrieve(request: Request, *conditions: Any) -> StreamingResponse:
        with index.session() as session:
            rows = session.execute(
                select(Instance.path, Instance.transfer_syntax_uid)
                .join(Series)
                .where(*conditions)
                .order_by(Instance.path)
            ).all()
        if not rows:
            raise HTTPException(404, "no such instances on this node")
        stored = {syntax for _, syntax in rows}
        if not _acceptable(request.headers.get("accept", ""), stored):
            raise HTTPException(
                406, f"instances are served as received, in {sorted(stored)}: accept transfer-syntax=*"
            )
        return _multipart([Path(path) for path, _ in rows], [syntax for _, syntax in rows])

    viewer = [require(Role.VIEWER)]

    @router.get("/studies/{study_uid}", dependencies=viewer)
    def retrieve_study(request: Request, study_uid: str) -> StreamingResponse:
        return retrieve(request, Series.study_uid == study_uid)

    @router.get("/studies/{study_uid}/series/{series_uid}", dependencies=viewer)
    def retrieve_series(request: Request, study_uid: str, series_uid: str) -> StreamingResponse:
        return retrieve(request, Series.study_uid == study_uid, Series.uid == series_uid)

    @router.get("/studies/{study_uid}/series/{series_uid}/instances/{sop_uid}", dependencies=viewer)
    def retrieve_instance(
        request: Request, study_uid: str, series_uid: str, sop_uid: str
    ) -> StreamingResponse:
        return retrieve(
            request, Series.study_uid == study_uid, Series.uid == series_uid, Instance.sop_uid == sop_uid
        )

    @router.post("/studies", dependencies=[require(Role.ADMIN)])  # results of a remote worker
    async def store_results(request: Request) -> Response:
        parts = _dicom_parts(request.headers.get("content-type", ""), await request.body())
        stored: list[dict[str, Any]] = []
        failed: list[dict[str, Any]] = []
        for data in parts:
            try:
                header = pydicom.dcmread(BytesIO(data), stop_before_pixels=True)
                study_uid, sop_uid, sop_class = (
                    header.StudyInstanceUID,
                    header.SOPInstanceUID,
                    header.SOPClassUID,
                )
            except (InvalidDicomError, AttributeError, ValueError):
                failed.append({"00081197": {"vr": "US", "Value": [0xC000]}})  # cannot understand
                continue
            with index.session() as session:
                known = session.get(Study, str(study_uid)) is not None
            try:
                if not known:
                    raise InvalidUID(f"study {study_uid} is not on this node")
                path = store.result_path(str(study_uid), str(sop_uid))
            except InvalidUID:
                failed.append(
                    {**_referenced(str(sop_class), str(sop_uid)), "00081197": {"vr": "US", "Value": [0xA900]}}
                )
                continue
            store.write(path, data)
            stored.append(
                _referenced(str(sop_class), str(sop_uid), f"{request.base_url}dicomweb/studies/{study_uid}")
            )
        body: dict[str, Any] = {}
        if stored:
            body["00081199"] = {"vr": "SQ", "Value": stored}
        if failed:
            body["00081198"] = {"vr": "SQ", "Value": failed}
        status = 200 if not failed else (202 if stored else 409)
        return Response(content=json.dumps(body), status_code=status, media_type="application/dicom+json")

    return router
