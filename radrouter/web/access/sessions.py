"""Page sessions: a signed, HttpOnly, SameSite=Lax cookie (Starlette's SessionMiddleware) holding the
account name and when it signed in; idle and absolute timeouts are checked on every request, and the
account is read again each time, so a removed account or a changed password ends its sessions."""

from __future__ import annotations

import secrets
import time
from datetime import UTC, datetime
from pathlib import Path

from fastapi import Request

from radrouter.config.access import Role, SessionSettings
from radrouter.config.settings import Settings
from radrouter.storage import accounts
from radrouter.storage.index import Index

COOKIE = "radrouter_session"


def session_secret(settings: Settings) -> str:
    """The configured key, or one made once per node and kept (0600) next to the index."""
    if settings.web.session.secret_key is not None:
        return settings.web.session.secret_key.get_secret_value()
    path = Path(settings.storage.root) / "web-secret"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.write_text(secrets.token_urlsafe(48))
    return path.read_text().strip()


def start_session(request: Request, name: str) -> None:
    """A fresh session for ``name`` (anything the cookie held before is dropped)."""
    now = time.time()
    request.session.clear()
    request.session.update(user=name, signed_in=now, seen=now)


def end_session(request: Request) -> str | None:
    """Sign out; the name that was signed in, if any."""
    name = request.session.get("user")
    request.session.clear()
    return name if isinstance(name, str) else None


def session_user(request: Request, rules: SessionSettings, index: Index) -> tuple[str, Role] | None:
    """The signed-in account and its role now, or None (no session, timed out, account gone)."""
    if "session" not in request.scope:
        return None
    name, signed_in, seen = (request.session.get(key) for key in ("user", "signed_in", "seen"))
    if not isinstance(name, str) or not isinstance(signed_in, float) or not isinstance(seen, float):
        return None
    now = time.time()
    if now - seen > rules.idle_timeout_min * 60 or now - signed_in > rules.absolute_timeout_h * 3600:
        request.session.clear()
        return None
    role = accounts.session_user(index, name, datetime.fromtimestamp(signed_in, UTC).replace(tzinfo=None))
    if role is None:
        request.session.clear()
        return None
    request.session["seen"] = now
    return name, role
