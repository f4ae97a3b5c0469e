"""Pipelines by name, each built and loaded once per worker process and kept warm between tasks."""

from __future__ import annotations

from collections.abc import Callable
from functools import cache

import torch

from radrouter.inference.models.brain_extraction import BrainExtraction
from radrouter.inference.pipeline import Pipeline

BUILT_IN: dict[str, Callable[[], Pipeline]] = {"brain-extraction": BrainExtraction}


class UnknownPipeline(KeyError):
    """A rule or job names a pipeline this node does not have."""


def available() -> list[str]:
    return sorted(BUILT_IN)


def select_device(setting: str) -> torch.device:
    """``auto`` takes CUDA when there is a GPU, else the CPU."""
    if setting == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(setting)


@cache
def loaded_pipeline(name: str, device: str) -> Pipeline:
    """The named pipeline with its model loaded on ``device``; cached for the life of the worker."""
    try:
        factory = BUILT_IN[name]
    except KeyError:
        raise UnknownPipeline(f"unknown pipeline {name!r}; available: {available()}") from None
    pipeline = factory()
    pipeline.load(select_device(device))
    return pipeline
