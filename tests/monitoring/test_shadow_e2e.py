"""The story of a pilot: brain extraction runs in shadow on its own node. The study is processed and
its results stored and monitored, but nothing reaches the PACS and the reading list does not move."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pydicom
import pytest

from tests.services import MPRAGE, Node, Orthanc, as_new_study, storescu, wait_until


@pytest.fixture(scope="module")
def shadow_node(tmp_path_factory: pytest.TempPathFactory, orthanc: Orthanc) -> Iterator[Node]:
    running = Node(tmp_path_factory.mktemp("shadow-node"), orthanc)
    with running.config_path.open("a") as config:
        # Without shadow mode this rule would make the study STAT (its brain volume is about 1.2 L).
        config.write(
            "monitoring: {shadow_pipelines: [brain-extraction]}\n"
            "worklist:\n  triage_rules:\n"
            "    - {name: big, pipeline: brain-extraction, measurement: {name: Brain volume, above: 500},"
            " priority: stat, reason: test}\n"
        )
    running.start()
    yield running
    assert running.stop() == 0


def test_shadow_results_are_stored_and_monitored_but_never_delivered(
    shadow_node: Node, orthanc: Orthanc, tmp_path: Path
) -> None:
    files = as_new_study(sorted(MPRAGE.glob("*.dcm")), tmp_path)
    study_uid = str(pydicom.dcmread(files[0], stop_before_pixels=True).StudyInstanceUID)
    sent = storescu(shadow_node.port, files)
    assert sent.returncode == 0, sent.stderr

    def done() -> dict[str, Any] | None:
        study = shadow_node.study(study_uid)
        return study if study.get("state") in ("DONE", "FAILED") else None

    study = wait_until(done, 600, "the shadow study processed", interval_s=0.5)
    assert study["state"] == "DONE", study.get("reason")
    assert sorted(r["kind"] for r in study["results"]) == ["SEG", "SR"]
    assert study["deliveries"] == []
    assert orthanc.find_series(study_uid, "SEG") == [] and orthanc.find_series(study_uid, "SR") == []
    hops = [e["hop"] for e in study["events"]]
    assert "delivered" not in hops and "delivery_attempt" not in hops

    def triaged_in_shadow() -> bool:
        events = shadow_node.study(study_uid)["events"]
        return any(e["hop"] == "triaged" and e["detail"].get("shadow") for e in events)

    wait_until(triaged_in_shadow, 60, "triage skipped for the shadow pipeline")
    [item] = [
        e for e in shadow_node.http.get(f"{shadow_node.api}/worklist").json() if e["study_uid"] == study_uid
    ]
    assert item["priority"] == "routine" and item["finding"] is None

    def monitored() -> dict[str, Any]:
        stats = shadow_node.http.get(f"{shadow_node.api}/monitoring/brain-extraction").json()["statistics"]
        by_name = {s["statistic"]: s for s in stats}
        return by_name if "measurement:Brain volume" in by_name else {}

    by_name = wait_until(monitored, 60, "the shadow result in the monitoring series")
    volume, philips = by_name["measurement:Brain volume"], by_name["input:manufacturer=Philips"]
    assert 900 <= volume["days"][-1]["value"] <= 1800 and volume["days"][-1]["samples"] == 1
    assert philips["days"][-1]["value"] == 1.0
