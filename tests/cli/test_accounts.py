"""`radrouter users` and `radrouter tokens` as an admin runs them (real processes), and what the web app
makes of the accounts and tokens they leave in the index."""

from __future__ import annotations

from pathlib import Path

import yaml
from fastapi.testclient import TestClient

from radrouter.config.access import Role
from radrouter.config.settings import Settings
from radrouter.storage import accounts
from radrouter.storage.index import Index
from radrouter.web.app import create_app
from tests.access import LOCAL, PASSWORD, add_token, add_user, bearer, cli, sign_in


def test_users_are_added_listed_given_a_new_password_and_removed(tmp_path: Path) -> None:
    config = tmp_path / "radrouter.yaml"
    config.write_text(yaml.safe_dump({"storage": {"root": str(tmp_path / "data")}}))
    add_user(config, "dr-house", Role.RADIOLOGIST)
    twice = cli(config, "users", "add", "dr-house", "--password-stdin", stdin=PASSWORD + "\n")
    assert twice.returncode == 1 and "exists already" in twice.stderr
    short = cli(config, "users", "add", "dr-short", "--password-stdin", stdin="short\n")
    assert short.returncode == 2 and "at least 10 characters" in short.stderr
    listed = cli(config, "users", "list").stdout
    assert "dr-house" in listed and "radiologist" in listed and "dr-short" not in listed

    index = Index(Settings(storage={"root": tmp_path / "data"}).storage.resolved_index_url())
    stored = {u["name"]: u for u in accounts.users(index)}
    assert list(stored) == ["dr-house"] and stored["dr-house"]["role"] == "radiologist"
    with index.session() as session:  # argon2id, never the password
        user = session.get(accounts.User, "dr-house")
        assert user is not None and user.password_hash is not None
        assert user.password_hash.startswith("$argon2id$") and PASSWORD not in user.password_hash

    new = "a much longer new passphrase"
    assert cli(config, "users", "passwd", "dr-house", "--password-stdin", stdin=new + "\n").returncode == 0
    assert accounts.check_password(index, "dr-house", new, Settings().web.sign_in).role == Role.RADIOLOGIST
    assert cli(config, "users", "remove", "dr-house").returncode == 0
    assert accounts.users(index) == []


def test_a_service_token_works_until_it_is_revoked(tmp_path: Path) -> None:
    config = tmp_path / "radrouter.yaml"
    settings = Settings(storage={"root": tmp_path / "data"})
    config.write_text(yaml.safe_dump({"storage": {"root": str(tmp_path / "data")}}))
    token = add_token(config, "ci-script", Role.VIEWER)
    assert token.startswith("rr_") and len(token) > 40
    listed = cli(config, "tokens", "list").stdout
    assert "ci-script" in listed and token not in listed

    index = Index(settings.storage.resolved_index_url())
    with index.session() as session:  # only the digest is kept
        assert token not in str(session.scalars(accounts.select(accounts.ServiceToken.digest)).all())
    client = TestClient(create_app(settings, index), base_url=LOCAL)
    assert client.get("/api/me", headers=bearer(token)).json() == {
        "name": "token:ci-script",
        "role": "viewer",
        "service": True,
    }
    assert client.post("/api/deliveries/retry", headers=bearer(token)).status_code == 403  # scoped

    assert cli(config, "tokens", "revoke", "ci-script").returncode == 0
    assert client.get("/api/me", headers=bearer(token)).status_code == 401
    assert client.get("/api/me", headers=bearer("rr_" + "x" * 43)).status_code == 401
    assert sign_in(client, "nobody").status_code == 401
