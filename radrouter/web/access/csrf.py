"""CSRF protection (Simon Willison's asgi-csrf, a double-submit cookie signed with the session key).

Every POST that carries cookies must send the token: in the ``X-CSRF-Token`` header (fetch) or in a
``csrftoken`` form field; a request with a bearer token and no cookies is not a browser's and passes.
The sign-in form is protected even before any cookie exists (login CSRF).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from asgi_csrf import asgi_csrf
from fastapi import Request
from starlette.responses import JSONResponse
from starlette.types import Scope, Send

FORM_FIELD = "csrftoken"
HEADER = "x-csrf-token"
SIGN_IN_PATHS = {"/signin"}


def csrf_token(request: Request) -> str:
    """The token to put in a form's hidden ``csrftoken`` field or a fetch's ``X-CSRF-Token`` header."""
    token_of: Callable[[], str] | None = request.scope.get("csrftoken")
    if token_of is None:
        raise RuntimeError("the CSRF middleware is not installed on this app")
    return token_of()


async def _refuse(scope: Scope, send: Send, _why: object) -> None:
    """One clear 403 for every way the token can be missing or wrong."""
    answer = JSONResponse(
        {"detail": f"CSRF token missing or wrong: send the {HEADER} header or the {FORM_FIELD} form field"},
        status_code=403,
    )

    async def nothing() -> dict[str, Any]:
        return {"type": "http.disconnect"}

    await answer(scope, nothing, send)


def with_csrf(app: Any, secret: str, secure: bool) -> Any:
    """The ASGI app wrapped in the CSRF check."""
    return asgi_csrf(
        app,
        http_header=HEADER,
        signing_secret=secret,
        signing_namespace="radrouter-csrf",
        always_protect=SIGN_IN_PATHS,
        cookie_secure=secure,
        cookie_samesite="Strict",
        send_csrf_failed=_refuse,
    )
