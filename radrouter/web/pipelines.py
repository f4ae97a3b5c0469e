"""``GET /api/pipelines``: every pipeline the node knows, its version, queue and where it came from."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from radrouter.config.settings import Settings
from radrouter.router.dispatch.contract import queue_for


def pipelines_router(settings: Settings) -> APIRouter:
    router = APIRouter()

    @router.get("/api/pipelines")
    def pipelines() -> list[dict[str, Any]]:
        from radrouter.inference.registry import catalogue  # torch only when asked, not at web start-up

        return [
            {
                "name": entry.name,
                "version": entry.version,
                "queue": queue_for(settings, entry.name),
                "source": entry.source,
                "description": entry.description,
            }
            for entry in sorted(catalogue(settings).values(), key=lambda entry: entry.name)
        ]

    return router
