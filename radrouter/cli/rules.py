"""``radrouter rules test``: what the rules would do with a folder of DICOM files or a stored study.

Prints, per series, each rule's verdict with the reasons (the conditions that failed and why), the
notes of pipeline selection, and then the resulting actions, as rich tables; ``--json`` prints the
same decision as ``GET /api/studies/{study_uid}/routing`` does.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from radrouter.cli.common import ConfigOption, settings_or_exit
from radrouter.router.route.header import SeriesHeader, headers_from_folder, stored_study_headers
from radrouter.router.route.rulebook import RoutingConfig
from radrouter.router.route.rules import MATCHED, NOT_MATCHED, RouteDecision, SeriesTrace, decide
from radrouter.storage.index import Index

rules_app = typer.Typer(help="Try routing rules on studies.", no_args_is_help=True)
_STYLE = {MATCHED: "green", NOT_MATCHED: "red"}


def _series_table(trace: SeriesTrace) -> Table:
    plane = trace.orientation or "orientation unknown"
    table = Table(
        title=f"Series {trace.description} · {trace.modality} {trace.kind}, {plane}, {trace.slices} slice(s)",
        caption=trace.series_uid,
        title_justify="left",
        expand=True,
    )
    table.add_column("rule", no_wrap=True)
    table.add_column("verdict", no_wrap=True)
    table.add_column("why")
    for verdict in trace.rules:
        style = _STYLE.get(verdict.outcome, "dim")
        table.add_row(verdict.rule, f"[{style}]{verdict.outcome}[/{style}]", "\n".join(verdict.reasons))
    for note in trace.notes:
        table.add_row("", "[yellow]note[/yellow]", note)
    return table


def _actions_table(decision: RouteDecision, headers: list[SeriesHeader]) -> Table:
    names = {header.series_uid: header.describe() for header in headers}
    table = Table(title="What would happen", title_justify="left", expand=True)
    for column in ("action", "series", "detail", "rules"):
        table.add_column(column)
    for run in decision.runs:
        destinations = ", ".join(run.results_to) or "none"
        detail = f"priority {run.priority.value}, results to {destinations}"
        table.add_row(f"pipeline {run.pipeline}", names[run.series_uid], detail, ", ".join(run.rules))
    for forward in decision.forwards:
        table.add_row(
            f"forward to {forward.destination}",
            names[forward.series_uid],
            "originals",
            ", ".join(forward.rules),
        )
    for series_uid in decision.discarded:
        table.add_row("discard", names[series_uid], "", ", ".join(decision.matched[series_uid]))
    if not table.row_count:
        table.add_row("nothing", "", "no rule asked for a pipeline or a forward", "")
    return table


@rules_app.command("test")
def rules_test(
    target: Annotated[str, typer.Argument(help="A folder of DICOM files, or the UID of a stored study.")],
    config: ConfigOption = None,
    calling_ae: Annotated[str, typer.Option(help="Calling AE to assume for a folder.")] = "",
    called_ae: Annotated[str, typer.Option(help="Called AE to assume for a folder (default: ours).")] = "",
    as_json: Annotated[bool, typer.Option("--json", help="Print the decision as JSON.")] = False,
) -> None:
    """Show which rules match each series, why the others do not, and what would happen."""
    settings = settings_or_exit(config)
    folder = Path(target)
    if folder.is_dir():
        headers: list[SeriesHeader] | None = headers_from_folder(
            folder, calling_ae, called_ae or settings.node.ae_title
        )
    else:
        index = Index(settings.storage.resolved_index_url())
        headers = stored_study_headers(index, target, settings.node.ae_title)
    if headers is None:
        typer.echo(f"{target} is neither a folder nor a study in the index", err=True)
        raise typer.Exit(2)
    if not headers:
        typer.echo(f"no DICOM files in {target}", err=True)
        raise typer.Exit(2)
    routing = RoutingConfig.of(settings)
    decision = decide(routing.rules, headers, routing.tolerance_deg)
    if as_json:
        typer.echo(json.dumps(decision.as_json(), indent=2))
        return
    console = Console(width=max(Console().width, 120))
    for trace in decision.series:
        console.print(_series_table(trace))
    console.print(_actions_table(decision, headers))
