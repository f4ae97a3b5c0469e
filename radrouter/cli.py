"""The ``radrouter`` command: one thin entry per service, plus configuration checks."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from pydantic import ValidationError
from rich.console import Console

from radrouter.cli_pipelines import pipelines_app
from radrouter.config.settings import CONFIG_ENV, Settings, load_settings
from radrouter.db_cli import app as db_app
from radrouter.deliveries_cli import app as deliveries_app
from radrouter.evaluation.command import evaluate_command
from radrouter.rules_cli import rules_app
from radrouter.send_cli import send_files

app = typer.Typer(
    help="radrouter: a DICOM node that puts AI into the radiology workflow.", no_args_is_help=True
)
config_app = typer.Typer(help="Check and show configuration.", no_args_is_help=True)
app.add_typer(config_app, name="config")
app.add_typer(rules_app, name="rules")
app.add_typer(pipelines_app, name="pipelines")
app.command("evaluate")(evaluate_command)
app.add_typer(db_app, name="db")
app.command("send")(send_files)
app.add_typer(deliveries_app, name="deliveries")
console = Console(stderr=True)

ConfigOption = Annotated[
    Path | None, typer.Option("--config", "-c", help=f"YAML config file (default: ${CONFIG_ENV}).")
]


def _setup_logging(settings: Settings) -> None:
    from radrouter.logs import configure_logging

    configure_logging(settings.logging)


def _location(settings_data: dict[str, Any], loc: tuple[int | str, ...]) -> str:
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


def _settings_or_exit(config_file: Path | None) -> Settings:
    try:
        return load_settings(config_file)
    except FileNotFoundError as error:
        console.print(f"[red]error:[/red] {error}")
        raise typer.Exit(2) from error
    except yaml.YAMLError as error:
        console.print(
            f"[red]error:[/red] {config_file or os.environ.get(CONFIG_ENV)} is not valid YAML: {error}"
        )
        raise typer.Exit(2) from error
    except ValidationError as error:
        path = config_file or Path(os.environ.get(CONFIG_ENV, ""))
        data = yaml.safe_load(path.read_text()) if path.is_file() else {}
        console.print(f"[red]{path}: {error.error_count()} error(s)[/red]")
        for item in error.errors():
            console.print(f"  {_location(data or {}, item['loc'])}: {item['msg']}")
        raise typer.Exit(2) from error


def _exit_on_unknown_pipelines(settings: Settings, source: Path | None) -> None:
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


@config_app.command("check")
def config_check(file: Annotated[Path, typer.Argument(help="The YAML file to check.")]) -> None:
    """Validate a config file and explain each error with its path in the file."""
    settings = _settings_or_exit(file)
    _exit_on_unknown_pipelines(settings, file)
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
    settings = _settings_or_exit(config)
    typer.echo(yaml.safe_dump(settings.model_dump(mode="json", by_alias=True), sort_keys=False))


@app.command()
def up(config: ConfigOption = None) -> None:
    """Run the whole node: SCP, web app, workers, and an embedded redis-server unless broker.url is set."""
    from radrouter.node import run_node

    settings = _settings_or_exit(config)
    _setup_logging(settings)
    _exit_on_unknown_pipelines(settings, config or Path(os.environ.get(CONFIG_ENV) or "defaults"))
    raise typer.Exit(run_node(settings, config))


@app.command()
def scp(config: ConfigOption = None) -> None:
    """Run the DICOM SCP (C-ECHO, C-STORE) in node.processes processes, with completion and routing."""
    from radrouter.router.metrics import serve_metrics, share_metrics_between_processes

    settings = _settings_or_exit(config)
    _setup_logging(settings)
    if settings.node.metrics_port:
        # Before the receivers import prometheus_client: they count in files the exporter sums.
        share_metrics_between_processes(settings.storage.root / "scp-metrics")
        serve_metrics(settings.node.metrics_port, settings.node.host)
    from radrouter.router.listener import run_scp

    run_scp(settings)


@app.command()
def worker(
    queues: Annotated[str, typer.Option(help="Comma-separated Celery queues to serve.")],
    pool: Annotated[
        str,
        typer.Option(help="solo: one task at a time; threads: --concurrency tasks sharing the warm models."),
    ] = "solo",
    concurrency: Annotated[int, typer.Option(help="Tasks at once (threads pool).")] = 1,
    name: Annotated[str, typer.Option(help="Worker name in Celery and the audit trail; %h: host.")] = "",
    config: ConfigOption = None,
) -> None:
    """Run a Celery worker on the given queues (one per GPU: set CUDA_VISIBLE_DEVICES)."""
    if config is not None:
        os.environ[CONFIG_ENV] = str(config.resolve())
    settings = _settings_or_exit(None)
    _setup_logging(settings)
    import torch

    from radrouter.inference.app import app as celery
    from radrouter.inference.app import worker_settings

    if worker_settings().inference.torch_threads:
        torch.set_num_threads(worker_settings().inference.torch_threads)
    name = name or f"{queues.replace(',', '+')}@%h"
    # --quiet: no start-up banner on stdout, which would break a stream of JSON lines.
    quiet = ["--quiet"] if settings.logging.format == "json" else []
    celery.worker_main(
        [
            *quiet,
            "worker",
            "-Q",
            queues,
            "-P",
            pool,
            "-c",
            str(concurrency),
            "-n",
            name,
            "-l",
            "INFO",
            "--without-gossip",
            "--without-mingle",
        ]
    )


@app.command()
def web(config: ConfigOption = None) -> None:
    """Run the web app (JSON API, metrics)."""
    import uvicorn

    from radrouter.web.app import create_app

    settings = _settings_or_exit(config)
    _setup_logging(settings)
    # log_config=None: uvicorn's lines go through radrouter's handler (text or JSON) like all others.
    uvicorn.run(create_app(settings), host=settings.web.host, port=settings.web.port, log_config=None)


def main() -> None:
    app(prog_name="radrouter")


if __name__ == "__main__":
    main()
