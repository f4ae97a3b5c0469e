"""Single sign-on with OpenID Connect (authlib's Starlette client): authorization code flow with PKCE;
the provider's group claim maps to a role by ``web.oidc.role_groups``."""

from __future__ import annotations

import warnings
from typing import Any

from fastapi import APIRouter, HTTPException, Request, status
from fastapi.responses import RedirectResponse, Response

from radrouter.config.access import OIDCSettings, Role
from radrouter.config.settings import Settings
from radrouter.storage.accounts import AccessKind, AccountError, oidc_sign_in, record_access
from radrouter.web.access.sessions import start_session
from radrouter.web.access.signin import PUBLIC, client_address, safe_next

with warnings.catch_warnings():
    # authlib's Starlette client imports its httpx integration, which warns on import that it will move
    # to httpx2: a raw line on stderr that would break a JSON log stream; the client works the same.
    # authlib.deprecate sets its warnings to "always" when imported, so this filter goes in front after.
    import authlib.deprecate  # noqa: F401

    warnings.filterwarnings("ignore", "The httpx module is deprecated", DeprecationWarning)
    from authlib.integrations.starlette_client import OAuth, OAuthError

#: Claims that name the person, best first.
NAME_CLAIMS = ("preferred_username", "email", "sub")


def mapped_role(rules: OIDCSettings, claims: dict[str, Any]) -> Role | None:
    """The highest role any of the user's groups maps to; None when none of them is mapped."""
    groups = claims.get(rules.groups_claim) or []
    if isinstance(groups, str):
        groups = [groups]
    roles = [rules.role_groups[group] for group in groups if group in rules.role_groups]
    return max(roles, key=list(Role).index) if roles else None


def oidc_router(settings: Settings) -> APIRouter:
    rules = settings.web.oidc
    oauth = OAuth()
    oauth.register(
        "idp",
        server_metadata_url=rules.issuer.rstrip("/") + "/.well-known/openid-configuration",
        client_id=rules.client_id,
        client_secret=rules.client_secret.get_secret_value() if rules.client_secret else None,
        code_challenge_method="S256",
        client_kwargs={"scope": rules.scope},
    )
    router = APIRouter(tags=["sign-in"])

    @router.get("/signin/oidc", dependencies=[PUBLIC])
    async def start(request: Request, next: str = "/worklist") -> Response:
        request.session["oidc_next"] = safe_next(next)
        redirect: Response = await oauth.idp.authorize_redirect(
            request, str(request.url_for("oidc_callback"))
        )
        return redirect

    @router.get("/signin/oidc/callback", name="oidc_callback", dependencies=[PUBLIC])
    async def callback(request: Request) -> Response:
        try:
            token = await oauth.idp.authorize_access_token(request)
        except OAuthError as error:
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED, f"single sign-on failed: {error.error}"
            ) from error
        claims: dict[str, Any] = dict(token.get("userinfo") or {})
        if rules.groups_claim not in claims:
            claims |= dict(await oauth.idp.userinfo(token=token))
        name = next((str(claims[c]) for c in NAME_CLAIMS if claims.get(c)), None)
        role = mapped_role(rules, claims)
        index = request.app.state.index
        if name is None or role is None:
            with index.session() as session:
                record_access(session, AccessKind.SIGN_IN_FAILED, None, via="oidc", no_role=True)
            raise HTTPException(
                status.HTTP_403_FORBIDDEN,
                "signed in at the provider, but none of your groups has a role here",
            )
        try:
            oidc_sign_in(index, name, role, **client_address(request))
        except AccountError as error:
            raise HTTPException(status.HTTP_409_CONFLICT, str(error)) from error
        target = safe_next(request.session.pop("oidc_next", None))
        start_session(request, name)
        return RedirectResponse(target, status.HTTP_303_SEE_OTHER)

    return router
