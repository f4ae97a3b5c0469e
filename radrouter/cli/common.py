"""What every ``radrouter`` command shares: the ``--config`` option and the one config-error path."""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from pydantic import ValidationError
from rich.console import Console

from radrouter.config.settings import CONFIG_ENV, Settings, config_file_from_environment, load_settings

console = Console(stderr=True)

ConfigOption = Annotated[
    Path | None, typer.Option("--config", "-c", help=f"YAML config file (default: ${CONFIG_ENV}).")
]


def setup_logging(settings: Settings) -> None:
    from radrouter.logs import configure_logging

    configure_logging(settings.logging)


def location(settings_data: dict[str, Any], loc: tuple[int | str, ...]) -> str:
    """``rules[0] (brain-t1).match.Foo``: the path of an error in the file, with the rule's name."""
    parts: list[str] = []
    node: Any = settings_data
    for key in loc:
        if isinstance(key, int):
            parts[-1] += f"[{key}]"
            node = node[key] if isinstance(node, list) and key < len(node) else None
            if isinstance(node, dict) and "name" in node:
                parts[-1] += f" ({node['name']})"
        else:
            parts.append(str(key))
            node = node.get(key) if isinstance(node, dict) else None
    return ".".join(parts) or "(top level)"


@contextmanager
def port_in_use_exits(option: str, host: str, port: int) -> Iterator[None]:
    """A port another process already holds is a sentence naming the option and exit 1, not a
    traceback; ``option`` is the setting that chose the port."""
    try:
        yield
    except OSError as error:
        if error.errno != errno.EADDRINUSE:
            raise
        console.print(
            f"[red]error:[/red] {host}:{port} ({option}) is already in use by another process: "
            "stop it, or set another port",
            soft_wrap=True,  # one line, for the log it lands in
        )
        raise typer.Exit(1) from error


def settings_or_exit(config_file: Path | None) -> Settings:
    """The settings, or exit 2 with each error explained by its path in the file.

    A ``--config`` given here becomes ``RADROUTER_CONFIG`` for this process and the ones it starts
    (receivers, workers, the rule book's reloads), so they all read the same file.
    """
    try:
        settings = load_settings(config_file)
    except FileNotFoundError as error:
        console.print(f"[red]error:[/red] {error}")
        raise typer.Exit(2) from error
    except yaml.YAMLError as error:
        console.print(
            f"[red]error:[/red] {config_file or config_file_from_environment()} is not valid YAML: {error}"
        )
        raise typer.Exit(2) from error
    except ValidationError as error:
        path = config_file or config_file_from_environment() or Path()
        data = yaml.safe_load(path.read_text()) if path.is_file() else {}
        console.print(f"[red]{path}: {error.error_count()} error(s)[/red]")
        for item in error.errors():
            console.print(f"  {location(data or {}, item['loc'])}: {item['msg']}")
        raise typer.Exit(2) from error
    if config_file is not None:
        os.environ[CONFIG_ENV] = str(config_file.resolve())
    return settings


def exit_on_unknown_pipelines(settings: Settings, source: Path | None) -> None:
    """Rules and pools may only name pipelines this installation has (built-in, entry points, config)."""
    from radrouter.inference.registry import DuplicatePipeline, available

    try:
        known = available(settings)
    except DuplicatePipeline as error:
        console.print(f"[red]{source}: {error}[/red]")
        raise typer.Exit(2) from error
    asked = {p.name for rule in settings.rules for p in rule.pipelines}
    asked |= {name for pool in settings.pools.values() for name in pool.pipelines}
    unknown = sorted(asked - set(known))
    if unknown:
        console.print(f"[red]{source}: rules or pools name unknown pipelines {unknown}; available: {known}")
        raise typer.Exit(2)
