"""Sessions of the pages, in-process: sign-in and sign-out, CSRF on every POST, lock-out after five
wrong passwords, idle and absolute timeouts, and a password change or removal ending a session."""

from __future__ import annotations

import json
import time
from base64 import b64encode
from datetime import timedelta
from pathlib import Path

import itsdangerous
import pytest
from fastapi.testclient import TestClient

from radrouter.config.access import Role
from radrouter.config.settings import Settings
from radrouter.storage import accounts
from radrouter.storage.index import Index
from radrouter.web.access.sessions import COOKIE
from radrouter.web.app import create_app
from tests.access import LOCAL, PASSWORD, csrf_headers, session_client, sign_in

SECRET = "a session key known to the test, so it can forge an old session"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(storage={"root": tmp_path}, web={"session": {"secret_key": SECRET}})


@pytest.fixture
def index(settings: Settings) -> Index:
    return Index(settings.storage.resolved_index_url())


def test_a_signed_in_radiologist_posts_with_the_csrf_token_only(settings: Settings, index: Index) -> None:
    client = session_client(create_app(settings, index), index, "dr-reader", Role.RADIOLOGIST)
    cookie = next(c for c in client.cookies.jar if c.name == COOKIE)
    assert cookie.has_nonstandard_attr("httponly") and cookie.get_nonstandard_attr("samesite") == "lax"
    assert not cookie.secure  # Secure only over HTTPS (tests/web/access/test_https.py)
    assert client.get("/api/me").json() == {"name": "dr-reader", "role": "radiologist", "service": False}
    assert client.get("/worklist").status_code == 200
    # The study does not exist: a request that passed every check answers 404.
    forged = client.post("/api/worklist/1.2.3/read", json={"verdict": "agree"})
    assert forged.status_code == 403 and "CSRF" in forged.text
    good = client.post("/api/worklist/1.2.3/read", json={"verdict": "agree"}, headers=csrf_headers(client))
    assert good.status_code == 404
    text = client.post(
        "/api/worklist/1.2.3/read",
        content="{}",
        headers={**csrf_headers(client), "content-type": "text/plain"},
    )
    assert text.status_code == 415  # state changes take JSON only
    assert client.get("/dashboard").status_code == 403  # the admin's page

    signed_out = client.post("/signout", data={"csrftoken": csrf_headers(client)["x-csrf-token"]})
    assert signed_out.url.path == "/signin"
    assert client.get("/api/me").status_code == 401
    kinds = [(e["kind"], e["user"]) for e in accounts.access_events(index)]
    assert kinds == [("signed_in", "dr-reader"), ("signed_out", "dr-reader")]


def test_the_sign_in_form_needs_its_csrf_token(settings: Settings, index: Index) -> None:
    accounts.add_user(index, "dr-form", Role.VIEWER, PASSWORD)
    client = TestClient(create_app(settings, index), base_url=LOCAL)
    refused = client.post("/signin", data={"name": "dr-form", "password": PASSWORD}, follow_redirects=False)
    assert refused.status_code == 403
    assert sign_in(client, "dr-form").headers["location"] == "/worklist"
    assert sign_in(client, "dr-form").status_code == 303


def test_five_wrong_passwords_lock_the_account(settings: Settings, index: Index) -> None:
    accounts.add_user(index, "dr-typo", Role.RADIOLOGIST, PASSWORD)
    client = TestClient(create_app(settings, index), base_url=LOCAL)
    for _ in range(5):
        wrong = sign_in(client, "dr-typo", "not the password")
        assert wrong.status_code == 401 and "wrong name or password" in wrong.text
    locked = sign_in(client, "dr-typo", PASSWORD)
    assert locked.status_code == 401 and "locked until" in locked.text
    assert client.get("/api/me").status_code == 401
    events = [e for e in accounts.access_events(index) if e["user"] == "dr-typo"]
    assert [e["kind"] for e in events] == ["sign_in_failed"] * 5 + ["locked", "sign_in_failed"]
    assert events[-1]["detail"]["locked"] is True and events[0]["detail"]["address"] == "testclient"
    accounts.set_password(index, "dr-typo", PASSWORD)  # an admin's `radrouter users passwd` lifts it
    assert sign_in(client, "dr-typo").status_code == 303


def _forged_session(name: str, signed_in_ago_s: float, seen_ago_s: float) -> str:
    """A cookie as the node would have signed it that long ago (the key is the test's)."""
    now = time.time()
    data = {"user": name, "signed_in": now - signed_in_ago_s, "seen": now - seen_ago_s}
    return itsdangerous.TimestampSigner(SECRET).sign(b64encode(json.dumps(data).encode())).decode()


def test_idle_and_absolute_timeouts_end_a_session(settings: Settings, index: Index) -> None:
    accounts.add_user(index, "dr-idle", Role.VIEWER, PASSWORD)
    with index.session() as session:  # an account made two days ago, so no session predates its password
        user = session.get(accounts.User, "dr-idle")
        assert user is not None
        user.password_changed_at -= timedelta(days=2)
    app = create_app(settings, index)
    for signed_in_ago, seen_ago, alive in ((60, 30, True), (3600, 31 * 60, False), (13 * 3600, 10, False)):
        client = TestClient(app, base_url=LOCAL)
        client.cookies.set(COOKIE, _forged_session("dr-idle", signed_in_ago, seen_ago))
        answer = client.get("/worklist", follow_redirects=False)
        assert (answer.status_code == 200) is alive, (signed_in_ago, seen_ago, answer.status_code)
        if not alive:
            assert answer.headers["location"] == "/signin?next=%2Fworklist"


def test_a_new_password_or_a_removal_ends_the_accounts_sessions(settings: Settings, index: Index) -> None:
    app = create_app(settings, index)
    client = session_client(app, index, "dr-moved", Role.RADIOLOGIST)
    assert client.get("/api/me").status_code == 200
    accounts.set_password(index, "dr-moved", "a brand new passphrase")
    assert client.get("/api/me").status_code == 401
    other = session_client(app, index, "dr-gone", Role.RADIOLOGIST)
    accounts.remove_user(index, "dr-gone")
    assert other.get("/api/me").status_code == 401
