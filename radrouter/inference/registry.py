"""Where pipelines come from (built in, Python entry points, config alone) and which ones a worker keeps warm.

Listing a pipeline never loads its model: :func:`catalogue` reads names, versions and sources, so the
CLI, the web app and ``radrouter up`` can show and plan pipelines cheaply. A worker process holds its
loaded models in :class:`WarmPipelines`, evicting the least recently used when memory is short.
"""

from __future__ import annotations

import gc
import logging
import os
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import entry_points

import torch

from radrouter.config.pipelines import NetworkPipelineSetting
from radrouter.config.settings import InferenceSettings, Settings
from radrouter.inference.models.brain_extraction import BrainExtraction
from radrouter.inference.models.ct_lung import CTLung
from radrouter.inference.models.sliding_window import WindowedInference
from radrouter.inference.pipeline import Pipeline

log = logging.getLogger(__name__)

BUILT_IN: dict[str, type[Pipeline]] = {"brain-extraction": BrainExtraction, "ct-lung": CTLung}
ENTRY_POINT_GROUP = "radrouter.pipelines"


class UnknownPipeline(KeyError):
    """A rule or job names a pipeline this node does not have."""


class DuplicatePipeline(ValueError):
    """Two sources declare the same pipeline name; results must trace to exactly one model."""


@dataclass(frozen=True)
class PipelineEntry:
    """A pipeline as listed: enough to show and route it, and a way to build it (model not loaded)."""

    name: str
    version: str
    source: str
    description: str
    build: Callable[[], Pipeline]


def windowing(inference: InferenceSettings) -> WindowedInference:
    return WindowedInference(
        roi_size=inference.roi_size,
        overlap=inference.overlap,
        batch_size=inference.sw_batch_size,
        amp=inference.amp,
    )


def _configured(name: str, declared: NetworkPipelineSetting, settings: Settings) -> PipelineEntry:
    from radrouter.inference.models.monai_bundle import bundle_pipeline, bundle_version
    from radrouter.inference.models.torchscript import torchscript_pipeline

    window = windowing(settings.inference)
    if declared.torchscript is not None:
        path = declared.torchscript
        return PipelineEntry(
            name,
            declared.version,
            f"torchscript {path}",
            declared.description,
            lambda: torchscript_pipeline(name, declared, window),
        )
    assert declared.monai_bundle is not None
    folder = declared.monai_bundle
    return PipelineEntry(
        name,
        declared.version or bundle_version(folder),
        f"monai-bundle {folder}",
        declared.description,
        lambda: bundle_pipeline(name, declared, window),
    )


def catalogue(settings: Settings) -> dict[str, PipelineEntry]:
    """Every pipeline this node knows, by name; a name declared by two sources is refused."""
    found: dict[str, PipelineEntry] = {}

    def add(entry: PipelineEntry) -> None:
        if entry.name in found:
            raise DuplicatePipeline(
                f"pipeline {entry.name!r} is declared twice: {found[entry.name].source} and {entry.source}"
            )
        found[entry.name] = entry

    for name, cls in BUILT_IN.items():
        add(PipelineEntry(name, cls.version, "built-in", cls.description, cls))
    for point in entry_points(group=ENTRY_POINT_GROUP):
        factory = point.load()
        add(
            PipelineEntry(
                point.name,
                str(getattr(factory, "version", "")),
                f"entry point {point.value}",
                str(getattr(factory, "description", "")),
                factory,
            )
        )
    for name, declared in settings.pipelines.items():
        add(_configured(name, declared, settings))
    return found


def available(settings: Settings) -> list[str]:
    return sorted(catalogue(settings))


def select_device(setting: str) -> torch.device:
    """``auto`` takes CUDA when there is a GPU (the one CUDA_VISIBLE_DEVICES leaves), else the CPU."""
    if setting == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(setting)


def free_memory_mb(device: torch.device) -> float:
    """Free memory where the models live: the GPU's, or the machine's available RAM."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0] / 2**20
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") / 2**20


def _keep_out_of_collections() -> None:
    """Leave what the process now holds to stay (the warm models, the standard's tables, the imported
    modules: about 800,000 objects) out of every later garbage collection. A full collection walks
    them all, 0.1 to 0.3 s on a CPU worker, and one fell every few jobs, inside a study's time."""
    gc.collect()
    gc.freeze()


class WarmPipelines:
    """The models one worker process holds, most recently used last; loaded once, evicted LRU.

    A worker runs several jobs at once in threads (``inference.jobs_per_worker``): loading and evicting
    happen under one lock, and ``device_lock`` lets one model at a time run on the device, so that the
    other jobs' reading and writing overlap a model instead of competing with it for memory.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.device = select_device(settings.inference.device)
        self.device_lock = threading.Lock()
        self._lock = threading.RLock()
        self._loaded: OrderedDict[str, Pipeline] = OrderedDict()
        self._entries: dict[str, PipelineEntry] | None = None

    def entry(self, name: str) -> PipelineEntry:
        if self._entries is None:
            self._entries = catalogue(self.settings)
        try:
            return self._entries[name]
        except KeyError:
            raise UnknownPipeline(f"unknown pipeline {name!r}; available: {sorted(self._entries)}") from None

    @property
    def loaded(self) -> list[str]:
        return list(self._loaded)

    def get(self, name: str) -> Pipeline:
        """The named pipeline with its model loaded; a cache hit costs nothing and refreshes its place."""
        with self._lock:
            return self._get(name)

    def _get(self, name: str) -> Pipeline:
        if name in self._loaded:
            self._loaded.move_to_end(name)
            return self._loaded[name]
        entry = self.entry(name)
        limit = self.settings.inference
        while self._loaded and (
            len(self._loaded) >= limit.max_loaded_pipelines
            or free_memory_mb(self.device) < limit.min_free_memory_mb
        ):
            self._evict_oldest()
        pipeline = entry.build()
        pipeline.load(self.device)
        self._loaded[name] = pipeline
        _keep_out_of_collections()
        log.info("loaded pipeline %s (%s) on %s; warm: %s", name, entry.version, self.device, self.loaded)
        return pipeline

    def evict_others(self, keep: str) -> bool:
        """Free every model but ``keep`` (after an out-of-memory error); True if anything was freed."""
        with self._lock:
            return self._evict_others(keep)

    def _evict_others(self, keep: str) -> bool:
        freed = False
        while len(self._loaded) > 1 or (self._loaded and keep not in self._loaded):
            oldest = next(iter(self._loaded))
            if oldest == keep:
                self._loaded.move_to_end(keep)
                continue
            self._evict_oldest()
            freed = True
        return freed

    def _evict_oldest(self) -> None:
        name = self._loaded.popitem(last=False)[0]  # not held here while collecting
        gc.unfreeze()  # the evicted model's objects among them, to be collected now
        _keep_out_of_collections()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
        log.info("evicted pipeline %s (least recently used); warm: %s", name, self.loaded)
