"""The worker side of Celery: the shared app, plus what each worker process holds (settings, index, store)."""

from __future__ import annotations

from functools import cache
from typing import Any

from celery import Celery
from celery.signals import worker_ready

from radrouter.config.settings import Settings, load_settings
from radrouter.router.dispatch import celery_app, queue_for
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
app.conf.imports = ["radrouter.inference.tasks", "radrouter.worklist.tasks", "radrouter.monitoring.tasks"]


@worker_ready.connect
def _load_models_before_the_first_task(sender: Any, **_: Any) -> None:
    """Load the models of the queues this worker serves now, not inside the first study's time."""
    from radrouter.inference.registry import available, loaded_pipeline

    served = {queue.name for queue in sender.app.amqp.queues.consume_from.values()}
    for pipeline in available():
        if queue_for(pipeline) in served:
            loaded_pipeline(pipeline, worker_settings().inference.device)
