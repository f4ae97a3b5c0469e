"""What every worker process reads once and keeps between tasks: its settings, the index, the store.

Built on first use, not at import, so importing a tasks module reads no config file.
"""

from __future__ import annotations

import logging
import uuid
from functools import cache
from typing import Any

from sqlalchemy.exc import OperationalError

from radrouter.config.settings import Settings, load_settings
from radrouter.storage.index import Index
from radrouter.storage.store import InstanceStore

log = logging.getLogger(__name__)

#: How soon a task runs again when the index could not be written (locked past the busy timeout, on a
#: read-only or failing disk, its server down): retried until it can, never acknowledged as failed,
#: which would leave its job or delivery in flight under a live worker that no take-over hands on.
INDEX_RETRY_S = 5.0

#: The errors that say the index cannot be written now (SQLite's and PostgreSQL's alike).
IndexUnavailable = OperationalError


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


def retry_until_index_writable(task: Any, error: OperationalError, what: str) -> Any:
    """Send ``task`` (a bound Celery task) again in :data:`INDEX_RETRY_S`; raises Celery's Retry."""
    log.error("%s: the index cannot be written (%s); again in %.0f s", what, error.orig, INDEX_RETRY_S)
    return task.retry(exc=error, countdown=INDEX_RETRY_S, max_retries=None)
