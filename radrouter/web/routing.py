"""``GET /api/studies/{study_uid}/routing``: the rule tester's decision for a stored study, as JSON."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException

from radrouter.config.settings import Settings, config_file_from_environment
from radrouter.router.route.header import stored_study_headers
from radrouter.router.route.rulebook import RuleBook
from radrouter.router.route.rules import decide
from radrouter.storage.index import Index


def routing_api(settings: Settings, index: Index) -> APIRouter:
    """Routes that evaluate the rules in force now (reloaded like the router's) on stored studies."""
    router = APIRouter()
    rulebook = RuleBook(settings, config_file_from_environment())

    @router.get("/api/studies/{study_uid}/routing")
    def routing(study_uid: str) -> dict[str, Any]:
        headers = stored_study_headers(index, study_uid, settings.node.ae_title)
        if headers is None:
            raise HTTPException(status_code=404, detail=f"no study {study_uid}")
        current = rulebook.current()
        decision = decide(current.rules, headers, current.tolerance_deg)
        return {"study_uid": study_uid, "rules_generation": current.generation, **decision.as_json()}

    return router
