"""``radrouter evaluate``: score a pipeline (or saved predictions) against reference results."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from radrouter.cli.common import ConfigOption, settings_or_exit

console = Console()
errors = Console(stderr=True, soft_wrap=True)


def evaluate_command(
    cases: Annotated[
        Path, typer.Argument(help="Folder with one sub-folder per case (images + reference SEGs).")
    ],
    pipeline: Annotated[str | None, typer.Option(help="Registered pipeline to run on each case.")] = None,
    predictions: Annotated[
        Path | None, typer.Option(help="Score saved outputs instead: <folder>/<case>/ SEGs, findings.csv.")
    ] = None,
    labels: Annotated[
        Path | None, typer.Option(help="Finding labels CSV (case,code,label); default <cases>/labels.csv.")
    ] = None,
    threshold: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="Probability that calls a finding.")
    ] = 0.5,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda[:N] for the pipeline.")] = "auto",
    config: ConfigOption = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the report as JSON here.")] = None,
    html_out: Annotated[Path | None, typer.Option("--html", help="Write the HTML report here.")] = None,
) -> None:
    """Dice and HD95 per segment, sensitivity/specificity/PPV/F1/AUC per finding, overall and by subgroup."""
    from radrouter.evaluation.cases import LABELS_FILE, CaseError, Labels, read_cases, read_labels
    from radrouter.evaluation.report import as_html, as_json, as_table
    from radrouter.evaluation.runner import PipelinePredictor, Predictor, SavedPredictor, evaluate
    from radrouter.inference.registry import UnknownPipeline
    from radrouter.inference.standard_tables import cache_standard_lookups

    if (pipeline is None) == (predictions is None):
        errors.print("[red]error:[/red] give exactly one of --pipeline or --predictions")
        raise typer.Exit(2)
    # The config first: a bad file is explained before any case is read.
    settings = settings_or_exit(config) if pipeline is not None else None
    try:
        if labels is not None and not labels.is_file():
            raise CaseError(f"labels file not found: {labels}")
        labels_path = labels or cases / LABELS_FILE
        truth = read_labels(labels_path, "label") if labels_path.is_file() else Labels()
        found = read_cases(cases)
        predictor: Predictor
        if predictions is not None:
            predictor = SavedPredictor(predictions)
        else:
            assert pipeline is not None and settings is not None
            cache_standard_lookups()  # as a worker does when it starts
            settings.inference.device = device
            predictor = PipelinePredictor(settings, pipeline)
        evaluation = evaluate(found, predictor, truth, threshold)
    except (CaseError, UnknownPipeline) as error:
        errors.print(f"[red]error:[/red] {error}")
        raise typer.Exit(2) from error
    console.print(as_table(evaluation))
    if json_out is not None:
        json_out.write_text(json.dumps(as_json(evaluation), indent=2))
    if html_out is not None:
        html_out.write_text(as_html(evaluation))
