"""The dashboard's figures of the last hour and day, from an index with known times."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

from pydicom.uid import generate_uid

from radrouter.storage.index import AuditEvent, Hop, Index, Job, JobState, Series, Study
from radrouter.web.activity import HOURS, activity, activity_chart

NOW = datetime(2026, 3, 2, 12, 30)


def _study(index: Index, received: datetime, delivered_after_s: float | None, failed: bool = False) -> None:
    uid, series_uid = generate_uid(), generate_uid()
    with index.session() as session:
        session.add(Study(uid=uid, first_received_at=received, last_received_at=received))
        session.add(Series(uid=series_uid, study_uid=uid, modality="MR"))
        session.flush()
        if delivered_after_s is not None:  # two deliveries: only the first counts
            for extra in (0, 60):
                at = received + timedelta(seconds=delivered_after_s + extra)
                session.add(AuditEvent(study_uid=uid, hop=Hop.DELIVERED, at=at, detail={}))
        if failed:
            session.add(
                Job(
                    study_uid=uid, series_uid=series_uid, pipeline="p", priority="routine", rule="r",
                    state=JobState.FAILED, finished_at=received + timedelta(seconds=5),
                )
            )  # fmt: skip


def test_counts_per_hour_and_time_to_result_percentiles(tmp_path: Path) -> None:
    index = Index(f"sqlite:///{tmp_path / 'index.sqlite3'}")
    for after in (10, 20, 30, 40):  # in the last hour
        _study(index, NOW - timedelta(minutes=30), after)
    _study(index, NOW - timedelta(hours=5), 100)  # earlier today
    _study(index, NOW - timedelta(hours=3), None, failed=True)
    _study(index, NOW - timedelta(days=2), 5)  # outside the day

    seen = activity(index, NOW)
    assert len(seen.hours) == HOURS and seen.hours[-1] == NOW.replace(minute=0)
    assert (seen.last_hour.received, seen.last_hour.delivered, seen.last_hour.failed) == (4, 4, 0)
    assert (seen.last_day.received, seen.last_day.delivered, seen.last_day.failed) == (6, 5, 1)
    assert (seen.last_hour.p50_s, seen.last_hour.p95_s) == (25.0, 38.5)
    assert seen.last_day.p95_s is not None and seen.last_day.p95_s > 40
    assert seen.received[-1] == 4 and seen.received[-6] == 1 and seen.failed[-4] == 1
    assert seen.delivered[-6] == 1 and seen.p50_s[-6] == 100.0
    assert activity_chart(seen).startswith("data:image/svg+xml;base64,")
    index.engine.dispose()
