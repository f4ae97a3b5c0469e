"""``radrouter db``: schema migrations of the index, run once at deployment, not by every process."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from radrouter.config.settings import load_settings

app = typer.Typer(help="Migrate the index database (Alembic).", no_args_is_help=True)
console = Console(stderr=True)


@app.command()
def upgrade(
    config: Annotated[
        Path | None, typer.Option("--config", "-c", help="YAML config file (default: $RADROUTER_CONFIG).")
    ] = None,
) -> None:
    """Bring the index (storage.index_url) to the newest schema revision; safe to run again."""
    from radrouter.storage.index import Index
    from radrouter.storage.migrate import head_revision

    Index(load_settings(config).storage.resolved_index_url(), migrate=True)
    console.print(f"index at revision {head_revision()}")


@app.command()
def revision(
    message: Annotated[str, typer.Option("--message", "-m", help="What the revision changes.")],
) -> None:
    """Write a migration for what the models changed since the last one (Alembic autogenerate)."""
    from radrouter.storage.migrate import autogenerate

    for path in autogenerate(message):
        console.print(f"wrote {path}: read it before committing (renames show as drop + add)")
