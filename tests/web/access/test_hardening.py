"""What the probe of the default node found, refused: a foreign Host (DNS rebinding), a cross-site
state change (Origin or Referer of another site), a text/plain or form post to the API, and answers
without security headers."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from radrouter.config.access import Role
from radrouter.config.settings import Settings
from radrouter.storage.index import Index
from radrouter.web.app import create_app
from tests.access import LOCAL, token_client


@pytest.fixture
def index(tmp_path: Path) -> Index:
    return Index(f"sqlite:///{tmp_path / 'index.sqlite3'}")


@pytest.fixture
def admin(tmp_path: Path, index: Index) -> TestClient:
    return token_client(create_app(Settings(storage={"root": tmp_path}), index), index)


def test_a_host_the_node_does_not_answer_to_is_refused(admin: TestClient) -> None:
    for path in ("/api/health", "/dicomweb/studies/1.2.3", "/signin"):
        assert admin.get(path, headers={"host": "attacker.example"}).status_code == 400, path
    for host in ("127.0.0.1:8080", "localhost", "[::1]:8080"):
        assert admin.get("/api/health", headers={"host": host}).status_code == 200, host


def test_allowed_hosts_name_the_node_behind_its_dns_name(tmp_path: Path, index: Index) -> None:
    settings = Settings(storage={"root": tmp_path}, web={"allowed_hosts": ["radrouter.hospital.example"]})
    client = token_client(create_app(settings, index), index)
    assert client.get("/api/health", headers={"host": "radrouter.hospital.example"}).status_code == 200
    assert client.get("/api/health").status_code == 400  # 127.0.0.1 is no longer one of the names


def test_a_cross_site_post_is_refused_whatever_it_carries(admin: TestClient) -> None:
    path = "/api/worklist/1.2.3/read"
    assert admin.post(path, headers={"origin": "http://evil.example"}).status_code == 403
    assert admin.post(path, headers={"origin": "null"}).status_code == 403
    assert admin.post(path, headers={"referer": "http://evil.example/page"}).status_code == 403
    assert admin.post(path, headers={"origin": "http://127.0.0.1:8080"}).status_code == 404  # ours
    # The probe's empty text/plain form, and a urlencoded one: the API takes JSON only.
    assert admin.post(path, content=b"", headers={"content-type": "text/plain"}).status_code == 415
    form = admin.post("/api/deliveries/retry", data={"ids": "1"})
    assert form.status_code == 415
    assert admin.post(path, json={"verdict": "agree"}).status_code == 404


def test_every_answer_carries_the_security_headers(admin: TestClient, tmp_path: Path, index: Index) -> None:
    for path in ("/api/health", "/worklist", "/signin", "/dicomweb/studies/1.2.3"):
        headers = admin.get(path).headers
        assert "frame-ancestors 'none'" in headers["content-security-policy"], path
        assert headers["x-frame-options"] == "DENY"
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["referrer-policy"] == "same-origin"
    viewer = token_client(create_app(Settings(storage={"root": tmp_path}), index), index, Role.VIEWER)
    assert viewer.get("/docs").status_code == 403 and admin.get("/docs").status_code == 200
    assert "/api/worklist" in admin.get("/openapi.json").json()["paths"]
    assert TestClient(admin.app, base_url=LOCAL).get("/openapi.json").status_code == 401
