"""The PACS goes away: deliveries back off and go through when it returns; past the dead-letter age they
wait in the dead-letter state until `radrouter deliveries retry` sends them again."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

from radrouter.node.supervisor import NodeProcess
from tests.faults.conftest import FILES, STUDY, FaultTally
from tests.faults.harness import DELIVERY_WORKER, NodeProcesses
from tests.services import Orthanc, storescu, wait_until


def test_pacs_down_then_back_and_past_the_dead_letter_age(tmp_path: Path, tally: FaultTally) -> None:
    pacs = Orthanc(tmp_path / "pacs")
    pacs.start()
    pacs.stop()
    node = NodeProcesses(tmp_path / "node", pacs, delivery={"dead_letter_after_s": 25.0})
    node.start()
    try:
        tally.fault("PACS down, back within the dead-letter age")
        assert storescu(node.port, FILES).returncode == 0
        tally.sent(FILES)
        wait_until(
            lambda: [d["attempts"] >= 3 for d in node.study(STUDY)["deliveries"]] == [True, True],
            240,
            "three delivery attempts each",
        )
        pacs.start()
        node.wait_for_state(STUDY, "DONE")
        tally.results_in_pacs(pacs, STUDY, 1)

        pacs.stop()
        tally.fault("PACS down past the dead-letter age")
        assert storescu(node.port, FILES[:1]).returncode == 0  # a late instance: new results to deliver
        tally.sent(FILES[:1], new_study=False)
        study = node.wait_for_state(STUDY, "FAILED", timeout_s=300)
        assert study["reason"] == "2 delivery(ies) failed"
        dead = node.http.get(f"{node.api}/deliveries/dead-letter").json()
        assert sorted(d["kind"] for d in dead) == ["SEG", "SR"]

        pacs.start()
        retried = subprocess.run(
            [
                sys.executable,
                "-m",
                "radrouter.cli",
                "deliveries",
                "retry",
                "--config",
                str(node.config_path),
            ],
            capture_output=True,
            text=True,
        )
        assert retried.returncode == 0, retried.stderr + retried.stdout
        assert "queued 2 delivery(ies) again" in retried.stdout
        node.wait_for_state(STUDY, "DONE")
        assert node.http.get(f"{node.api}/deliveries/dead-letter").json() == []
        tally.results_in_pacs(pacs, STUDY, 2)
    finally:
        node.stop()
        pacs.stop()


def _kill_the_delivery_worker_while_the_pacs_is_down(
    tmp_path: Path, tally: FaultTally, replacement: str, why: str
) -> dict[str, Any]:
    """PACS down, deliveries retrying; kill -9 the delivery worker and start ``replacement`` (the same
    worker again, or a spare of another name); PACS back. The study as the node tells it once DONE."""
    pacs = Orthanc(tmp_path / "pacs")
    pacs.start()
    pacs.stop()
    node = NodeProcesses(tmp_path / "node", pacs)
    spare = node.commands[DELIVERY_WORKER]
    node.commands[SPARE] = NodeProcess([*spare.command, "--name", "spare@%h"], spare.env)
    node.start(*(name for name in node.commands if name != SPARE))
    try:
        assert storescu(node.port, FILES).returncode == 0
        tally.sent(FILES)
        wait_until(
            lambda: [d["attempts"] >= 2 for d in node.study(STUDY)["deliveries"]] == [True, True],
            240,
            "two delivery attempts each",
        )
        node.kill(DELIVERY_WORKER)
        tally.fault(why)
        node.start(replacement)
        pacs.start()
        study = node.wait_for_state(STUDY, "DONE", timeout_s=150)
        tally.results_in_pacs(pacs, STUDY, 1)
        return study
    finally:
        node.stop()
        pacs.stop()


SPARE = "worker-spare"


def test_delivery_worker_killed_while_its_deliveries_wait_to_retry(tmp_path: Path, tally: FaultTally) -> None:
    """The retries a delivery worker held (waiting out their backoff) die with it; its next start sends
    them again at once, not after the broker's visibility timeout (3600 s as shipped)."""
    why = "kill -9 of the delivery worker while its deliveries wait to retry"
    study = _kill_the_delivery_worker_while_the_pacs_is_down(tmp_path, tally, DELIVERY_WORKER, why)
    # Handed on: each retry the dead worker held (one still waiting in the queue goes straight on).
    lost = [e for e in study["events"] if e["hop"] == "recovered" and e["detail"].get("lost_worker")]
    assert 1 <= len(lost) <= 2


def test_a_delivery_worker_lost_for_good_has_its_deliveries_sent_by_another(
    tmp_path: Path, tally: FaultTally
) -> None:
    """The delivery worker is killed and never restarted (its machine died): once its heartbeat has
    been missing inference.worker_lost_after_s (30 s), the SCP's reconciler hands its deliveries to
    another delivery worker."""
    why = "kill -9 of the delivery worker, never restarted"
    study = _kill_the_delivery_worker_while_the_pacs_is_down(tmp_path, tally, SPARE, why)
    # Handed on: each retry the dead worker held (one still waiting in the queue goes straight on).
    lost = [e for e in study["events"] if e["hop"] == "recovered" and e["detail"].get("lost_worker")]
    assert 1 <= len(lost) <= 2
