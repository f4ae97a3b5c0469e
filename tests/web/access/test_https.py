"""HTTPS for the web app: `radrouter web` as a real process with web.tls set, a certificate from a test
CA made by openssl; the session cookie is Secure there and plain HTTP is not served."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from radrouter.config.access import Role
from radrouter.storage import accounts
from radrouter.storage.index import Index
from radrouter.web.access.sessions import COOKIE
from tests.access import PASSWORD, sign_in, web_process
from tests.pki import certificate_authority, signed_certificate


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    folder = tmp_path_factory.mktemp("https")
    certificate_authority(folder, "radrouter test CA")
    signed_certificate(folder, "web", "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")
    index = Index(f"sqlite:///{folder / 'data' / 'index.sqlite3'}", migrate=True)
    accounts.add_user(index, "dr-https", Role.RADIOLOGIST, PASSWORD)
    tls = {"cert_file": str(folder / "web.crt"), "key_file": str(folder / "web.key")}
    with web_process(folder, {"tls": tls}, "https") as url:
        yield url, folder / "ca.crt"


def test_the_web_app_speaks_https_with_a_secure_session_cookie(served: tuple[str, Path]) -> None:
    url, ca = served
    with httpx.Client(base_url=url, verify=ssl.create_default_context(cafile=str(ca))) as client:
        health = client.get("/api/health")
        assert health.status_code == 200
        assert health.headers["strict-transport-security"].startswith("max-age=")
        signed_in = sign_in(client, "dr-https")
        assert signed_in.status_code == 303
        set_cookie = [
            v for k, v in signed_in.headers.multi_items() if k == "set-cookie" and v.startswith(COOKIE)
        ]
        assert set_cookie and "secure" in set_cookie[0].lower() and "httponly" in set_cookie[0].lower()
        assert client.get("/api/me").json()["name"] == "dr-https"
    with pytest.raises(httpx.ConnectError):  # a client that does not trust the test CA refuses it
        httpx.get(f"{url}/api/health")
    with pytest.raises(httpx.HTTPError):  # and plain HTTP gets no answer
        httpx.get(url.replace("https://", "http://") + "/api/health")
