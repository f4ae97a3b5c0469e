"""The worker side of Celery: the shared app, plus what each worker process holds (settings, index, store)."""

from __future__ import annotations

import logging
from functools import cache
from typing import Any

from celery import Celery
from celery.signals import worker_ready, worker_shutdown

from radrouter.config.settings import Settings, load_settings
from radrouter.inference.registry import WarmPipelines, available
from radrouter.inference.standard_tables import load_standard_tables
from radrouter.router.associations import AssociationPool
from radrouter.router.dispatch import celery_app, config_file_from_environment, queue_for
from radrouter.router.rulebook import RuleBook
from radrouter.storage.index import Index
from radrouter.storage.store import InstanceStore

log = logging.getLogger(__name__)


@cache
def worker_settings() -> Settings:
    """Read once per process, from RADROUTER_CONFIG and the environment, like every other process."""
    return load_settings()


@cache
def worker_index() -> Index:
    return Index(worker_settings().storage.resolved_index_url())


@cache
def worker_rulebook() -> RuleBook:
    """Destinations as the config file says now: a destination added by a reload is reachable at once.

    Built on first use from the file as it is then (not from the settings read at start-up), so an edit
    made before a worker's first delivery is not mistaken for the start-up config."""
    return RuleBook(load_settings(), config_file_from_environment())


@cache
def worker_pipelines() -> WarmPipelines:
    """The models this process keeps warm between tasks."""
    return WarmPipelines(worker_settings())


@cache
def worker_associations() -> AssociationPool:
    """Associations to destinations this process keeps open between deliveries."""
    return AssociationPool(worker_settings().delivery.keep_open_s)


@cache
def worker_store() -> InstanceStore:
    settings = worker_settings()
    return InstanceStore(settings.storage.root, fsync=settings.storage.fsync)


app: Celery = celery_app(worker_settings())
app.conf.imports = ["radrouter.inference.tasks", "radrouter.worklist.tasks", "radrouter.monitoring.tasks"]


@worker_ready.connect
def _load_models_before_the_first_task(sender: Any, **_: Any) -> None:
    """Load the models of the queues this worker serves now, not inside the first study's time."""
    settings = worker_settings()
    served = {queue.name for queue in sender.app.amqp.queues.consume_from.values()}
    mine = [name for name in available(settings) if queue_for(settings, name) in served]
    if mine:
        load_standard_tables()
    for pipeline in mine[: settings.inference.max_loaded_pipelines]:
        try:
            worker_pipelines().get(pipeline)
        except Exception:
            # The worker stays up: its jobs for this pipeline fail with the reason, the others run.
            log.exception("pipeline %s could not be loaded", pipeline)


@worker_shutdown.connect
def _release_open_associations(**_: Any) -> None:
    if worker_associations.cache_info().currsize:
        worker_associations().close()
