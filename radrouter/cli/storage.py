"""``radrouter storage status`` and ``radrouter purge``: what the storage volume holds, and retention."""

from __future__ import annotations

import getpass
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from radrouter.cli.common import ConfigOption, settings_or_exit
from radrouter.storage.erasure import ErasureRefused
from radrouter.storage.erasure import erase as erase_stored
from radrouter.storage.index import Index
from radrouter.storage.retention import (
    Purger,
    disk_usage,
    finished_studies,
    purged_studies,
    usage_by_state,
)
from radrouter.storage.store import InstanceStore

storage_app = typer.Typer(
    help="What the storage volume holds and what retention may purge.", no_args_is_help=True
)
console = Console()


def _size(count: int) -> str:
    value = float(count)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    raise AssertionError("unreachable")


def _open(config: ConfigOption) -> tuple[Index, InstanceStore, Purger]:
    settings = settings_or_exit(config)
    index = Index(settings.storage.resolved_index_url())
    store = InstanceStore(settings.storage.root, fsync=settings.storage.fsync)
    return index, store, Purger(settings.retention, index, store)


@storage_app.command("status")
def status(config: ConfigOption = None) -> None:
    """The volume (used, free, watermarks), stored instances by study state, and what may be purged."""
    index, store, purger = _open(config)
    retention = purger.retention
    disk = disk_usage(store)
    volume = Table("storage volume", "value", title=str(store.root))
    volume.add_row("total", _size(disk.total))
    volume.add_row("used", f"{_size(disk.used)} ({disk.used_pct:.1f}%)")
    volume.add_row("free", _size(disk.free))
    volume.add_row(
        "watermarks",
        f"purge above {retention.high_watermark_pct:g}% down to {retention.low_watermark_pct:g}%",
    )
    console.print(volume)
    states = Table("study state", "studies", "instances", "size", title="stored instances")
    for row in usage_by_state(index):
        states.add_row(row.state.value, str(row.studies), str(row.instances), _size(row.bytes))
    console.print(states)
    candidates = finished_studies(index, retention)
    due = [c for c in candidates if c.images_due]
    kept = [c for c in candidates if not c.images_due and c.instances]
    ages = Table("finished studies", "studies", "size", title="retention")
    ages.add_row(
        f"instances due (settled over {retention.keep_images_h:g} h ago)",
        str(len(due)),
        _size(sum(c.image_bytes for c in due)),
    )
    ages.add_row(
        "instances kept for now (purged first above the watermark)",
        str(len(kept)),
        _size(sum(c.image_bytes for c in kept)),
    )
    ages.add_row(
        f"results due (settled over {retention.keep_results_h:g} h ago)",
        str(sum(1 for c in candidates if c.results_due)),
        f"{sum(c.results for c in candidates if c.results_due)} result(s)",
    )
    ages.add_row("purged so far", str(purged_studies(index)), "")
    console.print(ages)


def purge(
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="List what would be purged; delete nothing.")
    ] = False,
    config: ConfigOption = None,
) -> None:
    """Purge now what retention allows: finished studies past their keep time, and above the high
    watermark the oldest finished studies until the low one. Never a study with work in progress."""
    _, _, purger = _open(config)
    report = purger.run_once(dry_run=dry_run)
    table = Table(
        "study", "instances", "size", "results", "why", title="would purge" if dry_run else "purged"
    )
    for item in report.purged:
        table.add_row(
            item.study_uid,
            "yes" if item.images else "",
            _size(item.image_bytes) if item.images else "",
            "yes" if item.results else "",
            item.reason,
        )
    console.print(table)
    if report.resumed:
        console.print(f"finished {len(report.resumed)} purge(s) a crash had interrupted")
    if dry_run:
        console.print(
            f"{len(report.purged)} study(ies) would be purged; disk {report.disk_before.used_pct:.1f}% used"
        )
    else:
        console.print(
            f"purged {len(report.purged)} study(ies): {report.instances_removed} instance(s), "
            f"{_size(report.bytes_removed)}, {report.results_removed} result(s)"
        )
    if report.forgotten:
        console.print(
            f"{len(report.forgotten)} study(ies) purged over {purger.retention.keep_records_days:g} day(s) "
            f"ago: their index rows {'would be' if dry_run else 'were'} deleted"
        )


def erase(
    patient_id: Annotated[
        str | None, typer.Option("--patient-id", help="Erase every study the stored headers name it in.")
    ] = None,
    study: Annotated[str | None, typer.Option("--study", help="Erase this study (its UID).")] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Erase studies with work in progress too (their jobs are lost).")
    ] = False,
    requested_by: Annotated[
        str | None,
        typer.Option("--requested-by", help="Who asked, for the audit (default: the OS user running this)."),
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Erase on request every stored instance, result, pseudonym and index row of one patient or one
    study. The audit keeps that an erasure happened, when, who asked and how much went; not whose."""
    if (patient_id is None) == (study is None):
        console.print("[red]give one of --patient-id or --study[/red]")
        raise typer.Exit(2)
    index, store, _ = _open(config)
    who = requested_by or getpass.getuser()
    try:
        report = erase_stored(
            index, store, requested_by=who, patient_id=patient_id, study_uid=study, force=force
        )
    except ErasureRefused as refused:
        console.print(f"[red]not erased: {refused}[/red]")
        raise typer.Exit(1) from refused
    console.print(
        f"erasure {report.erasure_id} (requested by {who}): {len(report.studies)} study(ies), "
        f"{report.instances} instance(s), {_size(report.bytes)}, {report.results} result(s), "
        f"{report.pseudonyms} pseudonym(s) erased"
    )
