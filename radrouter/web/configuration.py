"""The configuration view: the effective settings, section by section, with every secret masked.

pydantic already masks ``SecretStr`` fields (tokens, keys); passwords inside URLs (the index, the
broker, any other) are masked here, and so is any value under a key that names a secret.
"""

from __future__ import annotations

import re
from typing import Any

import yaml
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from radrouter.config.settings import Settings
from radrouter.web.access import Role, require
from radrouter.web.layout import render

MASK = "***"
_SECRET_KEY = re.compile(r"(password|passwd|secret|token|api_key)$", re.IGNORECASE)
_URL_WITH_PASSWORD = re.compile(r"^[a-z][a-z0-9+.-]*://[^/@\s]*:[^/@\s]*@", re.IGNORECASE)


def _masked(key: str, value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _masked(k, v) for k, v in value.items()}
    if isinstance(value, list):
        return [_masked(key, v) for v in value]
    if isinstance(value, str) and value and _SECRET_KEY.search(key):
        return MASK
    if isinstance(value, str) and _URL_WITH_PASSWORD.match(value):
        try:
            return make_url(value).render_as_string(hide_password=True)
        except ArgumentError:
            return MASK
    return value


def masked_settings(settings: Settings) -> dict[str, Any]:
    """The effective settings as plain data, secrets masked."""
    return {key: _masked(key, value) for key, value in settings.model_dump(mode="json").items()}


def config_in_use(settings: Settings) -> str:
    """The effective settings as YAML, secrets masked."""
    return yaml.safe_dump(masked_settings(settings), sort_keys=False)


def configuration_router(settings: Settings) -> APIRouter:
    router = APIRouter(tags=["configuration"], dependencies=[require(Role.ADMIN)])

    @router.get("/config", response_class=HTMLResponse)
    def configuration(request: Request) -> HTMLResponse:
        sections = {
            name: yaml.safe_dump(value, sort_keys=False) for name, value in masked_settings(settings).items()
        }
        return render(request, "config.html", {"sections": sections, "config": config_in_use(settings)})

    return router
