"""Storage commands run in-process against a test's own store and index."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from radrouter.storage.store import InstanceStore


def config_for(store: InstanceStore, folder: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A config file naming ``store`` and the index beside it (``folder/index.sqlite3``); the session's
    RADROUTER_ variables are unset for the test, so the command reads that file alone."""
    for key in list(os.environ):
        if key.startswith("RADROUTER_"):
            monkeypatch.delenv(key)
    config = folder / "radrouter.yaml"
    config.write_text(f"storage: {{root: {store.root}, index_url: 'sqlite:///{folder / 'index.sqlite3'}'}}\n")
    return config
