"""UPS-RS (PS3.18 11, the Worklist Service over DICOMweb): the node's AI jobs as UPS workitems that an
outside Task Performer can claim and a watcher can follow (IHE AIW-I, the node as Task Manager).

Create, retrieve, search, change state (with the performer's Transaction UID), request cancellation
and subscribe; events go over a WebSocket per subscriber AE title (PS3.18 11.13), read from the
index's event rows, so changes made by Celery workers in other processes reach the watchers too;
subscriptions are kept in the index as well.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from fastapi import APIRouter, HTTPException, Request, Response, WebSocket, WebSocketDisconnect
from pydicom import Dataset
from pydicom.sequence import Sequence
from sqlalchemy import select

from radrouter.config.access import Role
from radrouter.config.settings import Settings
from radrouter.storage.index import Index
from radrouter.storage.workitems import (
    FILTERED_SUBSCRIPTION,
    GLOBAL_SUBSCRIPTION,
    UpsError,
    UpsPriority,
    UpsRefusal,
    UpsState,
    Workitem,
    WorkitemKey,
    claim,
    current_states,
    events_after,
    finish,
    last_event,
    matching,
    request_cancel,
    schedule,
    subscribed,
    suspend,
    workitem_key,
)
from radrouter.storage.workitems import subscribe as subscribe_to
from radrouter.storage.workitems import unsubscribe as unsubscribe_from
from radrouter.web.access.principal import token_principal

DICOM_JSON = "application/dicom+json"
UPS_PUSH = "1.2.840.10008.5.1.4.34.6.1"
#: Coding scheme of the Scheduled Workitem Code: the node's pipeline names.
PIPELINE_SCHEME = "99RADROUTER"
_HTTP = {UpsRefusal.NO_SUCH_WORKITEM: 404, UpsRefusal.WRONG_TRANSACTION: 409, UpsRefusal.NOT_ALLOWED: 409}
_EVENT_POLL_S = 0.2


def as_dataset(item: Workitem) -> Dataset:
    """The workitem as UPS attributes (never its Transaction UID, PS3.4 CC.1.1)."""
    ds = Dataset()
    ds.SOPClassUID, ds.SOPInstanceUID = UPS_PUSH, item.uid
    ds.ProcedureStepState = item.state.value
    ds.ScheduledProcedureStepPriority = item.priority.value
    ds.ProcedureStepLabel = item.pipeline[:64]
    ds.ScheduledProcedureStepStartDateTime = item.created_at.strftime("%Y%m%d%H%M%S")
    code = Dataset()
    code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = (
        item.pipeline[:16],
        PIPELINE_SCHEME,
        item.pipeline,
    )
    ds.ScheduledWorkitemCodeSequence = Sequence([code])
    ds.StudyInstanceUID = item.study_uid
    inputs = []
    for series_uid in item.input_series:
        ref = Dataset()
        ref.StudyInstanceUID, ref.SeriesInstanceUID = item.study_uid, series_uid
        inputs.append(ref)
    ds.InputInformationSequence = Sequence(inputs)
    if item.performer:
        performer = Dataset()
        performer.HumanPerformerName = item.performer[:64]
        ds.ActualHumanPerformersSequence = Sequence([performer])
    if item.outputs:
        performed = Dataset()
        outputs = []
        for output in item.outputs:
            ref = Dataset()
            ref.StudyInstanceUID, ref.SeriesInstanceUID = item.study_uid, output["series_uid"]
            sop = Dataset()
            sop.ReferencedSOPClassUID, sop.ReferencedSOPInstanceUID = (
                output["sop_class_uid"],
                output["sop_uid"],
            )
            ref.ReferencedSOPSequence = Sequence([sop])
            outputs.append(ref)
        performed.OutputInformationSequence = Sequence(outputs)
        ds.UnifiedProcedureStepPerformedProcedureSequence = Sequence([performed])
    if item.reason:
        ds.ReasonForCancellation = item.reason[:64]
    return ds


async def _body(request: Request) -> Dataset:
    try:
        document = json.loads(await request.body())
        return Dataset.from_json(document[0] if isinstance(document, list) else document)
    except (ValueError, TypeError, KeyError, IndexError) as error:
        raise HTTPException(400, f"the body is not one DICOM JSON data set: {error}") from error


def _outputs(ds: Dataset) -> list[dict[str, str]] | None:
    performed = ds.get("UnifiedProcedureStepPerformedProcedureSequence")
    if not performed:
        return None
    return [
        {
            "series_uid": str(ref.SeriesInstanceUID),
            "sop_class_uid": str(sop.ReferencedSOPClassUID),
            "sop_uid": str(sop.ReferencedSOPInstanceUID),
        }
        for ref in performed[0].get("OutputInformationSequence", [])
        for sop in ref.get("ReferencedSOPSequence", [])
    ]


def _filter(filters: list[str]) -> dict[str, str]:
    """``filter`` query values, ``<keyword or tag>=<value>``, by matching key; a 400 names what is
    not one."""
    wanted: dict[str, str] = {}
    for item in filters:
        name, equals, value = item.partition("=")
        key = workitem_key(name)
        if not equals or key is None:
            known = ", ".join(k.value for k in WorkitemKey)
            raise HTTPException(400, f"filter {item!r} is not <attribute>=<value> on one of {known}")
        wanted[key.value] = value
    return wanted


def _refused(error: UpsError) -> HTTPException:
    return HTTPException(_HTTP[error.refusal], str(error))


def ups_router(index: Index) -> APIRouter:
    """The UPS-RS resources; include with ``dependencies=[require(Role.ADMIN)]``."""
    router = APIRouter(prefix="/dicomweb", tags=["ups-rs"])

    @router.post("/workitems", status_code=201)
    async def create(request: Request, response: Response) -> None:
        ds = await _body(request)
        if str(ds.get("ProcedureStepState", "")) != UpsState.SCHEDULED:
            raise HTTPException(400, "a workitem is created SCHEDULED")
        codes, inputs = ds.get("ScheduledWorkitemCodeSequence"), ds.get("InputInformationSequence")
        if not codes or not inputs or "StudyInstanceUID" not in inputs[0]:
            raise HTTPException(400, "a workitem needs a Scheduled Workitem Code and Input Information")
        priority = str(ds.get("ScheduledProcedureStepPriority", UpsPriority.MEDIUM))
        if priority not in set(UpsPriority):
            raise HTTPException(400, f"no priority {priority!r}")
        uid = request.query_params.get("workitem") or str(ds.get("SOPInstanceUID", "")) or None
        with index.session() as session:
            if uid is not None and session.get(Workitem, uid) is not None:
                raise HTTPException(409, f"workitem {uid} exists")
            item = schedule(
                session,
                str(inputs[0].StudyInstanceUID),
                [str(i.SeriesInstanceUID) for i in inputs if "SeriesInstanceUID" in i],
                str(codes[0].CodeValue),
                UpsPriority(priority),
                uid=uid,
            )
            response.headers["Location"] = f"{request.base_url}dicomweb/workitems/{item.uid}"

    @router.get("/workitems/{uid}")
    def retrieve(uid: str) -> Response:
        with index.session() as session:
            item = session.get(Workitem, uid)
            if item is None:
                raise HTTPException(404, f"no workitem {uid}")
            return Response(json.dumps(as_dataset(item).to_json_dict()), media_type=DICOM_JSON)

    @router.get("/workitems")
    def search(request: Request) -> Response:
        """Matching on state, study, pipeline and priority (by keyword or tag), in SQL."""
        wanted = {
            key.value: value
            for name, value in request.query_params.items()
            if (key := workitem_key(name)) is not None
        }
        conditions = matching(wanted)
        found = []
        if conditions is not None:
            query = select(Workitem).where(*conditions).order_by(Workitem.created_at)
            with index.session() as session:
                found = [as_dataset(item).to_json_dict() for item in session.scalars(query)]
        if not found:
            return Response(status_code=204)  # PS3.18 11.9.4: no match, no content
        return Response(json.dumps(found), media_type=DICOM_JSON)

    @router.put("/workitems/{uid}/state")
    async def change_state(uid: str, request: Request) -> None:
        ds = await _body(request)
        state, transaction = str(ds.get("ProcedureStepState", "")), ds.get("TransactionUID")
        if state not in set(UpsState) or not transaction:
            raise HTTPException(400, "a state change needs a Procedure Step State and a Transaction UID")
        performer = request.headers.get("X-Performer") or "outside performer"
        try:
            with index.session() as session:
                if state == UpsState.IN_PROGRESS:
                    claim(session, uid, str(transaction), performer, outside=True)
                else:
                    item = session.get(Workitem, uid)
                    outputs = _outputs(ds) or (None if item is None else item.outputs or None)
                    finish(
                        session,
                        uid,
                        str(transaction),
                        UpsState(state),
                        outputs,
                        ds.get("ReasonForCancellation"),
                    )
        except UpsError as error:
            raise _refused(error) from error

    @router.post("/workitems/{uid}", status_code=200)
    async def update(uid: str, request: Request) -> None:
        """Update (PS3.18 11.6): an owner records the outputs before completing."""
        ds = await _body(request)
        transaction = request.query_params.get("transaction-uid")
        with index.session() as session:
            item = session.get(Workitem, uid, with_for_update=True)
            if item is None:
                raise HTTPException(404, f"no workitem {uid}")
            if item.state != UpsState.IN_PROGRESS or transaction != item.transaction_uid:
                raise HTTPException(409, "only the owner of an IN PROGRESS workitem updates it")
            item.outputs = _outputs(ds) or item.outputs

    @router.post("/workitems/{uid}/cancelrequest", status_code=202)
    async def cancel(uid: str, request: Request) -> None:
        body = await request.body()
        reason = Dataset.from_json(json.loads(body)).get("ReasonForCancellation") if body else None
        try:
            with index.session() as session:
                request_cancel(session, uid, str(reason) if reason else None)
        except UpsError as error:
            raise _refused(error) from error

    @router.post("/workitems/{uid}/subscribers/{ae_title}", status_code=201)
    def subscribe(uid: str, ae_title: str, request: Request, response: Response) -> None:
        """Create Subscription (PS3.18 11.9): one workitem, all (the global UID), or those matching
        ``filter`` (the filtered global UID; ``filter=<keyword or tag>=<value>``, repeated);
        ``deletionlock=true`` keeps each followed workitem until the AE unsubscribes from it."""
        lock = request.query_params.get("deletionlock", "false").lower()
        if lock not in ("true", "false"):
            raise HTTPException(400, "deletionlock is true or false")
        filters = request.query_params.getlist("filter")
        if filters and uid != FILTERED_SUBSCRIPTION:
            raise HTTPException(
                400, f"a filter is given with the filtered global UID {FILTERED_SUBSCRIPTION}"
            )
        wanted = _filter(filters)
        if uid == FILTERED_SUBSCRIPTION and not wanted:
            raise HTTPException(400, "a filtered subscription needs at least one filter=<attribute>=<value>")
        if uid not in (GLOBAL_SUBSCRIPTION, FILTERED_SUBSCRIPTION):
            with index.session() as session:
                if session.get(Workitem, uid) is None:
                    raise HTTPException(404, f"no workitem {uid}")
        subscribe_to(index, ae_title[:16], uid, deletion_lock=lock == "true", wanted=wanted or None)
        response.headers["Content-Location"] = (
            f"{request.base_url}dicomweb/subscribers/{ae_title[:16]}".replace("http", "ws", 1)
        )

    @router.post("/workitems/{uid}/subscribers/{ae_title}/suspend")
    def suspend_subscription(uid: str, ae_title: str) -> None:
        """Suspend Global Subscription (PS3.18 11.10): no new workitems; those followed stay."""
        if uid not in (GLOBAL_SUBSCRIPTION, FILTERED_SUBSCRIPTION):
            raise HTTPException(400, "only a global or filtered global subscription is suspended")
        suspend(index, ae_title[:16])

    @router.delete("/workitems/{uid}/subscribers/{ae_title}")
    def unsubscribe(uid: str, ae_title: str) -> None:
        unsubscribe_from(index, ae_title[:16], uid)

    return router


def ups_events_router(settings: Settings, index: Index) -> APIRouter:
    """The event channel, a WebSocket per subscriber AE title. WebSockets carry no Request for the
    routers' dependencies, so the bearer token (an admin's service token) is checked here."""
    router = APIRouter(prefix="/dicomweb")

    @router.websocket("/subscribers/{ae_title}")
    async def events(websocket: WebSocket, ae_title: str) -> None:
        offered = websocket.headers.get("authorization", "").removeprefix("Bearer ").strip()
        holder = await asyncio.to_thread(token_principal, settings, index, offered) if offered else None
        if holder is None or not holder.role.grants(Role.ADMIN):
            await websocket.close(code=1008)
            return
        await websocket.accept()
        last = await asyncio.to_thread(last_event, index)
        followed: set[str] = set()
        #: Workitem → its newest event already told as its state (not sent again).
        told: dict[str, int] = {}
        try:
            while True:
                # Events first: a subscription made with an event (a global one's new workitem) is
                # then read with it, or the event is read again next time.
                events = await asyncio.to_thread(events_after, index, last)
                wanted = await asyncio.to_thread(subscribed, index, ae_title[:16])
                reported = {event["uid"] for event in events}
                # Each workitem newly followed: its state now, once (PS3.4 CC.2.3.1).
                first = wanted - followed - reported - {GLOBAL_SUBSCRIPTION, FILTERED_SUBSCRIPTION}
                for state in await asyncio.to_thread(current_states, index, first) if first else []:
                    told[state["uid"]] = state["id"]
                    await websocket.send_text(json.dumps(_event_report(state)))
                for event in events:
                    last = event["id"]
                    if event["uid"] in wanted and event["id"] > told.get(event["uid"], 0):
                        await websocket.send_text(json.dumps(_event_report(event)))
                followed = wanted
                await asyncio.sleep(_EVENT_POLL_S)
        except WebSocketDisconnect:
            return

    return router


def _event_report(event: dict[str, Any]) -> dict[str, Any]:
    report = Dataset()
    report.AffectedSOPClassUID, report.AffectedSOPInstanceUID = UPS_PUSH, event["uid"]
    report.EventTypeID = event["type"]
    report.ProcedureStepState = str(event["state"])
    if event["reason"]:
        report.ReasonForCancellation = event["reason"][:64]
    return report.to_json_dict()
