"""The reading list at scale: thousands of open studies, one page, the change counter, the full list.

Fills an index with ``--studies`` open studies (each with its own header file, variants of the real
head CT and MPRAGE headers with new UIDs and names), then times through the real web app (FastAPI's
TestClient, in process) the three requests a reading list makes, and the full list as the old page
fetched it every second, measured in the same run:

    .venv/bin/python -m bench.worklist_page [--studies 5000] [--page 50] [--repeat 20]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from pathlib import Path

import pydicom
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydicom.uid import generate_uid
from sqlalchemy import insert

from radrouter.config.rules import Priority
from radrouter.config.settings import Settings
from radrouter.storage.index import Index, Instance, Series, Study, StudyState, WorklistItem, utcnow
from radrouter.web.worklist import worklist_router
from radrouter.worklist.listing import list_page, ordered
from radrouter.worklist.reading_list import ReadingList
from tests.services import CT_HEAD, MPRAGE

CT_IMAGE, EXPLICIT_LE = "1.2.840.10008.5.1.4.1.1.2", "1.2.840.10008.1.2.1"
#: A few STAT and URGENT studies among many routine ones, as on a real list.
MIX = (Priority.STAT,) + (Priority.URGENT,) * 9 + (Priority.ROUTINE,) * 90


def real_headers() -> list[Path]:
    return [CT_HEAD / "I10", sorted(MPRAGE.glob("*.dcm"))[0]]


def open_studies(index: Index, paths: Sequence[Path], count: int, now: datetime) -> list[str]:
    """``count`` complete, unread studies, one instance each at ``paths[i % len(paths)]`` (by path)."""
    modalities = [str(pydicom.dcmread(p, stop_before_pixels=True).Modality) for p in paths]
    studies, series, instances, items = [], [], [], []
    for number in range(count):
        study_uid, series_uid = generate_uid(), generate_uid()
        at = now - timedelta(seconds=count - number)
        studies.append(
            {"uid": study_uid, "state": StudyState.DONE, "first_received_at": at, "last_received_at": at}
        )
        series.append(
            {"uid": series_uid, "study_uid": study_uid, "modality": modalities[number % len(paths)]}
        )
        instances.append(
            {
                "sop_uid": generate_uid(), "series_uid": series_uid, "sop_class_uid": CT_IMAGE,
                "transfer_syntax_uid": EXPLICIT_LE, "path": str(paths[number % len(paths)]), "size": 1,
            }
        )  # fmt: skip
        items.append(
            {
                "study_uid": study_uid, "priority": MIX[number % len(MIX)], "base_priority": Priority.ROUTINE,
                "reason": "bench", "arrived_at": at, "changed_at": at,
            }
        )  # fmt: skip
    with index.session() as session:  # bulk inserts: the index as thousands of receptions leave it
        for table, rows in ((Study, studies), (Series, series), (Instance, instances), (WorklistItem, items)):
            session.execute(insert(table), rows)
    return [row["uid"] for row in studies]


def header_variants(folder: Path, count: int) -> list[Path]:
    """One header-only file per study: the real headers with new UIDs and a patient name each."""
    folder.mkdir(parents=True, exist_ok=True)
    sources = [pydicom.dcmread(p, stop_before_pixels=True) for p in real_headers()]
    paths = []
    for number in range(count):
        header = sources[number % len(sources)]
        header.PatientName = f"BENCH^Patient {number}"
        header.PatientID = f"B{number:06d}"
        header.SOPInstanceUID = generate_uid()
        path = folder / f"{number}.dcm"
        header.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def per_request_ms(action: Callable[[], object], repeat: int) -> float:
    start = time.perf_counter()
    for _ in range(repeat):
        action()
    return (time.perf_counter() - start) / repeat * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--studies", type=int, default=5000)
    parser.add_argument("--page", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        settings = Settings(storage={"root": root})
        index = Index(settings.storage.resolved_index_url())
        uids = open_studies(index, header_variants(root / "headers", args.studies), args.studies, utcnow())
        app = FastAPI()
        app.include_router(worklist_router(settings, index))
        client = TestClient(app)
        reading_list = ReadingList(settings, index)
        to_read = iter(uids)

        def page() -> int:
            return len(client.get(f"/api/worklist?limit={args.page}").content)

        def page_after_a_read() -> int:
            reading_list.mark_read(next(to_read))
            return page()

        def whole_list() -> int:
            """Everything computed again and sent, as the old page had it every second."""
            now = utcnow()
            return len(json.dumps(list_page(settings, index, now, ordered(settings, index, now)).entries))

        cold_start = time.perf_counter()
        page_bytes = page()
        cold_ms = (time.perf_counter() - cold_start) * 1000
        whole = f"the whole list of {args.studies}, as the old page fetched it each second"
        whole_bytes = whole_list()  # reads every header once: the comparison is between warm caches
        rows = {
            whole: (per_request_ms(whole_list, max(3, args.repeat // 5)), whole_bytes),
            "change counter (/api/worklist/version)": (
                per_request_ms(lambda: client.get("/api/worklist/version"), args.repeat),
                len(client.get("/api/worklist/version").content),
            ),
            f"one page of {args.page}, cold header cache (first request)": (cold_ms, page_bytes),
            f"one page of {args.page}, nothing changed": (per_request_ms(page, args.repeat), page_bytes),
            f"one page of {args.page} after a read (sorted again)": (
                per_request_ms(page_after_a_read, args.repeat),
                page_bytes,
            ),
        }
        baseline = rows[whole][0]
        print(f"reading list with {args.studies} open studies")
        print(f"{'request':<62} {'ms/request':>10} {'bytes':>10} {'vs whole list':>14}")
        for name, (ms, size) in rows.items():
            print(f"{name:<62} {ms:>10.1f} {size:>10} {ms / baseline:>13.3f}x")
        index.engine.dispose()


if __name__ == "__main__":
    main()
