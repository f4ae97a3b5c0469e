"""The sign-in page, sign-out, and who is signed in (``/api/me``), for local accounts."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from radrouter.config.access import Role
from radrouter.config.settings import Settings
from radrouter.storage.accounts import AccessKind, check_password, record_access
from radrouter.web.access.csrf import csrf_token
from radrouter.web.access.principal import Principal, require
from radrouter.web.access.sessions import end_session, start_session

TEMPLATES = Jinja2Templates(directory=Path(__file__).parent.parent / "templates")
PUBLIC = require(Role.VIEWER, public_if=lambda _: True)  # the sign-in page itself is for anyone


def safe_next(target: str | None) -> str:
    """Only a path on this node (no ``//host``), so sign-in cannot bounce a user to another site."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/worklist"
    return target


def client_address(request: Request) -> dict[str, Any]:
    return {"address": request.client.host if request.client else None}


def signin_router(settings: Settings) -> APIRouter:
    router = APIRouter(tags=["sign-in"])

    def page(request: Request, next_: str, error: str = "", name: str = "", code: int = 200) -> Response:
        context = {
            "csrftoken": csrf_token(request),
            "next": safe_next(next_),
            "error": error,
            "name": name,
            "oidc_label": settings.web.oidc.button_label if settings.web.oidc.enabled else "",
        }
        return TEMPLATES.TemplateResponse(request, "signin.html", context, status_code=code)

    @router.get("/signin", response_class=HTMLResponse, dependencies=[PUBLIC])
    def signin_page(request: Request, next: str = "/worklist") -> Response:
        return page(request, next)

    @router.post("/signin", dependencies=[PUBLIC])
    def sign_in(
        request: Request,
        name: Annotated[str, Form(max_length=100)],
        password: Annotated[str, Form(max_length=1000)],
        next: Annotated[str, Form()] = "/worklist",
    ) -> Response:
        outcome = check_password(
            request.app.state.index, name, password, settings.web.sign_in, **client_address(request)
        )
        if outcome.user is None:
            return page(request, next, outcome.refused or "", name, status.HTTP_401_UNAUTHORIZED)
        start_session(request, outcome.user)
        return RedirectResponse(safe_next(next), status.HTTP_303_SEE_OTHER)

    @router.post("/signout", dependencies=[PUBLIC])
    def sign_out(request: Request) -> Response:
        name = end_session(request)
        if name is not None:
            with request.app.state.index.session() as session:
                record_access(session, AccessKind.SIGNED_OUT, name, **client_address(request))
        return RedirectResponse("/signin", status.HTTP_303_SEE_OTHER)

    @router.get("/api/me")
    def me(principal: Annotated[Principal, require(Role.VIEWER)]) -> dict[str, Any]:
        """The caller's name and role (the pages show them in their header)."""
        return {"name": principal.actor, "role": principal.role.value, "service": principal.service}

    return router
