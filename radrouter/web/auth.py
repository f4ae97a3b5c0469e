"""The optional API token, as one FastAPI dependency every router can reuse.

With ``web.api_token`` set, a request to a protected route must carry ``Authorization: Bearer <token>``;
without it, the API is open (it listens on 127.0.0.1 by default). Protect a whole router with
``APIRouter(dependencies=PROTECTED)`` or one route with ``@app.get(..., dependencies=PROTECTED)``.
"""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from radrouter.config.settings import Settings

_bearer = HTTPBearer(auto_error=False, description="The token set in web.api_token.")


def require_api_token(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> None:
    """Refuse the request (401) unless the token is off or the request carries it."""
    settings: Settings = request.app.state.settings
    if settings.web.api_token is None:
        return
    expected = settings.web.api_token.get_secret_value().encode()
    offered = credentials.credentials.encode() if credentials is not None else b""
    if not hmac.compare_digest(offered, expected):
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "this endpoint needs the API token: Authorization: Bearer <token>",
            headers={"WWW-Authenticate": "Bearer"},
        )


PROTECTED = [Depends(require_api_token)]
