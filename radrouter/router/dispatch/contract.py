"""The contract between the router and the workers: task names, queue names and the Celery app factory.

Both sides import this small module and nothing heavier: the router names tasks by string and never
imports the code that runs them. Task names never change once released, because messages already
queued in Redis carry them.
"""

from __future__ import annotations

import enum

from celery import Celery

from radrouter.config.pipelines import pool_queue
from radrouter.config.settings import Settings


class TaskName(enum.StrEnum):
    """Every Celery task of the node, by the name its messages carry."""

    INFER = "radrouter.infer"
    DELIVER = "radrouter.deliver"
    FORWARD = "radrouter.forward"
    TRIAGE = "radrouter.triage"
    HL7 = "radrouter.hl7"
    MONITOR = "radrouter.monitor"


#: Deliveries, forwards, triage, HL7 and monitoring share this queue; each pipeline or pool has its own.
DELIVERY_QUEUE = "delivery"


def celery_app(settings: Settings) -> Celery:
    """The Celery app producers and workers share, set up for priorities on the Redis broker."""
    app = Celery("radrouter", broker=settings.broker.resolved_url(), set_as_current=False)
    app.conf.update(
        broker_transport_options={
            "priority_steps": list(range(10)),
            "sep": ":",
            "queue_order_strategy": "priority",
            # A task whose worker died (kill -9, power loss) goes back to its queue after this long;
            # the sweep that looks for such tasks runs a few times per timeout.
            "visibility_timeout": settings.broker.visibility_timeout_s,
            "unacked_restore_interval": max(1, min(10, settings.broker.visibility_timeout_s // 4)),
            "unacked_restore_throttle": 1,
        },
        broker_connection_retry_on_startup=True,
        worker_prefetch_multiplier=1,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_default_priority=settings.default_priority.celery_priority,
        task_default_queue=DELIVERY_QUEUE,
        task_ignore_result=True,
        worker_hijack_root_logger=False,
    )
    return app


def queue_for(settings: Settings, pipeline: str) -> str:
    """A pooled pipeline goes to its pool's queue; any other has its own, served by its own worker."""
    for pool_name, pool in settings.pools.items():
        if pipeline in pool.pipelines:
            return pool_queue(pool_name)
    return pipeline
