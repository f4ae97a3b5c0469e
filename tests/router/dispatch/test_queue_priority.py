"""Urgent studies jump the inference queue: on the real Redis broker, priority 0 is served first."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from radrouter.config.rules import Priority
from radrouter.config.settings import Settings
from radrouter.node.broker import EmbeddedRedis
from radrouter.router.dispatch.contract import TaskName, celery_app
from tests.services import free_port


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[str]:
    redis = EmbeddedRedis(free_port(), tmp_path / "redis")
    redis.start()
    yield redis.url
    redis.stop()


def test_a_stat_job_is_taken_before_routine_jobs_queued_earlier(redis_url: str) -> None:
    app = celery_app(Settings(broker={"url": redis_url}))
    for job_id in (1, 2, 3):
        app.send_task(
            TaskName.INFER, args=[job_id], queue="ct-pipeline", priority=Priority.ROUTINE.celery_priority
        )
    app.send_task(TaskName.INFER, args=[4], queue="ct-pipeline", priority=Priority.URGENT.celery_priority)
    app.send_task(TaskName.INFER, args=[5], queue="ct-pipeline", priority=Priority.STAT.celery_priority)

    served = []
    with app.connection_for_read() as connection:
        queue = connection.SimpleQueue("ct-pipeline")
        for _ in range(5):
            message = queue.get(timeout=10)
            args, _kwargs, _embed = message.payload
            served.append(args[0])
            message.ack()
        queue.close()
    assert served == [5, 4, 1, 2, 3]
