"""A pipeline from config alone: a TorchScript file plus its input spec and label table.

The file is what ``torch.jit.save`` writes; it maps a (1, 1, D, H, W) float tensor to (1, C, D, H, W)
class scores. Loading is ``torch.jit.load`` onto the worker's device; no Python code of the model's
authors runs in the worker.
"""

from __future__ import annotations

import torch

from radrouter.config.pipelines import NetworkPipelineSetting
from radrouter.inference.models.sliding_window import NetworkPipeline, WindowedInference, declared_pipeline


def torchscript_pipeline(
    name: str, declared: NetworkPipelineSetting, windowing: WindowedInference
) -> NetworkPipeline:
    path = declared.torchscript
    if path is None or not path.is_file():
        raise FileNotFoundError(f"pipeline {name!r}: TorchScript file not found: {path}")

    def load(device: torch.device) -> torch.nn.Module:
        module: torch.nn.Module = torch.jit.load(str(path), map_location=device)  # type: ignore[no-untyped-call]
        return module

    return declared_pipeline(name, declared, declared.version, load, windowing)
