"""The node's services, one thin entry each: ``up`` (all of them), ``scp``, ``worker``, ``web``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from radrouter.cli.common import (
    ConfigOption,
    exit_on_unknown_pipelines,
    port_in_use_exits,
    settings_or_exit,
    setup_logging,
)
from radrouter.config.settings import config_file_from_environment


def up(config: ConfigOption = None) -> None:
    """Run the whole node: SCP, web app, workers, and an embedded redis-server unless broker.url is set."""
    from radrouter.node.supervisor import run_node

    settings = settings_or_exit(config)
    setup_logging(settings)
    exit_on_unknown_pipelines(settings, config or config_file_from_environment() or Path("defaults"))
    raise typer.Exit(run_node(settings, config))


def scp(config: ConfigOption = None) -> None:
    """Run the DICOM SCP (C-ECHO, C-STORE) in node.processes processes, with completion and routing."""
    from radrouter.router.receive.exporter import serve_metrics, share_metrics_between_processes

    settings = settings_or_exit(config)
    setup_logging(settings)
    if settings.node.metrics_port:
        # Before the receivers import prometheus_client: they count in files the exporter sums.
        folder = settings.storage.root / "scp-metrics"
        # A cluster's nodes may share the storage root: each counts in a folder of its own.
        share_metrics_between_processes(
            folder / settings.cluster.resolved_node_name() if settings.cluster.enabled else folder
        )
        with port_in_use_exits("node.metrics_port", settings.node.metrics_host, settings.node.metrics_port):
            serve_metrics(settings.node.metrics_port, settings.node.metrics_host)
    from radrouter.router.receive.listener import listening_socket, run_scp
    from radrouter.worklist.items import open_for_study

    with port_in_use_exits("node.port", settings.node.host, settings.node.port):
        sock = listening_socket(settings.node.host, settings.node.port)
    run_scp(settings, open_for_study, sock)


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
    settings = settings_or_exit(config)
    setup_logging(settings)
    import torch

    from radrouter.worker import create_worker_app

    celery = create_worker_app(settings)
    if settings.inference.torch_threads:
        torch.set_num_threads(settings.inference.torch_threads)
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


def web(config: ConfigOption = None) -> None:
    """Run the web app (pages, JSON API, DICOMweb, metrics); HTTPS when web.tls is set."""
    import uvicorn

    from radrouter.web.app import create_app

    settings = settings_or_exit(config)
    setup_logging(settings)
    # log_config=None: uvicorn's lines go through radrouter's handler (text or JSON) like all others.
    tls = settings.web.tls
    uvicorn.run(
        create_app(settings),
        host=settings.web.host,
        port=settings.web.port,
        log_config=None,
        ssl_certfile=tls.cert_file,
        ssl_keyfile=tls.key_file,
    )
