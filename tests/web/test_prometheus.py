"""The node's metrics: queue depth over every priority list, inference seconds counted by the index."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pytest

from radrouter.config.rules import Priority
from radrouter.config.settings import Settings
from radrouter.node.broker import EmbeddedRedis
from radrouter.router.dispatch.contract import DELIVERY_QUEUE, TaskName, celery_app, queue_for
from radrouter.storage.index import Index, Job, JobState, Series, Study
from radrouter.web.prometheus import NodeCollector, queue_depths, served_queues
from tests.services import PostgreSQL, free_port


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


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_inference_seconds_are_counted_by_the_index_per_bucket(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """The histogram comes from one aggregate query, on either index, with the jobs' own durations."""
    url = f"sqlite:///{tmp_path}/index.sqlite3"
    if backend == "postgresql":
        server: PostgreSQL = request.getfixturevalue("postgres")
        url = server.create_database()
    index = Index(url, migrate=True)
    start = datetime(2026, 6, 1, 8, 0)
    with index.session() as session:
        session.add(Study(uid="1.2"))
        session.flush()
        session.add(Series(uid="1.2.1", study_uid="1.2"))
        session.flush()
        for n, seconds in enumerate((0.5, 3.0, 30.0, 1000.0)):
            job = Job(
                study_uid="1.2",
                series_uid="1.2.1",
                pipeline="ct-lung",
                revision=n,
                priority=Priority.ROUTINE,
                rule="r",
            )
            job.state, job.started_at = JobState.DONE, start
            job.finished_at = start + timedelta(seconds=seconds)
            session.add(job)
    settings = Settings(storage={"root": tmp_path}, broker={"url": f"redis://127.0.0.1:{free_port()}/0"})

    families = {
        family.name: family for family in NodeCollector(settings, index, celery_app(settings)).collect()
    }

    samples = {
        (sample.name, sample.labels.get("le")): sample.value
        for sample in families["radrouter_inference_seconds"].samples
    }
    assert samples[("radrouter_inference_seconds_bucket", "1.0")] == 1
    assert samples[("radrouter_inference_seconds_bucket", "5.0")] == 2
    assert samples[("radrouter_inference_seconds_bucket", "40.0")] == 3
    assert samples[("radrouter_inference_seconds_bucket", "640.0")] == 3
    assert samples[("radrouter_inference_seconds_bucket", "+Inf")] == 4
    assert samples[("radrouter_inference_seconds_sum", None)] == pytest.approx(1033.5, abs=0.01)
    index.engine.dispose()
