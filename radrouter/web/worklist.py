"""The worklist's web side: the reading list as JSON, marking a study read, and the live page."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Body, HTTPException, Request
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, Field

from radrouter.config.settings import Settings
from radrouter.monitoring.feedback import record_study_verdict
from radrouter.storage.index import Index, Verdict, utcnow
from radrouter.web.access import Principal, Role, csrf_token, require
from radrouter.worklist.reading_list import AlreadyRead, ReadingList


class ReadRequest(BaseModel):
    """What a radiologist says on reading: optionally, whether they agree with the AI finding."""

    verdict: Verdict | None = Field(None, description="agree or disagree with the AI.")


def worklist_router(settings: Settings, index: Index, clock: Callable[[], datetime] = utcnow) -> APIRouter:
    reading_list = ReadingList(settings, index, clock)
    router = APIRouter()
    page = (Path(__file__).parent / "pages" / "worklist.html").read_text()

    @router.get("/api/worklist", dependencies=[require(Role.VIEWER)])
    def worklist() -> list[dict[str, Any]]:
        """Unread studies in reading order, with priority, reason and seconds waited."""
        return reading_list.in_reading_order()

    @router.post("/api/worklist/{study_uid}/read")
    def mark_read(
        study_uid: str,
        reader: Annotated[Principal, require(Role.RADIOLOGIST)],
        request: Annotated[ReadRequest | None, Body()] = None,
    ) -> dict[str, Any]:
        try:
            read = reading_list.mark_read(study_uid, request.verdict if request else None, reader.actor)
            if request and request.verdict:
                read["feedback"] = record_study_verdict(
                    index, study_uid, request.verdict, clock(), reader.actor
                )
            return read
        except LookupError as error:
            raise HTTPException(status_code=404, detail=str(error)) from error
        except AlreadyRead as error:
            raise HTTPException(status_code=409, detail=str(error)) from error

    @router.get("/worklist", response_class=HTMLResponse, dependencies=[require(Role.VIEWER)])
    def worklist_page(request: Request) -> str:
        return page.replace("{{ csrftoken }}", csrf_token(request))

    return router
