"""Models an AI team would bring, built at test time: a TorchScript file and a MONAI bundle.

Both are fixed threshold networks (a 1x1x1 convolution), so the expected label map can be computed
from the source volume alone. ``user_pipelines_yaml`` declares them, plus two that must fail, in the
session node's config.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

#: HU above which the TorchScript model says "bone"; HU below which the bundle says "air".
BONE_HU, AIR_HU = 300.0, -500.0
STEEPNESS = 10.0
TORCHSCRIPT_VERSION, BUNDLE_VERSION = "1.0-test", "0.3.1"
#: Pipelines of the test node's CPU pool (one worker process holds them all, at most 3 warm).
POOLED = ("ct-lung", "threshold-ts", "threshold-bundle", "strict-slices", "broken-model")


class _Broken(torch.nn.Module):
    def forward(self, image: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("simulated model failure")


def build_threshold_torchscript(path: Path) -> Path:
    """sigmoid(k (HU - 300)): one channel, so radrouter applies a sigmoid and label 1 is HU > 300."""
    network = torch.nn.Conv3d(1, 1, kernel_size=1)
    with torch.no_grad():
        network.weight.fill_(STEEPNESS)
        network.bias.fill_(-STEEPNESS * BONE_HU)
    torch.jit.save(torch.jit.script(network), str(path))
    return path


def build_broken_torchscript(path: Path) -> Path:
    torch.jit.save(torch.jit.script(_Broken()), str(path))
    return path


def build_threshold_bundle(folder: Path) -> Path:
    """A MONAI bundle: configs/{metadata,inference}.json and models/model.pt; label 1 is HU < -500."""
    (folder / "configs").mkdir(parents=True)
    (folder / "models").mkdir()
    network_def = {"_target_": "torch.nn.Conv3d", "in_channels": 1, "out_channels": 2, "kernel_size": 1}
    (folder / "configs" / "inference.json").write_text(json.dumps({"network_def": network_def}))
    metadata = {
        "version": BUNDLE_VERSION,
        "name": "threshold air test bundle",
        "network_data_format": {"outputs": {"pred": {"channel_def": {"0": "background", "1": "air"}}}},
    }
    (folder / "configs" / "metadata.json").write_text(json.dumps(metadata))
    network = torch.nn.Conv3d(1, 2, kernel_size=1)
    with torch.no_grad():
        network.weight[:] = torch.tensor([STEEPNESS, -STEEPNESS]).reshape(2, 1, 1, 1, 1)
        network.bias[:] = torch.tensor([-STEEPNESS * AIR_HU, STEEPNESS * AIR_HU])
    torch.save(network.state_dict(), folder / "models" / "model.pt")
    return folder


#: The calling AE the series-completion test sends with: only its studies meet the series rule.
SERIES_TESTER = "SERIES-TEST"
#: The calling AE the pipeline tests send with: the test node's CT rules match only it, so other tests'
#: CT studies on the shared node are not processed by the test models.
PIPELINE_TESTER = "PIPELINE-TEST"
#: The calling AE the viewer test sends with: its chest CT goes to ct-lung, results and originals to `viewer`.
VIEWER_TESTER = "VIEWER-TEST"


#: The calling AE the Storage Commitment delivery test sends with: its studies are forwarded to a
#: destination that must commit them (``committed``).
COMMITMENT_TESTER = "COMMIT-TEST"


def _viewer_rule(viewer: str | None) -> str:
    if viewer is None:
        return ""
    return f"""  - name: viewer-chest
    match: {{Modality: CT, BodyPartExamined: CHEST, calling_ae: {VIEWER_TESTER}}}
    pipelines: [ct-lung]
    results_to: [{viewer}]
    forward_to: [{viewer}]
"""


def user_pipelines_yaml(
    models: Path, pacs: str = "pacs", viewer: str | None = None, committed: str | None = None
) -> str:
    """The test node's pipelines, pool and rules (the default brain rule is kept); with ``viewer``, the
    viewer test's rule to that destination; with ``committed``, a rule forwarding the commitment test's
    studies there."""
    models.mkdir(parents=True, exist_ok=True)
    threshold = build_threshold_torchscript(models / "threshold.ts")
    broken = build_broken_torchscript(models / "broken.ts")
    bundle = build_threshold_bundle(models / "air-bundle")
    bone_label = "[{label: 1, name: Bone, type: SCT.Bone, color: [240, 240, 240]}]"
    return f"""
inference: {{max_loaded_pipelines: 3, roi_size: [16, 160, 160], overlap: 0.25}}
pipelines:
  threshold-ts:
    torchscript: {threshold}
    version: "{TORCHSCRIPT_VERSION}"
    description: Bone by a fixed HU threshold (test model)
    series_number: 9400
    input: {{modalities: [CT], min_slices: 8}}
    labels: {bone_label}
    findings: [{{name: Bone present, code: SCT.Bone, label: 1, threshold: 0.5}}]
  threshold-bundle:
    monai_bundle: {bundle}
    description: Air by a fixed HU threshold (test MONAI bundle)
    series_number: 9500
    input: {{modalities: [CT], orientation: LPH, spacing_mm: [1.5, 1.5, 2.5]}}
    labels: [{{label: 1, name: Air, category: SCT.Tissue, type: SCT.Air}}]
  strict-slices:
    torchscript: {threshold}
    version: "{TORCHSCRIPT_VERSION}"
    input: {{min_slices: 500}}
    labels: {bone_label}
  broken-model:
    torchscript: {broken}
    version: "0.0-broken"
    labels: {bone_label}
pools:
  cpu: {{pipelines: [{", ".join(POOLED)}]}}
rules:
  - name: brain-t1-3d
    match:
      Modality: MR
      MRAcquisitionType: 3D
      SeriesDescription: {{regex: "(?i)(t1|mprage|bravo|spgr|tfe|tfl)"}}
    pipelines: [brain-extraction]
    results_to: [{pacs}]
  - name: chest-ct
    match: {{Modality: CT, BodyPartExamined: CHEST, calling_ae: {PIPELINE_TESTER}}}
    pipelines: [ct-lung, threshold-ts, threshold-bundle]
    results_to: [{pacs}]
  - name: head-ct
    match: {{Modality: CT, BodyPartExamined: BRAIN, calling_ae: {PIPELINE_TESTER}}}
    pipelines: [strict-slices, broken-model, threshold-ts]
    results_to: [{pacs}]
{_viewer_rule(viewer)}  - name: series-forward
    match: {{calling_ae: {SERIES_TESTER}}}
    completion: series
    forward_to: [{pacs}]
""" + (
        f"""  - name: committed-forward
    match: {{calling_ae: {COMMITMENT_TESTER}}}
    forward_to: [{committed}]
"""
        if committed
        else ""
    )
