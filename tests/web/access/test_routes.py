"""Every route of the app declares the role it needs, and an anonymous caller gets none of them:
pages redirect to sign-in, the API (DICOMweb, /docs and /openapi.json too) answers 401."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, APIWebSocketRoute, RouteContext, iter_route_contexts
from fastapi.testclient import TestClient
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles

from radrouter.config.access import Role
from radrouter.config.settings import Settings
from radrouter.storage.index import Index
from radrouter.web.access.principal import RoleRequirement
from radrouter.web.app import create_app
from tests.access import LOCAL, token_client

#: Open to anyone by design: the sign-in pages themselves.
SIGN_IN = {"/signin", "/signout", "/signin/oidc", "/signin/oidc/callback"}
#: WebSockets that check an admin's token themselves (UPS-RS event channel).
WEBSOCKETS = {"/dicomweb/subscribers/{ae_title}"}
#: STOW-RS from remote workers: no person's role, but each object is checked against the credential of
#: the job it is a result of, and each refusal audited (radrouter/web/stow.py; tests/web/test_stow.py).
JOB_CREDENTIAL = {("POST", "/dicomweb/studies")}
#: Open by default, protected when config says so.
CONFIGURABLE = {"/api/health": "public_health", "/metrics": "public_metrics"}


def _requirements(dependant: Dependant) -> list[RoleRequirement]:
    found = [dependant.call] if isinstance(dependant.call, RoleRequirement) else []
    return found + [r for sub in dependant.dependencies for r in _requirements(sub)]


def _every_route(app: FastAPI) -> list[RouteContext]:
    """Each route as the app serves it (included routers flattened, their dependencies applied),
    whatever its kind: a route that is not an APIRoute cannot declare a role and fails here."""
    routes = [r for r in iter_route_contexts(app.routes) if not _static(r) and not _websocket(r)]
    for route in routes:
        assert isinstance(route.original_route, APIRoute), (
            f"{route.path}: not an APIRoute, cannot declare a role"
        )
    return routes


def _websocket(route: RouteContext) -> bool:
    """A WebSocket has no Request for the dependencies: it checks its token itself (tests/web/test_ups.py)."""
    assert route.path in WEBSOCKETS or not isinstance(route.original_route, APIWebSocketRoute), route.path
    return isinstance(route.original_route, APIWebSocketRoute)


def _static(route: RouteContext) -> bool:
    """The pages' own CSS and scripts (a StaticFiles mount): no data, open like the sign-in page."""
    return isinstance(route.original_route, Mount) and isinstance(route.original_route.app, StaticFiles)


def _routes(app: FastAPI) -> list[tuple[str, str]]:
    """(method, path with parameters filled) of every route."""
    out = []
    for route in _every_route(app):
        path = re.sub(r"\{[^}]+\}", "1", str(route.path))
        out += [(method, path) for method in sorted((route.methods or set()) - {"HEAD"})]
    return out


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    # OIDC on (an issuer nothing listens on: the routes exist, no sign-in is tried) so its routes count.
    return Settings(
        storage={"root": tmp_path}, web={"oidc": {"issuer": "http://127.0.0.1:9", "client_id": "x"}}
    )


def test_every_route_declares_a_role(settings: Settings) -> None:
    app = create_app(settings)
    routes = _every_route(app)
    paths = {route.path for route in routes}
    assert {"/docs", "/openapi.json", "/dicomweb/studies/{study_uid}", "/metrics"} <= paths
    assert {"/signin/oidc", "/signin/oidc/callback", "/dashboard", "/monitoring/{pipeline}"} <= paths
    assert len(routes) > 30
    for route in routes:
        if {(method, route.path) for method in route.methods or ()} <= JOB_CREDENTIAL:
            assert route.original_route.endpoint.__module__ == "radrouter.web.stow", route.path
            continue
        requirements = _requirements(route.dependant)
        assert requirements, f"{route.path} declares no role"
        opened = [r for r in requirements if r.public_if is not None and r.public_if(settings)]
        if route.path in SIGN_IN or route.path in CONFIGURABLE:
            continue
        assert not opened, f"{route.path} is open to anyone"


def test_without_a_session_pages_redirect_and_the_api_answers_401(settings: Settings) -> None:
    app = create_app(settings)
    client = TestClient(app, base_url=LOCAL)
    routes = _routes(app)
    assert ("POST", "/api/worklist/1/read") in routes and ("GET", "/dicomweb/studies/1") in routes
    for method, path in routes:
        if path in SIGN_IN or path in CONFIGURABLE:
            continue
        response = client.request(method, path, follow_redirects=False)
        if (method, path) in JOB_CREDENTIAL:
            # Not multipart/related: refused before anything is read; a real body without the job's
            # credential gets 403 (tests/web/test_stow.py).
            assert response.status_code == 415, (method, path, response.status_code)
        elif path.startswith(("/api/", "/dicomweb", "/openapi.json")):
            assert response.status_code == 401, (method, path, response.status_code)
        else:
            assert response.status_code == 303, (method, path, response.status_code)
            assert response.headers["location"].startswith("/signin?next=")
    assert client.get("/api/health").status_code == 200 and client.get("/metrics").status_code == 200


def test_health_and_metrics_are_protected_when_config_says_so(tmp_path: Path) -> None:
    settings = Settings(storage={"root": tmp_path}, web={"public_health": False, "public_metrics": False})
    index = Index(settings.storage.resolved_index_url())
    app = create_app(settings, index)
    anonymous = TestClient(app, base_url=LOCAL)
    assert anonymous.get("/api/health").status_code == 401
    assert anonymous.get("/metrics").status_code == 401
    assert token_client(app, index, Role.VIEWER).get("/api/health").status_code == 200
    assert token_client(app, index, Role.VIEWER).get("/metrics").status_code == 403
    assert token_client(app, index, Role.ADMIN).get("/metrics").status_code == 200


def test_roles_are_checked_per_route(tmp_path: Path) -> None:
    settings = Settings(storage={"root": tmp_path})
    index = Index(settings.storage.resolved_index_url())
    app = create_app(settings, index)
    viewer, radiologist, admin = (token_client(app, index, role) for role in Role)
    assert viewer.get("/api/worklist").status_code == 200
    assert viewer.post("/api/worklist/1.2.3/read").status_code == 403
    assert radiologist.post("/api/worklist/1.2.3/read").status_code == 404  # allowed; no such study
    assert radiologist.post("/api/deliveries/retry").status_code == 403
    assert admin.post("/api/deliveries/retry").json() == {"retried": []}
    for path in ("/docs", "/openapi.json", "/dashboard", "/monitoring", "/api/audit"):
        assert radiologist.get(path).status_code == 403, path
        assert admin.get(path).status_code == 200, path
    assert viewer.get("/dicomweb/studies/1.2.3").status_code == 404  # allowed; nothing stored
