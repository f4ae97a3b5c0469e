"""One layout for every page: the templates, the navigation, the static files, who is signed in.

Pages are Jinja2 templates extending ``base.html``; styling is Pico CSS served from the package (no
CDN: a node may have no internet). The layout shows the signed-in user and role when the request
carries one (``request.state.user``, with ``.name`` and ``.role``) and puts the CSRF token in a
``<meta>`` tag that ``radrouter.js`` sends with every state-changing fetch.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

HERE = Path(__file__).parent
TEMPLATES = Jinja2Templates(directory=HERE / "templates")


@dataclass(frozen=True)
class NavItem:
    label: str
    href: str


NAVIGATION = (
    NavItem("Reading list", "/worklist"),
    NavItem("Dashboard", "/dashboard"),
    NavItem("Monitoring", "/monitoring"),
    NavItem("Configuration", "/config"),
)


def mount_static(app: FastAPI) -> None:
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")


def render(request: Request, template: str, context: dict[str, Any], status_code: int = 200) -> HTMLResponse:
    """``template`` in the layout, with the navigation marked where the page is."""
    here = next((item.href for item in NAVIGATION if request.url.path.startswith(item.href)), None)
    layout = {
        "navigation": NAVIGATION,
        "here": here,
        "user": getattr(request.state, "user", None),
        "csrf_token": getattr(request.state, "csrf_token", ""),
    }
    return TEMPLATES.TemplateResponse(request, template, {**layout, **context}, status_code=status_code)
