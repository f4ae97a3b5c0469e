"""Routing a complete study: jobs recorded once, and a late instance during routing is not lost."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pydicom
import pytest

from radrouter.config.settings import CONFIG_ENV, Settings, load_settings
from radrouter.router.dispatch.contract import DELIVERY_QUEUE, TaskName, celery_app
from radrouter.router.route import study_router
from radrouter.router.route.header import SeriesHeader
from radrouter.router.route.rulebook import RuleBook
from radrouter.router.route.study_router import StudyRouter
from radrouter.storage.index import Delivery, DeliveryKind, Index, Job, Study, StudyState
from radrouter.storage.ingest import ReceivedInstance, record_instance
from radrouter.worklist.items import open_for_study
from tests.services import MPRAGE

FIRST, SECOND = sorted(MPRAGE.glob("*.dcm"))[:2]


def received(path: Path) -> ReceivedInstance:
    header = pydicom.dcmread(path, stop_before_pixels=True)
    return ReceivedInstance(
        study_uid=header.StudyInstanceUID,
        series_uid=header.SeriesInstanceUID,
        sop_uid=header.SOPInstanceUID,
        sop_class_uid=header.SOPClassUID,
        transfer_syntax_uid=header.file_meta.TransferSyntaxUID,
        modality=header.Modality,
        series_number=int(header.SeriesNumber),
        series_description=header.SeriesDescription,
        path=str(path),
        size=path.stat().st_size,
        calling_ae="MODALITY",
    )


@pytest.fixture(autouse=True)
def own_config_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CONFIG_ENV, "")  # load_settings sets it; keep it from leaking into other tests


@pytest.fixture
def router(tmp_path: Path) -> StudyRouter:
    settings = Settings(storage={"root": tmp_path})
    return StudyRouter(
        settings, Index(settings.storage.resolved_index_url()), celery_app(settings), open_for_study
    )


def test_a_complete_brain_mri_gets_one_brain_extraction_job(router: StudyRouter) -> None:
    study_uid = received(FIRST).study_uid
    record_instance(router.index, received(FIRST))

    queued = router.route(study_uid)

    assert [(task.name, task.queue, task.priority) for task in queued] == [
        (TaskName.INFER, "brain-extraction", 6)
    ]
    assert router.route(study_uid) == []  # already routed: nothing twice
    with router.index.session() as session:
        study = session.get(Study, study_uid)
        assert study is not None and study.state == StudyState.ROUTED
        assert session.query(Job).count() == 1


def test_an_instance_arriving_while_headers_are_read_defers_routing(
    router: StudyRouter, monkeypatch: pytest.MonkeyPatch
) -> None:
    study_uid = received(FIRST).study_uid
    record_instance(router.index, received(FIRST))
    read_headers = study_router.read_stored_headers

    def late_arrival(series: Any) -> list[SeriesHeader]:
        record_instance(router.index, received(SECOND))
        return read_headers(series)

    monkeypatch.setattr(study_router, "read_stored_headers", late_arrival)
    assert router.route(study_uid) == []
    with router.index.session() as session:
        study = session.get(Study, study_uid)
        assert study is not None and study.state == StudyState.RECEIVING

    monkeypatch.setattr(study_router, "read_stored_headers", read_headers)
    assert len(router.route(study_uid)) == 1  # the assembler's next completion routes it


def write_config(path: Path, rules: str) -> Path:
    path.write_text(f"storage: {{root: {path.parent}}}\nrules:\n{rules}")
    return path


def test_forwards_are_recorded_as_deliveries_of_originals_and_queued_for_delivery(tmp_path: Path) -> None:
    config = write_config(
        tmp_path / "radrouter.yaml", "  - {name: mr-to-pacs, match: {Modality: MR}, forward_to: [pacs]}\n"
    )
    settings = load_settings(config)
    router = StudyRouter(
        settings, Index(settings.storage.resolved_index_url()), celery_app(settings), open_for_study
    )
    record_instance(router.index, received(FIRST))

    queued = router.route(received(FIRST).study_uid)

    assert [(task.name, task.queue) for task in queued] == [(TaskName.FORWARD, DELIVERY_QUEUE)]
    with router.index.session() as session:
        delivery = session.get(Delivery, queued[0].record_id)
        assert delivery is not None
        assert (delivery.kind, delivery.series_uid, delivery.destination, delivery.rule) == (
            DeliveryKind.ORIGINAL,
            received(FIRST).series_uid,
            "pacs",
            "mr-to-pacs",
        )
        study = session.get(Study, received(FIRST).study_uid)
        assert study is not None and study.state == StudyState.ROUTED


def test_the_router_uses_the_rules_on_disk_at_the_time_of_each_study(tmp_path: Path) -> None:
    config = write_config(tmp_path / "radrouter.yaml", "  - {name: drop-all, discard: true}\n")
    settings = load_settings(config)
    index = Index(settings.storage.resolved_index_url())
    router = StudyRouter(settings, index, celery_app(settings), open_for_study, RuleBook(settings, config))
    record_instance(router.index, received(FIRST))
    assert router.route(received(FIRST).study_uid) == []

    write_config(config, "  - {name: forward-all, forward_to: [pacs]}\n")
    os.utime(config, ns=(config.stat().st_atime_ns, config.stat().st_mtime_ns + 1_000_000_000))
    record_instance(router.index, received(SECOND))  # a late instance: the study is routed again

    assert [task.name for task in router.route(received(FIRST).study_uid)] == [TaskName.FORWARD]


def test_a_series_rule_queues_its_series_before_the_study_completes_and_only_once(tmp_path: Path) -> None:
    config = write_config(
        tmp_path / "radrouter.yaml",
        "  - {name: mr-series, match: {Modality: MR}, completion: series, pipelines: [brain-extraction],"
        " forward_to: [pacs]}\n",
    )
    settings = load_settings(config)
    router = StudyRouter(
        settings, Index(settings.storage.resolved_index_url()), celery_app(settings), open_for_study
    )
    first = received(FIRST)
    record_instance(router.index, first)

    queued = router.route_series(first.study_uid, first.series_uid)

    assert sorted(task.name for task in queued) == [TaskName.FORWARD, TaskName.INFER]
    assert router.route_series(first.study_uid, first.series_uid) == []  # the same series again
    with router.index.session() as session:
        study = session.get(Study, first.study_uid)
        assert study is not None and study.state == StudyState.RECEIVING
    assert router.route(first.study_uid) == []  # the study's completion runs nothing twice
    with router.index.session() as session:
        study = session.get(Study, first.study_uid)
        assert study is not None and study.state == StudyState.ROUTED and study.completed_at is not None
        assert session.query(Job).count() == 1
        assert session.query(Delivery).count() == 1


def test_study_rules_wait_for_the_study(router: StudyRouter) -> None:
    first = received(FIRST)
    record_instance(router.index, first)
    assert router.route_series(first.study_uid, first.series_uid) == []  # the default rule is a study rule
    assert len(router.route(first.study_uid)) == 1


def test_a_study_keeps_the_longest_retention_of_the_rules_that_matched_it(tmp_path: Path) -> None:
    config = write_config(
        tmp_path / "radrouter.yaml",
        "  - {name: research, match: {Modality: MR}, retention: {keep_images_h: 720}}\n"
        "  - {name: short, match: {Modality: MR}, retention: {keep_images_h: 1, keep_results_h: 2}}\n"
        "  - {name: ct-only, match: {Modality: CT}, retention: {keep_images_h: 9000}}\n",
    )
    settings = load_settings(config)
    router = StudyRouter(
        settings, Index(settings.storage.resolved_index_url()), celery_app(settings), open_for_study
    )
    record_instance(router.index, received(FIRST))
    router.route(received(FIRST).study_uid)
    with router.index.session() as session:
        study = session.get(Study, received(FIRST).study_uid)
        assert study is not None and study.state == StudyState.DONE  # retention is no work
        assert (study.keep_images_h, study.keep_results_h) == (720, 2)
