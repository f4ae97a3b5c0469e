"""DICOMweb for workers on other machines: WADO-RS serves stored instances (STOW-RS, which takes
results back, is ``stow.py``).

Only what a remote worker needs (PS3.18 10.4 Retrieve, multipart/related with application/dicom
parts, the instances byte for byte as they were received).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import StreamingResponse
from sqlalchemy import select

from radrouter.storage.index import Index, Instance, Series
from radrouter.storage.store import InstanceStore
from radrouter.web.access import Role, require

DICOM = "application/dicom"
EXPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2.1"
_CHUNK = 1 << 20


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
            with path.open("rb") as handle:  # from disk in pieces: a 1.5 GB instance is not read whole
                while chunk := handle.read(_CHUNK):
                    yield chunk
            yield b"\r\n"
        yield f"--{boundary}--\r\n".encode()

    return StreamingResponse(parts(), media_type=f'multipart/related; type="{DICOM}"; boundary={boundary}')


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

    return router
