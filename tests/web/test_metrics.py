"""Queue depth counts every waiting task, whatever its priority (Redis keeps one list per priority)."""

from __future__ import annotations

from pathlib import Path

from radrouter.config.settings import Settings
from radrouter.node.broker import EmbeddedRedis
from radrouter.router.dispatch.contract import DELIVERY_QUEUE, TaskName, celery_app, queue_for
from radrouter.web.prometheus import queue_depths, served_queues
from tests.services import free_port


def test_queue_depth_sums_the_priority_lists(tmp_path: Path) -> None:
    broker = EmbeddedRedis(free_port(), tmp_path)
    broker.start()
    try:
        settings = Settings(broker={"url": broker.url})
        celery = celery_app(settings)
        brain = queue_for(settings, "brain-extraction")
        assert served_queues(settings) == [DELIVERY_QUEUE, brain]
        for priority in (0, 3, 6, 6):
            celery.send_task(TaskName.INFER, args=[1], queue=brain, priority=priority)
        assert queue_depths(celery, served_queues(settings)) == {DELIVERY_QUEUE: 0, brain: 4}
    finally:
        broker.stop()
