"""The audit trail: every hop of every study (received from whom, routed by which rules, inferred with
which model version, delivered where and how), queryable per study and exportable as JSON or CSV."""

from __future__ import annotations

import csv
import io
import json
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Query, Request, Response
from sqlalchemy import select

from radrouter.storage.accounts import access_events
from radrouter.storage.index import AuditEvent, Hop, Study, utc_iso
from radrouter.web.access import Role, require

router = APIRouter(prefix="/api", tags=["audit"])

COLUMNS = ("id", "study_uid", "hop", "at", "detail")
MAX_PAGE = 10_000


def _row(event: AuditEvent) -> dict[str, Any]:
    return {
        "id": event.id,
        "study_uid": event.study_uid,
        "hop": event.hop.value,
        "at": utc_iso(event.at),
        "detail": event.detail,
    }


@router.get("/studies/{study_uid}/audit", dependencies=[require(Role.VIEWER)])
def study_audit(request: Request, study_uid: str) -> list[dict[str, Any]]:
    with request.app.state.index.session() as session:
        if session.get(Study, study_uid) is None:
            raise HTTPException(status_code=404, detail=f"no study {study_uid}")
        events = session.scalars(
            select(AuditEvent).where(AuditEvent.study_uid == study_uid).order_by(AuditEvent.id)
        ).all()
        return [_row(event) for event in events]


@router.get("/audit", response_model=None, dependencies=[require(Role.ADMIN)])
def export(
    request: Request,
    response: Response,
    since: datetime | None = None,
    until: datetime | None = None,
    study_uid: str | None = None,
    hop: Hop | None = None,
    after: Annotated[int | None, Query(ge=0, description="Events after this id (the cursor).")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 1000,
    format: Literal["json", "csv"] = "json",
) -> list[dict[str, Any]] | Response:
    """Events in a time window (UTC), oldest first, ``limit`` at a time; ``format=csv`` for a
    spreadsheet or an archive. A full page carries ``X-Next-After``: pass it as ``after`` for the next."""
    query = select(AuditEvent).order_by(AuditEvent.id).limit(limit)
    if after is not None:
        query = query.where(AuditEvent.id > after)
    if hop is not None:
        query = query.where(AuditEvent.hop == hop)
    if since is not None:
        query = query.where(AuditEvent.at >= since.replace(tzinfo=None))
    if until is not None:
        query = query.where(AuditEvent.at < until.replace(tzinfo=None))
    if study_uid is not None:
        query = query.where(AuditEvent.study_uid == study_uid)
    with request.app.state.index.session() as session:
        rows = [_row(event) for event in session.scalars(query).all()]
    cursor = {"X-Next-After": str(rows[-1]["id"])} if len(rows) == limit else {}
    if format == "json":
        response.headers.update(cursor)
        return rows
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS)
    writer.writeheader()
    for row in rows:
        writer.writerow({**row, "detail": json.dumps(row["detail"], sort_keys=True)})
    return Response(
        buffer.getvalue(),
        media_type="text/csv",
        headers={"Content-Disposition": 'attachment; filename="radrouter-audit.csv"', **cursor},
    )


@router.get("/audit/access", dependencies=[require(Role.ADMIN)])
def access(request: Request, since: datetime | None = None) -> list[dict[str, Any]]:
    """Sign-ins, failed sign-ins, lock-outs and sign-outs, oldest first (who, when, from where)."""
    return access_events(request.app.state.index, since.replace(tzinfo=None) if since else None)
