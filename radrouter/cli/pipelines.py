"""``radrouter pipelines``: what this node can run, without loading any model."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.table import Table

from radrouter.cli.common import ConfigOption, settings_or_exit

pipelines_app = typer.Typer(help="Show the pipelines this node knows.", no_args_is_help=True)


@pipelines_app.command("list")
def pipelines_list(config: ConfigOption = None) -> None:
    """Each pipeline with its version, queue and source (built-in, entry point, TorchScript, MONAI bundle)."""
    from radrouter.inference.registry import DuplicatePipeline, catalogue
    from radrouter.router.dispatch.contract import queue_for

    settings = settings_or_exit(config)
    try:
        entries = catalogue(settings)
    except DuplicatePipeline as error:
        Console(stderr=True).print(f"[red]error:[/red] {error}")
        raise typer.Exit(2) from error
    table = Table(title="radrouter pipelines")
    for column in ("name", "version", "queue", "source", "description"):
        table.add_column(column, overflow="fold")
    for name in sorted(entries):
        entry = entries[name]
        table.add_row(name, entry.version, queue_for(settings, name), entry.source, entry.description)
    Console(width=200).print(table)
