"""The worker app: the one module that imports every tasks module and wires a worker's start and stop.

Tasks are declared with ``shared_task``, so no tasks module builds or imports an app; this module
builds it from the settings when asked (``radrouter worker``, or ``celery -A radrouter.worker``), never
at import.
"""

from __future__ import annotations

import gc
from functools import cache
from typing import Any

from celery import Celery
from celery.signals import worker_ready, worker_shutdown

from radrouter.config.settings import Settings
from radrouter.inference import tasks as inference_tasks
from radrouter.inference.standard_tables import cache_standard_lookups
from radrouter.monitoring import tasks as monitoring_tasks
from radrouter.router.deliver import tasks as delivery_tasks
from radrouter.router.dispatch.contract import DELIVERY_QUEUE, celery_app
from radrouter.router.dispatch.heartbeat import heartbeat_key, keep_beating
from radrouter.router.dispatch.worker import process_incarnation, worker_settings
from radrouter.worklist import tasks as worklist_tasks

#: Every module whose tasks a worker runs; each task's name is in ``router.dispatch.contract``.
TASK_MODULES = (inference_tasks, delivery_tasks, worklist_tasks, monitoring_tasks)


def _worker_started(sender: Any, **_: Any) -> None:
    settings = worker_settings()
    key = heartbeat_key(sender.hostname, process_incarnation())
    keep_beating(settings.broker.resolved_url(), key, settings.inference.worker_lost_after_s)
    inference_tasks.take_over_lost_jobs(sender.app, sender.hostname)
    delivery_tasks.take_over_lost_deliveries(sender.app, sender.hostname)
    if DELIVERY_QUEUE in {queue.name for queue in sender.app.amqp.queues.consume_from.values()}:
        delivery_tasks.take_over_lost_aftercare(sender.app)
    inference_tasks.load_served_pipelines(sender.app)
    # What a worker holds from its start on (imported modules, warm models) is left out of every
    # later collection, which would walk it all again in some task's time (each model load above
    # has collected already; a worker with no model has little garbage yet).
    gc.freeze()


def _worker_stopping(**_: Any) -> None:
    delivery_tasks.release_open_associations()


def create_worker_app(settings: Settings) -> Celery:
    """The Celery app of a worker process, with every task registered and start/stop wired."""
    app = celery_app(settings)
    app.conf.imports = [module.__name__ for module in TASK_MODULES]
    # A task's follow-ups (deliveries, triage, a retry) wait out a broker restart (about 2 min) rather
    # than fail with their record already written; the SCP's reconciler covers a longer outage.
    app.conf.task_publish_retry_policy = {
        "max_retries": 120,
        "interval_start": 0.5,
        "interval_step": 0.5,
        "interval_max": 1.0,
    }
    app.set_current()
    cache_standard_lookups()  # volumes, SEGs and SRs look each SOP class up once, not once per slice
    worker_ready.connect(_worker_started, weak=False)
    worker_shutdown.connect(_worker_stopping, weak=False)
    return app


@cache
def _app() -> Celery:
    return create_worker_app(worker_settings())


def __getattr__(name: str) -> Celery:
    """``celery -A radrouter.worker`` (the compose healthchecks) finds ``app`` here, built on first use."""
    if name == "app":
        return _app()
    raise AttributeError(name)
