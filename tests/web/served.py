"""The web app served for page tests: uvicorn on a free port in a thread, over the test's own index."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn

from radrouter.config.settings import Settings
from radrouter.storage.index import Index
from radrouter.web.app import create_app
from tests.services import port_open, wait_until


@contextmanager
def serving(settings: Settings, index: Index, port: int) -> Iterator[str]:
    """``create_app`` on ``port`` until the block ends; yields its base URL."""
    server = uvicorn.Server(uvicorn.Config(create_app(settings, index), port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_until(lambda: port_open(port), 30, "the web app")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
