"""MPPS over the network: the modality's own end-of-procedure signal completes the study, not the timer.

A pynetdicom MPPS SCU starts the step, dcmtk's storescu sends the images over two associations with a
pause longer than the timer's quiet period between them, and the step's COMPLETED lists them all.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pydicom
import pytest
from pydicom import Dataset
from pydicom.uid import generate_uid
from pynetdicom import AE, evt
from pynetdicom.sop_class import ModalityPerformedProcedureStep  # type: ignore[attr-defined]

from radrouter.storage.index import AuditEvent, Hop, Index, Study, StudyState
from radrouter.storage.steps import PerformedStep
from tests.router.receive.mpps_scu import end_step, start_step, two_series
from tests.services import Node, free_port, storescu, wait_until

#: README default of ``completion.quiet_period_s``: the timer would complete a study this long after
#: its association ends.
QUIET_PERIOD_S = 1.0
PAUSE_S = 5.0


def _completions(study: dict[str, Any]) -> list[dict[str, Any]]:
    return [event for event in study["events"] if event["hop"] == "complete"]


def test_a_study_sent_in_two_parts_completes_at_its_last_listed_instance(node: Node, tmp_path: Path) -> None:
    study_uid, series_a, series_b = two_series(tmp_path)
    step_uid = generate_uid()
    assert start_step(node.port, step_uid, study_uid) == 0x0000

    assert storescu(node.port, series_a).returncode == 0
    time.sleep(PAUSE_S)  # the timer alone completes the study here
    assert node.study(study_uid)["state"] == "RECEIVING", "completed at the pause"
    assert storescu(node.port, series_b).returncode == 0
    assert end_step(node.port, step_uid, series_a + series_b) == 0x0000
    ended = datetime.now(UTC)  # the node has answered the COMPLETED: every listed instance is stored

    study = wait_until(lambda: (s := node.study(study_uid)) and _completions(s) and s, 60, "complete")
    [complete] = _completions(study)
    routed_after = datetime.fromisoformat(complete["at"]) - ended
    print(f"completed {routed_after.total_seconds():.3f} s after the step's COMPLETED was answered")
    assert routed_after < timedelta(seconds=0.5), "the study waited after its last listed instance"
    assert complete["detail"]["instances"] == len(series_a) + len(series_b)
    # Completed by the step, earlier than the timer could have: the timer waits a quiet period after
    # the association's end, and the last instance was stored before that end.
    assert complete["detail"]["quiet_s"] < QUIET_PERIOD_S
    assert study["performed_steps"] == [
        {
            "uid": step_uid,
            "status": "COMPLETED",
            "series": 2,
            "instances": len(series_a + series_b),
            "missing": [],
        }
    ]
    wait_until(lambda: node.study(study_uid)["state"] in ("DONE", "FAILED"), 120, "settled")
    assert len(_completions(node.study(study_uid))) == 1, "routed twice"


def test_steps_refuse_what_mpps_does_not_allow(node: Node, tmp_path: Path) -> None:
    study_uid, series, _rest = two_series(tmp_path, first=1)
    step_uid = generate_uid()
    assert end_step(node.port, step_uid, series) == 0x0112  # no such step
    assert start_step(node.port, step_uid, study_uid) == 0x0000
    assert start_step(node.port, step_uid, study_uid) == 0x0111  # duplicate
    assert end_step(node.port, step_uid, series, status="FINISHED") == 0x0106  # no such status
    assert end_step(node.port, step_uid, series, status="DISCONTINUED") == 0x0000
    assert end_step(node.port, step_uid, series) == 0x0110  # an ended step may no longer change


class RisMppsSCP:
    """A RIS that tracks procedures: a pynetdicom MPPS SCP recording what it is sent, in order."""

    def __init__(self) -> None:
        self.port = free_port()
        self.received: list[tuple[str, str, str]] = []  # (message, step UID, status)
        ae = AE(ae_title="RIS")
        ae.add_supported_context(ModalityPerformedProcedureStep)
        handlers = [(evt.EVT_N_CREATE, self._create), (evt.EVT_N_SET, self._set)]
        self.server = ae.start_server(("127.0.0.1", self.port), block=False, evt_handlers=handlers)

    def _create(self, event: Any) -> tuple[int, Dataset]:
        status = str(event.attribute_list.PerformedProcedureStepStatus)
        self.received.append(("N-CREATE", str(event.request.AffectedSOPInstanceUID), status))
        return 0x0000, event.attribute_list

    def _set(self, event: Any) -> tuple[int, Dataset]:
        status = str(event.attribute_list.PerformedProcedureStepStatus)
        self.received.append(("N-SET", str(event.request.RequestedSOPInstanceUID), status))
        return 0x0000, event.attribute_list


class ScpWithShortGrace:
    """``radrouter scp`` alone (no broker, no rules: a complete study goes DONE), with
    ``completion.mpps_grace_s`` of 2 s instead of 30 s so that the test waits 2 s, not 30, a RIS
    as destination that gets the MPPS forwarded, free ports, and a 64 MB free-space reserve instead of
    1024 MB (a CI disk may have less than a GB free)."""

    GRACE_S = 2.0

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.ris = RisMppsSCP()
        root = workdir / "data"
        config = workdir / "radrouter.yaml"
        config.write_text(
            f"node: {{port: {self.port}, metrics_port: 0}}\n"
            f"storage: {{root: {root}, free_space_reserve_mb: 64}}\n"
            f"broker: {{url: 'redis://127.0.0.1:{free_port()}/0'}}\n"
            f"completion: {{mpps_grace_s: {self.GRACE_S}}}\n"
            "destinations:\n"
            f"  ris: {{host: 127.0.0.1, port: {self.ris.port}, ae_title: RIS, forward_mpps: true}}\n"
            "rules: []\n"
        )
        log = workdir / "scp.log"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "radrouter.cli", "scp", "--config", str(config)],
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
        )
        wait_until(lambda: "listening on" in log.read_text(), 60, "the SCP")
        self.index = Index(f"sqlite:///{root / 'index.sqlite3'}")


@pytest.fixture(scope="module")
def scp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ScpWithShortGrace]:
    running = ScpWithShortGrace(tmp_path_factory.mktemp("mpps"))
    yield running
    running.process.send_signal(signal.SIGTERM)
    running.process.wait(timeout=30)
    running.ris.server.shutdown()


def test_a_listed_instance_that_never_came_is_recorded_after_the_grace(
    scp: ScpWithShortGrace, tmp_path: Path
) -> None:
    study_uid, series_a, series_b = two_series(tmp_path)
    step_uid = generate_uid()
    assert start_step(scp.port, step_uid, study_uid) == 0x0000
    assert storescu(scp.port, series_a + series_b[:-1]).returncode == 0
    ended = time.monotonic()
    assert end_step(scp.port, step_uid, series_a + series_b) == 0x0000

    def complete() -> Study | None:
        with scp.index.session() as session:
            study = session.get(Study, study_uid)
            return study if study is not None and study.state == StudyState.DONE else None

    wait_until(complete, 30, "complete after the grace")
    assert time.monotonic() - ended >= ScpWithShortGrace.GRACE_S
    never_sent = str(pydicom.dcmread(series_b[-1], stop_before_pixels=True).SOPInstanceUID)
    with scp.index.session() as session:
        events = session.query(AuditEvent).filter(AuditEvent.study_uid == study_uid).all()
        assert [e.hop for e in events].count(Hop.COMPLETE) == 1
        [incomplete] = [e for e in events if e.hop == Hop.INCOMPLETE]
        step = session.get(PerformedStep, step_uid)
        assert step is not None
        assert step.missing == incomplete.detail["missing"] == [never_sent]

    # Sent after all, it reopens the study, which the timer completes again: its step is used up.
    assert storescu(scp.port, series_b[-1:]).returncode == 0

    def completed_twice() -> bool:
        with scp.index.session() as session:
            events = session.query(AuditEvent).filter(AuditEvent.study_uid == study_uid)
            return [e.hop for e in events].count(Hop.COMPLETE) == 2

    wait_until(completed_twice, 30, "the late instance's revision completed")


def test_steps_are_forwarded_in_order_to_a_destination_that_wants_them(
    scp: ScpWithShortGrace, tmp_path: Path
) -> None:
    study_uid, series, _rest = two_series(tmp_path, first=1)
    step_uid = generate_uid()
    assert start_step(scp.port, step_uid, study_uid) == 0x0000
    assert end_step(scp.port, step_uid, series) == 0x0000
    wait_until(lambda: len([r for r in scp.ris.received if r[1] == step_uid]) == 2, 30, "forwarded")
    forwarded = [(kind, status) for kind, uid, status in scp.ris.received if uid == step_uid]
    assert forwarded == [("N-CREATE", "IN PROGRESS"), ("N-SET", "COMPLETED")]
