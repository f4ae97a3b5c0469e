"""Dead-lettered deliveries: listed, and sent again on request (the API twin of `radrouter deliveries`)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Request
from pydantic import BaseModel

from radrouter.router.deliver.dead_letter import dead_letters, retry_deliveries
from radrouter.router.dispatch.contract import celery_app
from radrouter.web.access import Principal, Role, require

router = APIRouter(prefix="/api/deliveries", tags=["deliveries"], dependencies=[require(Role.ADMIN)])


class RetryRequest(BaseModel):
    """Which dead letters to send again; none named means all of them."""

    ids: list[int] | None = None


@router.get("/dead-letter")
def list_dead_letters(request: Request) -> list[dict[str, Any]]:
    return dead_letters(request.app.state.index)


@router.post("/retry")
def retry(
    request: Request, by: Annotated[Principal, require(Role.ADMIN)], body: RetryRequest | None = None
) -> dict[str, list[int]]:
    settings = request.app.state.settings
    ids = body.ids if body is not None else None
    return {"retried": retry_deliveries(request.app.state.index, celery_app(settings), ids, by=by.actor)}
