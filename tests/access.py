"""Signing in for tests: accounts and service tokens made the way an admin makes them, clients that
carry a token or a session (with its CSRF token), and a browser that signs in through the form."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import yaml
from fastapi import APIRouter, FastAPI
from fastapi.testclient import TestClient
from playwright.sync_api import Page

from radrouter.config.access import Role
from radrouter.config.settings import Settings
from radrouter.storage import accounts
from radrouter.storage.index import Index
from radrouter.web.access.setup import protect

PASSWORD = "correct horse battery staple"
#: TestClient's default host, "testserver", is not a name the node answers to; loopback is.
LOCAL = "http://127.0.0.1"


def cli(config: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "radrouter.cli", *args, "--config", str(config)],
        input=stdin,
        capture_output=True,
        text=True,
        check=False,
    )


def add_user(config: Path, name: str, role: Role, password: str = PASSWORD) -> None:
    """``radrouter users add`` as an admin runs it (password on stdin)."""
    done = cli(config, "users", "add", name, "--role", role.value, "--password-stdin", stdin=password + "\n")
    assert done.returncode == 0, done.stderr


def add_token(config: Path, name: str, role: Role) -> str:
    """``radrouter tokens add``: the token it prints once."""
    done = cli(config, "tokens", "add", name, "--role", role.value)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def app_of(settings: Settings, index: Index, *routers: APIRouter) -> FastAPI:
    """A web app of only ``routers``, with the node's access control (for a router under test)."""
    app = FastAPI()
    app.state.settings, app.state.index = settings, index
    protect(app, settings)
    for router in routers:
        app.include_router(router)
    return app


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def token_client(app: FastAPI, index: Index, role: Role = Role.ADMIN, name: str = "") -> TestClient:
    """An in-process client with a fresh service token of ``role``."""
    token = accounts.add_token(index, name or f"test-{role.value}-{len(accounts.tokens(index))}", role)
    return TestClient(app, base_url=LOCAL, headers=bearer(token))


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrftoken" value="([^"]+)"', html) or re.search(
        r'name="csrf-token" content="([^"]+)"', html
    )
    assert found, "no CSRF token in the page"
    return found.group(1)


def sign_in(client: httpx.Client | TestClient, name: str, password: str = PASSWORD) -> httpx.Response:
    """Sign in through the form, as a browser does; the client keeps the session cookie."""
    token = csrf_of(client.get("/signin").text)
    return client.post(
        "/signin", data={"name": name, "password": password, "csrftoken": token}, follow_redirects=False
    )


def session_client(app: FastAPI, index: Index, name: str, role: Role) -> TestClient:
    """An in-process client signed in as a new local account ``name`` of ``role``."""
    accounts.add_user(index, name, role, PASSWORD)
    client = TestClient(app, base_url=LOCAL)
    assert sign_in(client, name).status_code == 303
    return client


def csrf_headers(client: httpx.Client | TestClient, page: str = "/worklist") -> dict[str, Any]:
    """The header a page's fetch sends with each POST."""
    return {"x-csrf-token": csrf_of(client.get(page).text)}


def browser_sign_in(page: Page, base_url: str, name: str, password: str = PASSWORD) -> None:
    """Fill in the sign-in form in the browser; lands on the page ``next`` names."""
    page.goto(f"{base_url}/signin")
    page.get_by_label("Name").fill(name)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(lambda url: "/signin" not in url)


@contextmanager
def web_process(folder: Path, web: dict[str, Any], scheme: str = "http") -> Iterator[str]:
    """`radrouter web` as a real process with ``web`` settings (and a free port) over its own index."""
    from tests.services import free_port, port_open, wait_until  # tests.services imports this module

    port = free_port()
    config = folder / "radrouter.yaml"
    config.write_text(
        yaml.safe_dump({"storage": {"root": str(folder / "data")}, "web": {**web, "port": port}})
    )
    log = folder / "web.log"
    process = subprocess.Popen(
        [sys.executable, "-m", "radrouter.cli", "web", "--config", str(config)],
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    try:
        wait_until(lambda: port_open(port), 60, "radrouter web")
        yield f"{scheme}://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=30)
