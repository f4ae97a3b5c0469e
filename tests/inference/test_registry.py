"""Where pipelines come from, and which ones a worker keeps warm."""

from __future__ import annotations

import gc
import weakref
from pathlib import Path

import pytest
import yaml

from radrouter.config.settings import Settings
from radrouter.inference.registry import DuplicatePipeline, WarmPipelines, catalogue
from tests.user_models import TORCHSCRIPT_VERSION, user_pipelines_yaml

DESTINATIONS = "destinations: {pacs: {host: 127.0.0.1, port: 4242, ae_title: PACS}}\n"


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    models = tmp_path_factory.mktemp("models")
    return Settings(**yaml.safe_load(DESTINATIONS + user_pipelines_yaml(models)))


def _entry_point_distribution(site: Path) -> None:
    """An installed distribution (dist-info on sys.path) that declares a pipeline by entry point."""
    (site / "radrouter_demo_pipeline.py").write_text(
        "from radrouter.inference.models.ct_lung import CTLung\n\n"
        "class DemoLung(CTLung):\n    name = 'demo-lung'\n    version = '2.5'\n"
    )
    info = site / "radrouter_demo_pipeline-2.5.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: radrouter-demo-pipeline\nVersion: 2.5\n")
    (info / "entry_points.txt").write_text(
        "[radrouter.pipelines]\ndemo-lung = radrouter_demo_pipeline:DemoLung\n"
    )


def test_pipelines_come_from_three_places(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _entry_point_distribution(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    found = catalogue(settings)
    assert found["ct-lung"].source == "built-in"
    assert found["demo-lung"].source == "entry point radrouter_demo_pipeline:DemoLung"
    assert found["demo-lung"].version == "2.5"
    assert found["threshold-ts"].source.startswith("torchscript ")
    assert found["threshold-ts"].version == TORCHSCRIPT_VERSION
    assert found["threshold-bundle"].source.startswith("monai-bundle ")


def test_a_name_declared_twice_is_refused(settings: Settings) -> None:
    twice = settings.model_copy(update={"pipelines": {"ct-lung": settings.pipelines["threshold-ts"]}})
    with pytest.raises(DuplicatePipeline, match="'ct-lung' is declared twice: built-in and torchscript"):
        catalogue(twice)


def test_the_least_recently_used_model_is_evicted(settings: Settings) -> None:
    warm = WarmPipelines(
        settings.model_copy(
            update={
                "inference": settings.inference.model_copy(
                    update={"max_loaded_pipelines": 2, "min_free_memory_mb": 0}
                )
            }
        )
    )
    first = warm.get("threshold-ts")
    warm.get("threshold-bundle")
    assert warm.get("threshold-ts") is first  # a hit: same loaded object, now most recent
    warm.get("strict-slices")
    assert warm.loaded == ["threshold-ts", "strict-slices"]
    assert warm.evict_others("strict-slices") and warm.loaded == ["strict-slices"]


def test_models_are_evicted_while_memory_is_short(settings: Settings) -> None:
    warm = WarmPipelines(
        settings.model_copy(
            update={"inference": settings.inference.model_copy(update={"min_free_memory_mb": 10**9})}
        )
    )
    warm.get("threshold-ts")
    warm.get("threshold-bundle")
    assert warm.loaded == ["threshold-bundle"]


def test_a_loaded_model_is_left_out_of_collections_and_an_evicted_one_is_freed(settings: Settings) -> None:
    """Collections skip what a worker keeps warm (a full one walked it all in a job's time), and an
    evicted model is still freed, even one that only a collection can free (held in a cycle)."""
    # Override: one model warm at a time and no memory floor, so that the second load evicts the first.
    warm = WarmPipelines(
        settings.model_copy(
            update={
                "inference": settings.inference.model_copy(
                    update={"max_loaded_pipelines": 1, "min_free_memory_mb": 0}
                )
            }
        )
    )
    gc.unfreeze()
    first = warm.get("threshold-ts")
    assert gc.get_freeze_count() > 0
    first.cycle = first  # type: ignore[attr-defined]
    evicted = weakref.ref(first)
    del first
    warm.get("threshold-bundle")
    assert warm.loaded == ["threshold-bundle"]
    assert evicted() is None
    assert gc.get_freeze_count() > 0
    gc.unfreeze()  # the test process goes on as it was
