"""The storage volume made visible: Prometheus gauges, the dashboard's panel and its JSON, and the alert
when the free-space reserve is reached with nothing left to purge."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from radrouter.config.settings import RetentionSettings, Settings
from radrouter.router.dispatch.contract import celery_app
from radrouter.storage import retention
from radrouter.storage.index import Index, JobState, StudyState
from radrouter.storage.retention import DiskUsage, Purger
from radrouter.storage.store import InstanceStore
from radrouter.web import dashboard
from radrouter.web.prometheus import NodeCollector, node_storage, storage_metrics
from tests.access import app_of, token_client
from tests.services import free_port
from tests.storage.test_retention import _study

GB = 10**9
ROOMY = DiskUsage(total=100 * GB, used=40 * GB, free=60 * GB)
FULL = DiskUsage(total=100 * GB, used=99 * GB, free=GB // 2)


@pytest.fixture
def node(tmp_path: Path) -> tuple[Settings, Index, InstanceStore]:
    settings = Settings(
        storage={
            "root": tmp_path / "data",
            "index_url": f"sqlite:///{tmp_path / 'index.sqlite3'}",
            "free_space_reserve_mb": 1024,
        },
        broker={"url": f"redis://127.0.0.1:{free_port()}/0"},
    )
    index = Index(settings.storage.resolved_index_url())
    return settings, index, InstanceStore(settings.storage.root, fsync=False)


def _samples(
    settings: Settings, index: Index, whole_node: bool = False
) -> dict[tuple[str, str | None], float]:
    """The storage gauges, from the node's collector (which also asks the broker) or on their own."""
    if whole_node:
        families = list(NodeCollector(settings, index, celery_app(settings)).collect())
    else:
        families = list(storage_metrics(node_storage(settings, index)))
    return {
        (sample.name, sample.labels.get("state")): sample.value
        for family in families
        if family.name.startswith("radrouter_storage")
        for sample in family.samples
    }


def test_storage_gauges(node: tuple[Settings, Index, InstanceStore], monkeypatch: pytest.MonkeyPatch) -> None:
    settings, index, store = node
    monkeypatch.setattr(retention, "disk_usage", lambda store: ROOMY)
    _study(index, store, 1)  # finished 100 h ago: due
    _study(index, store, 2, settled_h_ago=1)  # finished, kept for now: eligible above the watermark
    _study(index, store, 3, state=StudyState.PROCESSING, job=JobState.RUNNING)
    Purger(RetentionSettings(keep_images_h=72), index, store).run_once()

    samples = _samples(settings, index, whole_node=True)

    assert samples[("radrouter_storage_bytes", "DONE")] == 3000  # study 2 (study 1's were purged)
    assert samples[("radrouter_storage_bytes", "PROCESSING")] == 3000
    assert samples[("radrouter_storage_bytes", "RECEIVING")] == 0
    assert samples[("radrouter_storage_eligible_bytes", None)] == 3000
    assert samples[("radrouter_storage_purged_studies", None)] == 1
    assert samples[("radrouter_storage_disk_used_percent", None)] == 40.0
    assert samples[("radrouter_storage_free_bytes", None)] == 60 * GB
    assert samples[("radrouter_storage_full", None)] == 0


def test_full_with_nothing_to_purge_is_an_alert_everywhere(
    node: tuple[Settings, Index, InstanceStore],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings, index, store = node
    monkeypatch.setattr(retention, "disk_usage", lambda store: FULL)
    monkeypatch.setattr(dashboard, "_workers", lambda celery: None)
    monkeypatch.setattr(dashboard, "queue_depths", lambda celery, queues: {})
    _study(index, store, 3, state=StudyState.PROCESSING, job=JobState.RUNNING)

    assert _samples(settings, index)[("radrouter_storage_full", None)] == 1
    with caplog.at_level(logging.WARNING, logger="radrouter.storage.retention"):
        Purger(settings.retention, index, store, reserve_bytes=1024 * 1024 * 1024).run_once()
    assert "within the reserve" in caplog.text and "no finished study is left to purge" in caplog.text

    app = app_of(
        settings, index, dashboard.dashboard_router(settings, index, celery_app(settings), lambda: "ok")
    )
    client = token_client(app, index)
    status = client.get("/api/storage").json()
    assert status["stuck"] is True and status["eligible_bytes"] == 0
    assert status["bytes_by_state"]["PROCESSING"] == 3000 and status["used_pct"] == 99.0
    assert "Out of Resources" in status["why"]
    page = client.get("/dashboard").text
    assert 'id="storage-full"' in page and "no finished study is left to purge" in page
    assert 'id="storage"' in page and "99.0 GB (99.0%)" in page


def test_no_alert_while_something_can_be_purged(
    node: tuple[Settings, Index, InstanceStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    settings, index, store = node
    monkeypatch.setattr(retention, "disk_usage", lambda store: FULL)
    monkeypatch.setattr(dashboard, "_workers", lambda celery: None)
    monkeypatch.setattr(dashboard, "queue_depths", lambda celery, queues: {})
    _study(index, store, 2, settled_h_ago=1)
    app = app_of(
        settings, index, dashboard.dashboard_router(settings, index, celery_app(settings), lambda: "ok")
    )
    client = token_client(app, index)
    status = client.get("/api/storage").json()
    assert (status["reserve_reached"], status["stuck"], status["eligible_bytes"]) == (True, False, 3000)
    page = client.get("/dashboard").text
    assert 'id="storage-full"' not in page and 'id="storage"' in page
