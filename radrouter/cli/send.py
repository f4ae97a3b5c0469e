"""``radrouter send``: C-STORE files and folders to a DICOM peer (the node itself by default), with progress.

A tool for PACS admins: test a node or a destination with real studies, or push a backlog. It sends
in batches over successive associations (pynetdicom proposes at most 128 presentation contexts in one),
by the same SCU the node delivers results with.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from pydicom.misc import is_dicom
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from radrouter.cli.common import ConfigOption, settings_or_exit
from radrouter.config.settings import Destination
from radrouter.router.deliver.scu import DeliveryError, OutgoingObject, send

BATCH = 32
console = Console(stderr=True, soft_wrap=True)  # paths and UIDs stay whole, greppable


def dicom_files(paths: list[Path]) -> tuple[list[Path], list[Path]]:
    """The DICOM files (Part 10) among ``paths`` and under the folders among them; and the others."""
    candidates = sorted(f for p in paths for f in ([p] if p.is_file() else p.rglob("*")) if f.is_file())
    dicom = [f for f in candidates if is_dicom(f)]
    return dicom, [f for f in candidates if not is_dicom(f)]


def send_files(
    paths: Annotated[
        list[Path], typer.Argument(help="Files or folders (searched recursively).", exists=True)
    ],
    to: Annotated[
        str, typer.Option(help="A destination named in the config; default: this node's SCP.")
    ] = "",
    host: Annotated[str, typer.Option(help="Peer address, instead of --to.")] = "",
    port: Annotated[int, typer.Option(help="Peer port, with --host.")] = 104,
    ae_title: Annotated[str, typer.Option("--ae-title", help="Peer AE title, with --host.")] = "ANY-SCP",
    calling_ae: Annotated[str, typer.Option(help="Our AE title in the association.")] = "RADROUTER-SEND",
    config: ConfigOption = None,
) -> None:
    """Send DICOM files to a peer by C-STORE, showing progress; exit 1 if any file was not stored."""
    settings = settings_or_exit(config)
    if host:
        peer = Destination(host=host, port=port, ae_title=ae_title)
    elif to:
        if to not in settings.destinations:
            console.print(f"[red]no destination {to!r}; configured: {sorted(settings.destinations)}[/red]")
            raise typer.Exit(2)
        peer = settings.destinations[to]
    else:
        peer = Destination(host="127.0.0.1", port=settings.node.port, ae_title=settings.node.ae_title)
    files, skipped = dicom_files(paths)
    for path in skipped:
        console.print(f"[yellow]skipped {path}: not a DICOM file[/yellow]")
    failed = 0
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console) as progress:
        task = progress.add_task(f"C-STORE to {peer.ae_title}@{peer.host}:{peer.port}", total=len(files))
        for start in range(0, len(files), BATCH):
            batch = files[start : start + BATCH]
            try:
                send(peer, [OutgoingObject(path) for path in batch], calling_ae, settings.delivery.timeout_s)
            except (DeliveryError, ValueError) as error:
                failed += len(batch)
                progress.console.print(f"[red]{len(batch)} file(s) from {batch[0]} not stored: {error}[/red]")
            progress.advance(task, len(batch))
    console.print(f"{len(files) - failed} of {len(files)} file(s) stored, {len(skipped)} skipped")
    if failed or skipped:
        raise typer.Exit(1)
