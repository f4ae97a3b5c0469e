"""The retention bench's short form: a simulated day on a small volume, nothing refused, nothing
unfinished touched, and the peak disk use far below what was received."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import retention as bench
from radrouter.storage import retention


def test_a_simulated_day_never_refuses(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(retention, "disk_usage", retention.disk_usage)  # the bench replaces it
    args = bench.parse_args(
        [
            "--hours",
            "24",
            "--studies-per-hour",
            "2",
            "--slices",
            "5",
            "--volume-mb",
            "100",
            "--reserve-mb",
            "5",
        ]
    )
    week, volume = bench.simulate(args, tmp_path)
    assert week.refused == 0 and week.unfinished_touched == []
    assert week.purged_studies > 0 and week.received_bytes > 2 * volume.peak
    assert volume.peak <= volume.capacity * 0.95
