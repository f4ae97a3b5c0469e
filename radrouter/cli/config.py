"""``radrouter config``: check a file, print every option, show the effective configuration."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
import yaml

from radrouter.cli.common import ConfigOption, console, exit_on_unknown_pipelines, settings_or_exit

config_app = typer.Typer(help="Check and show configuration.", no_args_is_help=True)


@config_app.command("check")
def config_check(file: Annotated[Path, typer.Argument(help="The YAML file to check.")]) -> None:
    """Validate a config file and explain each error with its path in the file."""
    settings = settings_or_exit(file)
    exit_on_unknown_pipelines(settings, file)
    console.print(
        f"[green]{file}: OK[/green] "
        f"({len(settings.rules)} rule(s), {len(settings.destinations)} destination(s))"
    )


@config_app.command("reference")
def config_reference() -> None:
    """Print every option with its default and meaning (the README's table is this output)."""
    from radrouter.config.reference import reference_markdown

    typer.echo(reference_markdown(), nl=False)


@config_app.command("show")
def config_show(config: ConfigOption = None) -> None:
    """Print the effective configuration (defaults, file and environment merged) as YAML."""
    settings = settings_or_exit(config)
    typer.echo(yaml.safe_dump(settings.model_dump(mode="json", by_alias=True), sort_keys=False))
