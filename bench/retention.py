"""A simulated week of a busy node's storage: GB received against the peak disk used, and whether the
SCP would ever have refused a C-STORE (Out of Resources).

Studies of real CT slices (``../shared/data/ct-head-philips-phantom-5mm``, new UIDs each) arrive every
simulated step, three times as many in the daytime (08-18 h); each is written into a temporary storage
root and indexed by the SCP's own ingest path (``InstanceStore.write``, ``record_instance``; no network),
then is PROCESSING until its work ends ``--work-min`` later (``--slow-share`` of them only after
``--slow-h``: a slow pipeline, a delivery retried for hours) and settles DONE. After each step the
node's own retention pass runs (``Purger.run_once`` with the simulated clock), on a volume of
``--volume-mb`` (the bytes actually on disk under the root, against that capacity). Before each
instance is stored the SCP's free-space check is applied (free minus ``--reserve-mb`` below the
instance's size: refused). After every pass it checks that no unfinished study lost a file. Usage:

    .venv/bin/python -m bench.retention [--hours 168] [--studies-per-hour 4] [--slices 10] [--volume-mb 500]
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from io import BytesIO
from pathlib import Path

import pydicom
from pydicom.uid import generate_uid
from sqlalchemy import select, update

from radrouter.config.settings import RetentionSettings
from radrouter.storage import retention
from radrouter.storage.index import Index, Instance, Series, Study, StudyState, utcnow
from radrouter.storage.ingest import ReceivedInstance, record_instance
from radrouter.storage.retention import DiskUsage, Purger
from radrouter.storage.store import InstanceStore
from tests.services import CT_HEAD

#: Found as the tests find it (``../shared/data`` beside the checkout, else the workplace's copy).
SOURCE = CT_HEAD
MB = 1024 * 1024


@dataclass
class Volume:
    """A storage volume of a fixed capacity: what is on disk under the root counts as used."""

    root: Path
    capacity: int
    used: int = 0
    peak: int = 0

    def measure(self) -> int:
        self.used = sum(entry.stat().st_size for entry in self.root.rglob("*.dcm"))
        self.peak = max(self.peak, self.used)
        return self.used

    def add(self, size: int) -> None:
        self.used += size
        self.peak = max(self.peak, self.used)

    def usage(self) -> DiskUsage:
        return DiskUsage(self.capacity, self.used, self.capacity - self.used)


@dataclass
class Week:
    received_bytes: int = 0
    received_instances: int = 0
    refused: int = 0
    studies: int = 0
    purged_studies: int = 0
    purged_bytes: int = 0
    unfinished_touched: list[str] = field(default_factory=list)


def _slices(count: int) -> list[pydicom.Dataset]:
    names = sorted(SOURCE.iterdir())[:count]
    if len(names) < count:
        sys.exit(f"{SOURCE} has {len(names)} slices, fewer than --slices {count}")
    return [pydicom.dcmread(name) for name in names]


def _receive(
    index: Index,
    store: InstanceStore,
    volume: Volume,
    slices: list[pydicom.Dataset],
    reserve: int,
    week: Week,
) -> str:
    """One study through the SCP's free-space check and ingest path; its UID."""
    study_uid, series_uid = generate_uid(), generate_uid()
    for source in slices:
        dataset = source.copy()
        dataset.StudyInstanceUID, dataset.SeriesInstanceUID = study_uid, series_uid
        dataset.SOPInstanceUID = generate_uid()
        buffer = BytesIO()
        dataset.save_as(buffer, enforce_file_format=True)
        data = buffer.getvalue()
        if volume.capacity - volume.used - reserve < len(data):
            week.refused += 1  # the SCP answers Out of Resources (0xA700)
            continue
        path = store.instance_path(study_uid, series_uid, dataset.SOPInstanceUID)
        store.write(path, data)
        volume.add(len(data))
        record_instance(index, ReceivedInstance.of_stored_file(path, calling_ae="CT"))
        week.received_bytes += len(data)
        week.received_instances += 1
    with index.session() as session:
        session.execute(update(Study).where(Study.uid == study_uid).values(state=StudyState.PROCESSING))
    week.studies += 1
    return study_uid


def _check_unfinished(index: Index, store: InstanceStore, week: Week) -> None:
    """Every instance row of an unfinished study still has its file."""
    with index.session() as session:
        rows = session.execute(
            select(Study.uid, Instance.path)
            .join(Series, Series.study_uid == Study.uid)
            .join(Instance, Instance.series_uid == Series.uid)
            .where(Study.state.not_in((StudyState.DONE, StudyState.FAILED)))
        ).all()
    week.unfinished_touched += sorted({uid for uid, path in rows if not store.resolve(path).is_file()})


def simulate(args: argparse.Namespace, workdir: Path) -> tuple[Week, Volume]:
    rng = random.Random(args.seed)
    index = Index(f"sqlite:///{workdir / 'index.sqlite3'}", migrate=True)
    store = InstanceStore(workdir / "data", fsync=False)
    volume = Volume(store.root, args.volume_mb * MB)
    policy = RetentionSettings(
        keep_images_h=args.keep_images_h,
        high_watermark_pct=args.high_watermark_pct,
        low_watermark_pct=args.low_watermark_pct,
    )
    retention.disk_usage = lambda _store: volume.usage()  # the simulated volume's capacity
    purger = Purger(policy, index, store, reserve_bytes=args.reserve_mb * MB)
    slices = _slices(args.slices)
    reserve = args.reserve_mb * MB
    step = timedelta(minutes=args.step_min)
    # The whole week lies in the (real) past, from a midnight, so daytime hours are the same each run.
    start = (utcnow() - timedelta(hours=args.hours + 24)).replace(hour=0, minute=0, second=0, microsecond=0)
    settling: list[tuple[datetime, str]] = []
    now = start
    week = Week()
    while now < start + timedelta(hours=args.hours):
        rate = args.studies_per_hour * (3 if 8 <= now.hour < 18 else 1) * args.step_min / 60
        arrivals = int(rate) + (rng.random() < rate - int(rate))
        for _ in range(arrivals):
            uid = _receive(index, store, volume, slices, reserve, week)
            slow = rng.random() < args.slow_share
            settling.append(
                (now + (timedelta(hours=args.slow_h) if slow else timedelta(minutes=args.work_min)), uid)
            )
        now += step
        for at, uid in settling:
            if at <= now:  # its work is done and delivered: it settles (index.settle_study's fields)
                with index.session() as session:
                    done = update(Study).where(Study.uid == uid)
                    session.execute(done.values(state=StudyState.DONE, settled_at=at))
        settling = [(at, uid) for at, uid in settling if at > now]
        report = purger.run_once(now=now)
        week.purged_studies += len(report.purged)
        week.purged_bytes += report.bytes_removed
        volume.measure()
        _check_unfinished(index, store, week)
    index.engine.dispose()
    return week, volume


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--hours", type=float, default=168, help="simulated hours (a week)")
    parser.add_argument("--studies-per-hour", type=float, default=4, help="at night; 3x in the daytime")
    parser.add_argument("--slices", type=int, default=10, help="CT slices per study (about 0.5 MB each)")
    parser.add_argument("--volume-mb", type=int, default=500, help="the storage volume's capacity")
    parser.add_argument("--reserve-mb", type=int, default=25, help="storage.free_space_reserve_mb")
    parser.add_argument("--keep-images-h", type=float, default=12, help="retention.keep_images_h")
    parser.add_argument("--high-watermark-pct", type=float, default=85)
    parser.add_argument("--low-watermark-pct", type=float, default=75)
    parser.add_argument("--step-min", type=float, default=10, help="simulated minutes between passes")
    parser.add_argument("--work-min", type=float, default=20, help="minutes from receipt to settled")
    parser.add_argument("--slow-share", type=float, default=0.1, help="share of studies settling late")
    parser.add_argument("--slow-h", type=float, default=6, help="hours those take")
    parser.add_argument("--seed", type=int, default=1)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="radrouter-retention-") as folder:
        week, volume = simulate(args, Path(folder))
    print(
        f"simulated {args.hours:g} h: {week.studies} studies, {week.received_instances} instances, "
        f"{week.received_bytes / 1e9:.2f} GB received"
    )
    print(
        f"volume {args.volume_mb} MB: peak used {volume.peak / 1e6:.0f} MB "
        f"({100 * volume.peak / volume.capacity:.1f}%), at the end {volume.used / 1e6:.0f} MB; "
        f"received / peak = {week.received_bytes / max(volume.peak, 1):.1f}x"
    )
    print(f"retention purged {week.purged_studies} studies ({week.purged_bytes / 1e9:.2f} GB)")
    print(f"C-STORE refused (Out of Resources): {week.refused}")
    print(f"unfinished studies that lost a file: {len(week.unfinished_touched)}")
    print(f"({time.monotonic() - began:.0f} s of wall time, pid {os.getpid()})")
    return 1 if week.refused or week.unfinished_touched else 0


if __name__ == "__main__":
    sys.exit(main())
