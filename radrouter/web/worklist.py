"""The worklist's web side: the reading list as JSON in pages, its change counter, reads, the page.

The page and ``/api/worklist`` show patient identity (read from the stored header when served).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body, HTTPException, Query, Request, Response
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, Field

from radrouter.config.rules import Priority
from radrouter.config.settings import Settings
from radrouter.monitoring.feedback import record_study_verdict
from radrouter.storage.index import Index, Verdict, utcnow
from radrouter.web.access import Principal, Role, current_user, require
from radrouter.web.layout import render
from radrouter.worklist.listing import ListFilter, listed_modalities
from radrouter.worklist.reading_list import AlreadyRead, ReadingList

MAX_PAGE = 500


class ReadRequest(BaseModel):
    """What a radiologist says on reading: optionally, whether they agree with the AI finding."""

    verdict: Verdict | None = Field(None, description="agree or disagree with the AI.")


def worklist_router(settings: Settings, index: Index, clock: Callable[[], datetime] = utcnow) -> APIRouter:
    reading_list = ReadingList(settings, index, clock)
    router = APIRouter()

    viewer = [require(Role.VIEWER)]

    @router.get("/api/worklist", dependencies=viewer)
    def worklist(
        response: Response,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
        offset: Annotated[int, Query(ge=0)] = 0,
        modality: Annotated[str | None, Query(max_length=16)] = None,
        priority: Priority | None = None,
    ) -> list[dict[str, Any]]:
        """Unread studies in reading order, one page: priority, reason, seconds waited, identity.

        ``X-Total-Count`` says how many match the filter; ``X-Worklist-Version`` is the change
        counter this page was read at (poll ``/api/worklist/version`` to know when to read again).
        """
        page = reading_list.page(ListFilter(modality, priority), limit, offset)
        response.headers["X-Total-Count"] = str(page.total)
        response.headers["X-Worklist-Version"] = page.version
        return page.entries

    @router.get("/api/worklist/version", dependencies=viewer)
    def version() -> dict[str, str]:
        """A token that changes whenever the reading list or its order does: one aggregate query."""
        return {"version": reading_list.version()}

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

    @router.get("/worklist", response_class=HTMLResponse, dependencies=viewer)
    def worklist_page(request: Request) -> HTMLResponse:
        user = current_user(request)
        context = {
            "modalities": listed_modalities(index),
            "priorities": [p.value for p in Priority],
            "can_read": user is not None and user.role.grants(Role.RADIOLOGIST),
        }
        return render(request, "worklist.html", context)

    return router
