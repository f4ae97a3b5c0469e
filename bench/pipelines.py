"""Time each built-in pipeline on the shared real data, stage by stage.

    .venv/bin/python bench/pipelines.py [--repeat N] [--device auto|cpu|cuda]

Stages: volume load (read the series, build the highdicom Volume), model load (once per worker), model
(prediction on a warm model; the median of N runs), SEG and SR (building the DICOM objects). The last
column is the ratio a warm worker saves per job against one that loads the model for every job.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.table import Table

from radrouter.config.settings import Settings
from radrouter.inference.registry import WarmPipelines
from radrouter.inference.results.content import ResultIdentity
from radrouter.inference.results.measurements import reported_findings, reported_measurements
from radrouter.inference.results.seg import build_segmentation
from radrouter.inference.results.sr import build_report
from radrouter.inference.volume import load_volume, read_series

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
if not DATA.is_dir():
    DATA = Path("/work/shared/data")
INPUTS = {
    "brain-extraction": DATA / "mr-t1-philips-mprage",
    "ct-lung": DATA / "ct-chest-lidc0001-partial",
}


def _timed(action: Callable[[], Any]) -> tuple[Any, float]:
    started = time.perf_counter()
    value = action()
    return value, time.perf_counter() - started


def bench(name: str, folder: Path, warm: WarmPipelines, repeat: int) -> dict[str, float]:
    files = sorted(p for p in folder.iterdir() if p.suffix == ".dcm")
    (datasets, volume), load_s = _timed(lambda: (lambda d: (d, load_volume(d)))(read_series(files)))
    pipeline, model_load_s = _timed(lambda: warm.get(name))
    runs = [_timed(lambda: pipeline.predict(volume)) for _ in range(repeat)]
    prediction = runs[-1][0]
    model_s = statistics.median(seconds for _, seconds in runs)
    identity = ResultIdentity(f"bench/{name}", name, pipeline.version, pipeline.series_number)
    segments = pipeline.segments
    segmentation, seg_s = _timed(lambda: build_segmentation(datasets, prediction, segments, identity))

    def report() -> Any:
        measurements = reported_measurements(pipeline, prediction)
        findings = reported_findings(pipeline, prediction)
        return build_report(datasets, segmentation, measurements, findings, pipeline.procedure, identity)

    _, sr_s = _timed(report)
    job_warm = load_s + model_s + seg_s + sr_s
    return {
        "instances": len(files),
        "volume_load_s": load_s,
        "model_load_s": model_load_s,
        "model_s": model_s,
        "seg_s": seg_s,
        "sr_s": sr_s,
        "cold_over_warm": (job_warm + model_load_s) / job_warm,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeat", type=int, default=3, help="model runs per pipeline (median reported)")
    parser.add_argument("--device", default="auto")
    arguments = parser.parse_args()
    settings = Settings(inference={"device": arguments.device})
    warm = WarmPipelines(settings)
    console = Console(width=150)
    gpu = torch.cuda.get_device_name(0) if warm.device.type == "cuda" else "none"
    console.print(
        f"device {warm.device} (GPU: {gpu}); torch {torch.__version__}, {torch.get_num_threads()} CPU threads"
    )
    table = Table(title="built-in pipelines, seconds per stage")
    columns = ("instances", "volume_load_s", "model_load_s", "model_s", "seg_s", "sr_s", "cold_over_warm")
    table.add_column("pipeline")
    for column in columns:
        table.add_column(column, justify="right")
    for name, folder in INPUTS.items():
        figures = bench(name, folder, warm, arguments.repeat)
        table.add_row(name, *(f"{figures[c]:.3g}" if c != "instances" else str(figures[c]) for c in columns))
    console.print(table)


if __name__ == "__main__":
    main()
