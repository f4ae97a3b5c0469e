"""The chaos soak's short form: the node under load while random processes get kill -9, shipped defaults."""

from __future__ import annotations

from pathlib import Path

from bench.soak import soak


def test_a_short_soak_loses_nothing_and_leaves_nothing_stuck(tmp_path: Path) -> None:
    # Short: 1.5 minutes of studies, a kill -9 every 15 s (the bench's default run is 20 minutes).
    report = soak(tmp_path, minutes=1.5, kill_every_s=15.0, study_every_s=12.0, senders=2)
    print("\n" + "\n".join(report.lines()))
    assert len(report.recoveries) >= 4, "the chaos did not happen"
    assert all(r.back_after_s is not None for r in report.recoveries), "a killed process did not come back"
    assert report.problems == []
    assert len(report.times_to_result_s) == len(report.studies) >= 5
