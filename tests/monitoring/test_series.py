"""Monitoring reads results through the same summary model the pipelines write."""

from __future__ import annotations

from datetime import datetime

from radrouter.config.settings import Settings
from radrouter.inference.results.summary import FindingItem, MeasurementItem, ResultSummary
from radrouter.monitoring.service import Monitor
from radrouter.storage.index import Index
from tests.monitoring.conftest import add_result

DAY = datetime(2026, 6, 1, 9, 0)


def test_a_yes_no_finding_counts_as_called_in_the_finding_rate(index: Index) -> None:
    """A present finding without a probability (a yes/no pipeline) is a call, not a crash."""
    written = ResultSummary(
        pipeline="ich",
        version="1.0",
        measurements=[MeasurementItem(name="Bleed volume", value=12.5, unit="mL")],
        findings=[FindingItem(name="Haemorrhage", code="SCT:50960005", probability=None)],
    ).as_row()
    add_result(index, DAY, pipeline="ich", measurements=written["measurements"], findings=written["findings"])

    samples = Monitor(Settings(), index, clock=lambda: DAY).samples("ich")

    by_statistic = {sample.statistic: sample.value for sample in samples}
    assert by_statistic["finding:SCT:50960005"] == 1.0
    assert by_statistic["measurement:Bleed volume"] == 12.5
