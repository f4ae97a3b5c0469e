"""``radrouter deliveries``: list the dead-lettered deliveries and send them again."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from celery import Celery
from rich.console import Console
from rich.table import Table

from radrouter.cli.common import ConfigOption, settings_or_exit
from radrouter.router.deliver.dead_letter import dead_letters, retry_deliveries
from radrouter.router.dispatch.contract import celery_app
from radrouter.storage.index import Index

deliveries_app = typer.Typer(
    help="Deliveries that gave up (dead letters): list them, send them again.", no_args_is_help=True
)
console = Console()


@deliveries_app.command("list")
def list_dead_letters(config: ConfigOption = None) -> None:
    """Show every delivery in the dead-letter state."""
    index, _ = _open(config)
    rows = dead_letters(index)
    table = Table("id", "study", "kind", "destination", "attempts", "last error")
    for row in rows:
        table.add_row(
            str(row["id"]),
            row["study_uid"],
            row["kind"],
            row["destination"],
            str(row["attempts"]),
            row["last_error"] or "",
        )
    console.print(table)
    console.print(f"{len(rows)} dead-lettered delivery(ies)")


@deliveries_app.command("retry")
def retry(
    ids: Annotated[
        list[int] | None, typer.Argument(help="Delivery IDs; none means every dead letter.")
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Queue dead-lettered deliveries again, each with a fresh round of attempts."""
    index, celery = _open(config)
    retried = retry_deliveries(index, celery, ids or None)
    console.print(f"queued {len(retried)} delivery(ies) again: {retried}")
    if ids and len(retried) != len(ids):
        missing = sorted(set(ids) - set(retried))
        console.print(f"[red]not in the dead-letter state: {missing}[/red]")
        raise typer.Exit(1)


def _open(config: Path | None) -> tuple[Index, Celery]:
    settings = settings_or_exit(config)
    return Index(settings.storage.resolved_index_url()), celery_app(settings)
