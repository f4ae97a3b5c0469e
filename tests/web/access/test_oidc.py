"""Single sign-on against a real OpenID provider process (the oidc-provider-mock package from PyPI, an
authlib + Flask provider run as its own server): the authorization code flow with PKCE, driven by httpx
as a browser follows it, and the provider's groups mapped to a role."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from radrouter.storage import accounts
from radrouter.storage.index import Index
from tests.access import web_process
from tests.services import free_port, port_open, wait_until

PEOPLE = [
    {"sub": "a1", "preferred_username": "dr-sso", "groups": ["staff", "radiology"]},
    {"sub": "a2", "preferred_username": "pacs-admin", "groups": ["radiology", "pacs-admins"]},
    {"sub": "a3", "preferred_username": "visitor", "groups": ["cafeteria"]},
]


@pytest.fixture(scope="module")
def provider(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    log = tmp_path_factory.mktemp("oidc") / "provider.log"
    claims = [arg for person in PEOPLE for arg in ("--user-claims", json.dumps(person))]
    process = subprocess.Popen(
        [sys.executable, "-m", "oidc_provider_mock", "--port", str(port), *claims],
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    try:
        wait_until(lambda: port_open(port), 60, "the OpenID provider")
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=30)


@pytest.fixture(scope="module")
def node_web(provider: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    folder = tmp_path_factory.mktemp("sso")
    oidc = {
        "issuer": provider,
        "client_id": "radrouter",
        "client_secret": "shared with the provider",
        "role_groups": {"radiology": "radiologist", "pacs-admins": "admin"},
    }
    with web_process(folder, {"oidc": oidc}) as url:
        yield url, folder / "data" / "index.sqlite3"


def _single_sign_on(url: str, provider: str, sub: str) -> httpx.Client:
    """What a browser does: to the provider and back, choosing the person on its authorization page."""
    client = httpx.Client(base_url=url)
    start = client.get("/signin/oidc", params={"next": "/worklist"})
    assert start.status_code == 302
    authorize = start.headers["location"]
    asked = parse_qs(urlsplit(authorize).query)
    assert authorize.startswith(provider) and asked["code_challenge_method"] == ["S256"]  # PKCE
    assert asked["redirect_uri"] == [f"{url}/signin/oidc/callback"] and asked["code_challenge"][0]
    assert "Authorize" in httpx.get(authorize).text
    back = httpx.post(authorize, data={"sub": sub})
    assert back.status_code == 302 and back.headers["location"].startswith(f"{url}/signin/oidc/callback")
    client.get(back.headers["location"])  # the callback: code for tokens, then a session
    return client


def test_the_providers_groups_give_the_role(node_web: tuple[str, Path], provider: str) -> None:
    url, index_path = node_web
    radiologist = _single_sign_on(url, provider, "a1")
    assert radiologist.get("/api/me").json() == {"name": "dr-sso", "role": "radiologist", "service": False}
    assert radiologist.get("/api/worklist").status_code == 200
    assert radiologist.get("/api/audit/access").status_code == 403
    admin = _single_sign_on(url, provider, "a2")  # in two mapped groups: the higher role
    assert admin.get("/api/me").json()["role"] == "admin"
    assert admin.get("/api/audit/access").status_code == 200  # the admin's (no broker here for /dashboard)

    index = Index(f"sqlite:///{index_path}")
    by_name = {u["name"]: u for u in accounts.users(index)}
    assert by_name["dr-sso"]["source"] == "oidc" and by_name["dr-sso"]["role"] == "radiologist"
    signed_in = [e for e in accounts.access_events(index) if e["kind"] == "signed_in"]
    assert [(e["user"], e["detail"]["via"]) for e in signed_in] == [
        ("dr-sso", "oidc"),
        ("pacs-admin", "oidc"),
    ]


def test_a_person_without_a_mapped_group_is_refused(node_web: tuple[str, Path], provider: str) -> None:
    url, _ = node_web
    visitor = _single_sign_on(url, provider, "a3")
    assert visitor.get("/api/me").status_code == 401
