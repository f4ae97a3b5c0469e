"""What every worker process reads once and keeps between tasks: its settings, the index, the store.

Built on first use, not at import, so importing a tasks module reads no config file.
"""

from __future__ import annotations

import uuid
from functools import cache

from radrouter.config.settings import Settings, load_settings
from radrouter.storage.index import Index
from radrouter.storage.store import InstanceStore


@cache
def process_incarnation() -> str:
    """This start of this process: a worker's jobs carry it, so its next start knows they are lost; an
    SCP's studies carry it (its receivers, forked after the first call, share it), so another SCP can
    complete the studies it left RECEIVING once its heartbeat stops."""
    return uuid.uuid4().hex


@cache
def worker_settings() -> Settings:
    """Read once per process, from RADROUTER_CONFIG and the environment, like every other process."""
    return load_settings()


@cache
def worker_index() -> Index:
    return Index(worker_settings().storage.resolved_index_url())


@cache
def worker_store() -> InstanceStore:
    settings = worker_settings()
    return InstanceStore(settings.storage.root, fsync=settings.storage.fsync)
