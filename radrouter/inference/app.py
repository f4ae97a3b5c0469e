"""The worker side of Celery: the shared app, plus what each worker process holds (settings, index, store)."""

from __future__ import annotations

from functools import cache

from celery import Celery

from radrouter.config.settings import Settings, load_settings
from radrouter.router.dispatch import celery_app
from radrouter.storage.index import Index
from radrouter.storage.store import InstanceStore


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


app: Celery = celery_app(worker_settings())
app.conf.imports = ["radrouter.inference.tasks"]
