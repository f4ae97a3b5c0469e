"""STOW-RS (PS3.18 10.5): a worker on another machine hands back the results of the job it was given.

Each object needs the job's credential (``Authorization: Bearer <credential>``, issued with the job's
task) and passes ``result_integrity`` against the index before it is written where the node's delivery
reads it. Every refusal is in the audit trail of the study it named, with the reason, and in the
answer: per object a Failure Reason, and the reasons in words in ``Warning`` headers (PS3.18 8.6.4).
"""

from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path
from typing import Any

import pydicom
from fastapi import APIRouter, HTTPException, Request, Response
from pydicom.errors import InvalidDicomError
from starlette.concurrency import run_in_threadpool

from radrouter.router.dispatch.job_credential import JobCredentials
from radrouter.storage.index import Hop, Index, Job, Study
from radrouter.storage.store import InstanceStore, InvalidUID
from radrouter.web.result_integrity import (
    FailureReason,
    Offered,
    Refusal,
    check_result,
    job_of,
)
from radrouter.web.spooled_parts import TooLarge, spool_parts

log = logging.getLogger(__name__)

#: What a node at its free-space reserve tells a worker to wait before sending again.
RETRY_AFTER_S = 60


def _referenced(sop_class: str, sop_uid: str, url: str | None = None) -> dict[str, Any]:
    item: dict[str, Any] = {
        "00081150": {"vr": "UI", "Value": [sop_class]},
        "00081155": {"vr": "UI", "Value": [sop_uid]},
    }
    if url:
        item["00081190"] = {"vr": "UR", "Value": [url]}
    return item


def _bearer(request: Request) -> str | None:
    scheme, _, credential = request.headers.get("authorization", "").partition(" ")
    return credential.strip() if scheme.lower() == "bearer" else None


def stow_router(
    index: Index,
    store: InstanceStore,
    credentials: JobCredentials,
    max_request_bytes: int,
    reserve_bytes: int,
) -> APIRouter:
    router = APIRouter(prefix="/dicomweb", tags=["dicomweb"])

    def audit_refusal(offered: Offered, job_id: int | None, refusal: Refusal, client: str) -> None:
        """In the trail of the study the object named, else of the credential's job's study."""
        with index.session() as session:
            study_uid: str | None = offered.study_uid
            if session.get(Study, offered.study_uid) is None:
                job = session.get(Job, job_id) if job_id is not None else None
                study_uid = job.study_uid if job is not None else None
            if study_uid is None:
                log.warning("STOW-RS refused %s from %s: %s", offered.sop_uid, client, refusal.reason)
                return
            index.record_event(
                session,
                study_uid,
                Hop.STORE_REFUSED,
                via="STOW-RS",
                sop_uid=offered.sop_uid,
                named_study_uid=offered.study_uid,
                job=job_id,
                reason=refusal.reason,
                client=client,
            )

    def store_one(part: Path, credential: str | None, client: str) -> tuple[Offered | None, Refusal | None]:
        """Store one object (a part spooled to disk), or say why not; what it was, for the answer."""
        try:
            offered = Offered.of(pydicom.dcmread(part, stop_before_pixels=True))
        except (InvalidDicomError, AttributeError, ValueError, EOFError):
            log.warning("STOW-RS refused a part from %s: not a readable DICOM object", client)
            return None, Refusal(400, FailureReason.CANNOT_UNDERSTAND, "not a readable DICOM object")
        job_id: int | None = None
        try:
            job_id = job_of(credentials, credential)
            with index.session() as session:
                check_result(session, job_id, offered)
            path = store.result_path(offered.study_uid, offered.sop_uid)
        except InvalidUID as error:
            refusal = Refusal(409, FailureReason.DATASET_MISMATCH, str(error))
        except Refusal as error:
            refusal = error
        else:
            store.place(path, part)
            return offered, None
        audit_refusal(offered, job_id, refusal, client)
        return offered, refusal

    @router.post("/studies")
    async def store_results(request: Request) -> Response:
        declared = request.headers.get("content-length")
        size = int(declared) if declared and declared.isdigit() else 0
        if store.free_bytes() - size < reserve_bytes:
            raise HTTPException(
                503,
                "the node's disk is at its free-space reserve (storage.free_space_reserve_mb): try later",
                headers={"Retry-After": str(RETRY_AFTER_S)},
            )
        spools = store.root / ".receiving"
        spools.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=spools, prefix="stow-") as folder:
            try:
                parts = await spool_parts(
                    request.headers.get("content-type", ""),
                    size if declared else None,
                    request.stream(),
                    Path(folder),
                    max_request_bytes,
                )
            except TooLarge:
                raise HTTPException(
                    413, f"the request is larger than web.max_request_mb ({max_request_bytes // 2**20} MB)"
                ) from None
            # The checks read the index and the files: off the event loop, as FastAPI runs sync routes.
            return await run_in_threadpool(answer, request, parts)

    def answer(request: Request, parts: list[Path]) -> Response:
        credential = _bearer(request)
        client = request.client.host if request.client else ""
        stored: list[dict[str, Any]] = []
        failed: list[dict[str, Any]] = []
        refusals: list[Refusal] = []
        for part in parts:
            offered, refusal = store_one(part, credential, client)
            if refusal is not None:
                refusals.append(refusal)
                item = _referenced(offered.sop_class_uid, offered.sop_uid) if offered is not None else {}
                failed.append({**item, "00081197": {"vr": "US", "Value": [int(refusal.failure)]}})
            elif offered is not None:
                url = f"{request.base_url}dicomweb/studies/{offered.study_uid}"
                stored.append(_referenced(offered.sop_class_uid, offered.sop_uid, url))
        body: dict[str, Any] = {}
        if stored:
            body["00081199"] = {"vr": "SQ", "Value": stored}
        if failed:
            body["00081198"] = {"vr": "SQ", "Value": failed}
        if not refusals:
            status = 200
        elif stored:
            status = 202
        else:  # refused alone: forbidden when any object was not this credential's to store
            status = 403 if any(r.http_status == 403 for r in refusals) else 409
        warnings = [f'299 radrouter "{r.reason}"' for r in refusals]
        response = Response(content=json.dumps(body), status_code=status, media_type="application/dicom+json")
        for warning in warnings:
            response.headers.append("Warning", warning)
        return response

    return router
