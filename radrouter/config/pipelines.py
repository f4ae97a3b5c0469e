"""The schema of pipelines declared in config alone (a TorchScript file or a MONAI bundle) and worker pools.

Only description and validation live here; :mod:`radrouter.inference.registry` turns a declaration
into a pipeline. Codes are written ``SCT.Lung`` (a name from pydicom's code dictionary) or in full as
``{scheme: SCT, value: "39607008", meaning: Lung}``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code


class CodeSetting(BaseModel):
    """A coded concept (DICOM PS3.3 8.8): coding scheme, code value and meaning."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    scheme: str = Field(min_length=1, max_length=16, description="Coding scheme designator (SCT, DCM, ...).")
    value: str = Field(min_length=1, max_length=64, description="Code value.")
    meaning: str = Field(min_length=1, max_length=64, description="Code meaning.")

    @model_validator(mode="before")
    @classmethod
    def _dictionary_name(cls, value: Any) -> Any:
        """``SCT.Lung`` → the concept pydicom's code dictionary knows by that name."""
        if not isinstance(value, str):
            return value
        scheme, _, name = value.partition(".")
        try:
            code = getattr(getattr(codes, scheme), name)
        except AttributeError:
            raise ValueError(
                f"{value!r} is not in pydicom's code dictionary; write {{scheme, value, meaning}}"
            ) from None
        return {"scheme": code.scheme_designator, "value": code.value, "meaning": code.meaning}

    def code(self) -> Code:
        return Code(self.value, self.scheme, self.meaning)


class InputSetting(BaseModel):
    """What the model needs; radrouter checks the series and prepares the volume accordingly."""

    model_config = ConfigDict(extra="forbid")

    modalities: list[str] = Field(default_factory=list, description="Accepted modalities; empty: any.")
    min_slices: int = Field(1, ge=1, description="Fewer slices fail the job with this reason.")
    orientation: str | None = Field(
        None,
        pattern=r"^[LRAPHF]{3}$",
        description="Voxel order for the model (e.g. LPH, RAH); null: as stored.",
    )
    spacing_mm: tuple[float, float, float] | None = Field(
        None, description="Model grid spacing along the three axes; null: the series' own spacing."
    )
    window: tuple[float, float] | None = Field(None, description="Clip intensities to [low, high].")
    normalisation: Literal["none", "window", "zscore"] = Field(
        "none", description="none, window (scale the window to [0, 1]) or zscore."
    )


class LabelSetting(BaseModel):
    """One class of the network's output, written as one SEG segment."""

    model_config = ConfigDict(extra="forbid")

    label: int = Field(ge=1, le=255, description="Output channel / label value.")
    name: str = Field(min_length=1, max_length=64, description="Segment label.")
    category: CodeSetting = Field(
        CodeSetting(scheme="SCT", value="91723000", meaning="Anatomical Structure"),
        description="Segmented property category.",
    )
    type: CodeSetting = Field(description="Segmented property type (e.g. SCT.Lung).")
    color: tuple[int, int, int] = Field((255, 255, 0), description="Display colour (RGB).")


class FindingSetting(BaseModel):
    """A finding read from a class's highest probability, written as a TID 1500 qualitative evaluation."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=64, description="Name of the finding.")
    code: CodeSetting = Field(description="The finding's code (e.g. SCT.Nodule).")
    label: int = Field(ge=1, le=255, description="The class whose probability the finding reads.")
    threshold: float = Field(0.5, ge=0, le=1, description="Present when the probability reaches this.")


class NetworkPipelineSetting(BaseModel):
    """A user model declared in config alone: a TorchScript file or a MONAI bundle folder."""

    model_config = ConfigDict(extra="forbid")

    torchscript: Path | None = Field(None, description="A TorchScript file (torch.jit.save).")
    monai_bundle: Path | None = Field(
        None, description="A MONAI bundle folder (configs/, models/), loaded offline."
    )
    version: str = Field(
        "", max_length=64, description="Model version for TID 4019; bundles default to their metadata's."
    )
    description: str = Field("", description="What the model does, shown by `radrouter pipelines list`.")
    series_number: int = Field(9200, ge=1, description="Series number of the SEG (the SR takes the next).")
    procedure: CodeSetting = Field(
        CodeSetting(scheme="SCT", value="363679005", meaning="Imaging procedure"),
        description="Procedure reported in the SR.",
    )
    input: InputSetting = InputSetting()
    activation: Literal["auto", "softmax", "sigmoid", "none"] = Field(
        "auto", description="Scores → probabilities; auto: sigmoid for one channel, softmax for several."
    )
    labels: list[LabelSetting] = Field(min_length=1, description="The label table, one entry per segment.")
    findings: list[FindingSetting] = Field(default_factory=list, description="Optional findings.")

    @model_validator(mode="after")
    def _one_source(self) -> NetworkPipelineSetting:
        if (self.torchscript is None) == (self.monai_bundle is None):
            raise ValueError("give exactly one of torchscript or monai_bundle")
        if self.torchscript is not None and not self.version:
            raise ValueError("a TorchScript pipeline needs a version (it names the model in every result)")
        labels = {entry.label for entry in self.labels}
        if len(labels) != len(self.labels):
            raise ValueError("labels repeat a label value")
        missing = sorted({finding.label for finding in self.findings} - labels)
        if missing:
            raise ValueError(f"findings read labels not in the label table: {missing}")
        return self


class WorkerPool(BaseModel):
    """Pipelines that share one queue and its workers: one worker per listed GPU, or one on the CPU."""

    model_config = ConfigDict(extra="forbid")

    pipelines: list[str] = Field(min_length=1, description="Pipelines this pool serves.")
    gpus: list[int] = Field(
        default_factory=list, description="CUDA devices, one worker process each; empty: one CPU worker."
    )

    @field_validator("gpus")
    @classmethod
    def _distinct(cls, gpus: list[int]) -> list[int]:
        if len(set(gpus)) != len(gpus):
            raise ValueError("a GPU is listed twice")
        return gpus


def pool_queue(pool: str) -> str:
    """Pool queues are prefixed so they can never collide with a pipeline's own queue."""
    return f"pool.{pool}"
