"""``radrouter db``: schema migrations of the index, run once at deployment, not by every process."""

from __future__ import annotations

from typing import Annotated

import typer

from radrouter.cli.common import ConfigOption, console, settings_or_exit

db_app = typer.Typer(help="Migrate the index database (Alembic).", no_args_is_help=True)


@db_app.command()
def upgrade(
    config: ConfigOption = None,
) -> None:
    """Bring the index (storage.index_url) to the newest schema revision; safe to run again."""
    from radrouter.storage.index import Index
    from radrouter.storage.migrate import head_revision

    Index(settings_or_exit(config).storage.resolved_index_url(), migrate=True)
    console.print(f"index at revision {head_revision()}")


@db_app.command()
def revision(
    message: Annotated[str, typer.Option("--message", "-m", help="What the revision changes.")],
) -> None:
    """Write a migration for what the models changed since the last one (Alembic autogenerate)."""
    from radrouter.storage.migrate import autogenerate

    for path in autogenerate(message):
        console.print(f"wrote {path}: read it before committing (renames show as drop + add)")
