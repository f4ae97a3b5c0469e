"""Defences every request passes, whoever sends it: the Host it names, the Origin of a state change,
JSON-only API writes, and the security headers of every answer."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from starlette.datastructures import Headers
from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

SAFE_METHODS = {"GET", "HEAD", "OPTIONS", "TRACE"}
#: Only our own scripts and styles; never framed; forms post only to us.
CSP = (
    "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data: blob:; connect-src 'self'; object-src 'none'; base-uri 'self'; "
    "form-action 'self'; frame-ancestors 'none'"
)
#: Swagger UI loads its script and style from jsDelivr; only admins reach /docs.
DOCS_CSP = CSP.replace("script-src 'self'", "script-src 'self' https://cdn.jsdelivr.net").replace(
    "style-src 'self'", "style-src 'self' https://cdn.jsdelivr.net"
)


def _host_name(value: str) -> str:
    """``Host`` or an origin's host part, without the port (``[::1]:8080`` -> ``[::1]``)."""
    if value.startswith("["):
        return value.split("]", 1)[0] + "]"
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


class OriginCheck:
    """Refuse a request whose Host is not one of ours (DNS rebinding), a state change whose Origin
    (or Referer) is another site's, and an API write whose body is not JSON (a cross-site
    ``text/plain`` or form post)."""

    def __init__(self, app: ASGIApp, hosts: list[str]) -> None:
        self.app = app
        self.hosts = {host.lower() for host in hosts} | {f"[{h.lower()}]" for h in hosts if ":" in h}

    def _refusal(self, scope: Scope) -> PlainTextResponse | None:
        headers = Headers(scope=scope)
        if _host_name(headers.get("host", "").lower()) not in self.hosts:
            return PlainTextResponse("this host name is not one the node answers to (web.allowed_hosts)", 400)
        if scope["method"] in SAFE_METHODS:
            return None
        source = headers.get("origin") or headers.get("referer")
        if source is not None:
            netloc = urlsplit(source).netloc.lower() if source != "null" else ""
            if _host_name(netloc) not in self.hosts:
                return PlainTextResponse("cross-origin request refused", 403)
        kind = headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if scope["path"].startswith("/api/") and kind and kind != "application/json":
            return PlainTextResponse("the API takes JSON bodies only (Content-Type: application/json)", 415)
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            refusal = self._refusal(scope)
            if refusal is not None:
                await refusal(scope, receive, send)
                return
        await self.app(scope, receive, send)


class SecurityHeaders:
    """CSP, no framing, no MIME sniffing, same-origin referrers; HSTS over HTTPS; pages not cached."""

    def __init__(self, app: ASGIApp, https: bool) -> None:
        self.app, self.https = app, https

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        policy = DOCS_CSP if scope["path"] == "/docs" else CSP

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers: list[Any] = list(message.get("headers", []))
                headers += [
                    (b"content-security-policy", policy.encode()),
                    (b"x-frame-options", b"DENY"),
                    (b"x-content-type-options", b"nosniff"),
                    (b"referrer-policy", b"same-origin"),
                ]
                if not any(name.lower() == b"cache-control" for name, _ in headers):
                    headers.append((b"cache-control", b"no-store"))  # patient data stays out of caches
                if self.https:
                    headers.append((b"strict-transport-security", b"max-age=31536000"))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)
