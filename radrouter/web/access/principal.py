"""Who is calling: a signed-in person (session cookie) or a service (bearer token), and the one
dependency every route declares, ``Depends(require(Role.X))``.

Without a session a page redirects to /signin and the API answers 401; a role too low gets 403.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from fastapi import Depends, HTTPException, Request, status
from fastapi.responses import JSONResponse, RedirectResponse, Response

from radrouter.config.access import Role
from radrouter.config.settings import Settings
from radrouter.storage.accounts import token_holder
from radrouter.storage.index import Index
from radrouter.web.access.csrf import csrf_token
from radrouter.web.access.sessions import session_user

#: Paths answered as an API (401) rather than as a page (redirect to sign-in).
API_PREFIXES = ("/api/", "/dicomweb", "/openapi.json", "/metrics")
API_TOKEN_NAME = "api_token"


@dataclass(frozen=True)
class Principal:
    """The caller: a person's account name, or a service token's name; the role it holds now."""

    name: str
    role: Role
    service: bool = False

    @property
    def actor(self) -> str:
        """How the audit names them: ``alice``, or ``token:ci-worker`` for a service."""
        return f"token:{self.name}" if self.service else self.name


class SignInRequired(Exception):
    """No session and no token: the page redirects to sign-in, the API answers 401."""


def _bearer(request: Request) -> str | None:
    scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
    return credentials.strip() if scheme.lower() == "bearer" and credentials.strip() else None


def token_principal(settings: Settings, index: Index, token: str) -> Principal | None:
    """The service a bearer token names (``web.api_token`` or a live ``tokens add`` one), or None."""
    if settings.web.api_token is not None and hmac.compare_digest(
        token.encode(), settings.web.api_token.get_secret_value().encode()
    ):
        return Principal(API_TOKEN_NAME, Role.ADMIN, service=True)
    holder = token_holder(index, token)
    return Principal(holder[0], holder[1], service=True) if holder else None


def current_user(request: Request) -> Principal | None:
    """The caller of this request, or None; read once per request (a token wins over a session)."""
    if hasattr(request.state, "principal"):
        found: Principal | None = request.state.principal
        return found
    settings: Settings = request.app.state.settings
    index: Index = request.app.state.index
    token = _bearer(request)
    principal: Principal | None
    if token is not None:
        principal = token_principal(settings, index, token)
        if principal is None:
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED, "unknown or revoked token", {"WWW-Authenticate": "Bearer"}
            )
    else:
        person = session_user(request, settings.web.session, index)
        principal = Principal(*person) if person is not None else None
    request.state.principal = principal
    return principal


class RoleRequirement:
    """The dependency behind :func:`require`; the route-enumeration test looks for it on every route."""

    def __init__(self, role: Role, public_if: Callable[[Settings], bool] | None = None) -> None:
        self.role, self.public_if = role, public_if

    def __call__(self, request: Request) -> Principal | None:
        if self.public_if is not None and self.public_if(request.app.state.settings):
            return current_user(request) if _bearer(request) else None
        principal = current_user(request)
        if principal is None:
            raise SignInRequired
        if not principal.role.grants(self.role):
            raise HTTPException(
                status.HTTP_403_FORBIDDEN, f"{principal.actor} is {principal.role}; this needs {self.role}"
            )
        # What the layout shows and puts in its <meta> (radrouter/web/layout.py).
        request.state.user = principal
        if not request.url.path.startswith(API_PREFIXES):
            request.state.csrf_token = csrf_token(request)
        return principal


def require(role: Role, public_if: Callable[[Settings], bool] | None = None) -> Any:
    """``Depends(...)`` for a route or router: the caller must hold ``role`` (or one above it).

    ``public_if``: a setting that opens the route to anyone (health checks, metrics scrapes).
    """
    return Depends(RoleRequirement(role, public_if))


def sign_in_required(request: Request, _: Exception) -> Response:
    """Pages send the browser to sign in and come back; the API says 401."""
    if request.url.path.startswith(API_PREFIXES):
        return JSONResponse(
            {"detail": "sign in or send a token: Authorization: Bearer <token>"},
            status.HTTP_401_UNAUTHORIZED,
            headers={"WWW-Authenticate": "Bearer"},
        )
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/signin?next={quote(target, safe='')}", status.HTTP_303_SEE_OTHER)
