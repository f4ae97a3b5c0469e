"""Puts access control on the web app: the middlewares in their order, sign-in routes, admin-only docs."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from starlette.middleware.sessions import SessionMiddleware

from radrouter.config.access import Role
from radrouter.config.settings import Settings
from radrouter.web.access.csrf import with_csrf
from radrouter.web.access.hardening import OriginCheck, SecurityHeaders
from radrouter.web.access.principal import SignInRequired, require, sign_in_required
from radrouter.web.access.sessions import COOKIE, session_secret
from radrouter.web.access.signin import signin_router

ADMIN = require(Role.ADMIN)


def protect(app: FastAPI, settings: Settings) -> None:
    """Install sessions, CSRF, host/origin checks and headers (outermost last), and the sign-in pages."""
    web = settings.web
    secret, https = session_secret(settings), web.tls.enabled
    app.add_exception_handler(SignInRequired, sign_in_required)
    app.include_router(signin_router(settings))
    if web.oidc.enabled:  # authlib is loaded only by a node that signs in with OpenID Connect
        from radrouter.web.access.oidc import oidc_router

        app.include_router(oidc_router(settings))

    @app.get("/openapi.json", include_in_schema=False, dependencies=[ADMIN])
    def openapi() -> dict[str, Any]:
        return app.openapi()

    @app.get("/docs", include_in_schema=False, dependencies=[ADMIN])
    def docs() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url="/openapi.json", title="radrouter API")

    app.add_middleware(
        SessionMiddleware,
        secret_key=secret,
        session_cookie=COOKIE,
        max_age=web.session.absolute_timeout_h * 3600,
        same_site="lax",  # lax, not strict: the provider's redirect back must carry the OIDC state
        https_only=https,
    )
    app.add_middleware(with_csrf, secret=secret, secure=https)
    app.add_middleware(OriginCheck, hosts=web.answers_to())
    app.add_middleware(SecurityHeaders, https=https)
