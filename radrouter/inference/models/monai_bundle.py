"""A pipeline from a MONAI bundle folder (how many medical models ship), loaded offline with ``monai``.

The bundle's ``configs/inference.json`` (or ``.yaml``) defines ``network_def``; its weights are
``models/model.pt`` (a state dict) or, without one, ``models/model.ts`` (TorchScript). The version
comes from ``configs/metadata.json`` unless config names one. A bundle's config can name any Python
class (``_target_``): install only bundles you trust, as you would install their code.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from monai.bundle.config_parser import ConfigParser

from radrouter.config.pipelines import NetworkPipelineSetting
from radrouter.inference.models.sliding_window import NetworkPipeline, WindowedInference, declared_pipeline


def bundle_version(folder: Path) -> str:
    """The bundle's own version from ``configs/metadata.json`` (empty when there is none)."""
    metadata = folder / "configs" / "metadata.json"
    if not metadata.is_file():
        return ""
    return str(json.loads(metadata.read_text()).get("version", ""))


def _inference_config(folder: Path) -> Path:
    for name in ("inference.json", "inference.yaml", "inference.yml"):
        if (folder / "configs" / name).is_file():
            return folder / "configs" / name
    raise FileNotFoundError(f"MONAI bundle {folder}: no configs/inference.json or .yaml")


def load_bundle_network(folder: Path, device: torch.device) -> torch.nn.Module:
    """The bundle's network with its weights, on ``device``, without touching the network."""
    weights, scripted = folder / "models" / "model.pt", folder / "models" / "model.ts"
    if not weights.is_file():
        if scripted.is_file():
            module: torch.nn.Module = torch.jit.load(str(scripted), map_location=device)  # type: ignore[no-untyped-call]
            return module
        raise FileNotFoundError(f"MONAI bundle {folder}: no models/model.pt or models/model.ts")
    parser = ConfigParser()
    parser.read_config(str(_inference_config(folder)))
    network = parser.get_parsed_content("network_def")
    if not isinstance(network, torch.nn.Module):
        raise TypeError(f"MONAI bundle {folder}: network_def is not a torch module")
    network.load_state_dict(torch.load(weights, map_location=device, weights_only=True))
    return network.to(device)


def bundle_pipeline(
    name: str, declared: NetworkPipelineSetting, windowing: WindowedInference
) -> NetworkPipeline:
    folder = declared.monai_bundle
    if folder is None or not folder.is_dir():
        raise FileNotFoundError(f"pipeline {name!r}: MONAI bundle folder not found: {folder}")
    version = declared.version or bundle_version(folder)
    return declared_pipeline(
        name, declared, version, lambda device: load_bundle_network(folder, device), windowing
    )
