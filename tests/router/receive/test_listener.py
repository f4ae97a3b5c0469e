"""``radrouter scp`` as run in production: two SCP processes on one port, one assembler.

Several studies arrive interleaved over four associations at once; each is stored, indexed and
completed exactly once, after the last association that carried it ended.
"""

from __future__ import annotations

import os
import random
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pydicom
import pytest
from pydicom.uid import generate_uid
from pynetdicom import AE

from radrouter.storage.index import AuditEvent, Hop, Index, Instance, Series, Study, StudyState
from tests.fuzz.cases import ABORT, RELEASE_RQ, associate_rq, p_data
from tests.router.receive.test_scp import association, wait_for_a_free_place
from tests.services import CT_HEAD, DATA, free_port, port_open, storescu, wait_until

LIDC = DATA / "ct-chest-lidc0001-partial"  # file names start with '-'
CXR = DATA / "cxr" / "1.3.6.1.4.1.11129.5.5.110503645592756492463169821050252582267888.dcm"


class ScpProcesses:
    """``radrouter scp`` with two processes, no routing rules, and a limit of four associations.

    A study on an open association never completes by quiet time here (600 s): only a release, or
    the end of the receiver that held it, completes it.
    """

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.root = workdir / "data"
        config = workdir / "radrouter.yaml"
        config.write_text(
            f"node: {{port: {self.port}, processes: 2, max_associations: 4, metrics_port: 0}}\n"
            f"storage: {{root: {self.root}, free_space_reserve_mb: 64, fsync: false}}\n"
            f"broker: {{url: 'redis://127.0.0.1:{free_port()}/0'}}\n"
            "completion: {quiet_period_s: 0.5, open_quiet_period_s: 600}\n"
            "rules: []\n"
        )
        self.log = workdir / "scp.log"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "radrouter.cli", "scp", "--config", str(config)],
            stdout=self.log.open("wb"),
            stderr=subprocess.STDOUT,
        )
        wait_until(lambda: self.log.read_text().count("listening on") == 2, 60, "two SCP processes")
        self.index = Index(f"sqlite:///{self.root / 'index.sqlite3'}")

    def receivers(self) -> list[int]:
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children").read_text()
        return [int(pid) for pid in children.split()]

    def study(self, study_uid: str) -> Study | None:
        with self.index.session() as session:
            return session.get(Study, study_uid)


@pytest.fixture(scope="module")
def scp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ScpProcesses]:
    running = ScpProcesses(tmp_path_factory.mktemp("scp"))
    yield running
    running.process.send_signal(signal.SIGTERM)
    assert running.process.wait(timeout=30) == 0
    assert not port_open(running.port), "the SCP port stays open after SIGTERM"


def test_studies_interleaved_over_four_associations_complete_once_each(scp: ScpProcesses) -> None:
    files = sorted(CT_HEAD.glob("I*")) + sorted(LIDC.glob("*.dcm")) + [CXR]
    random.Random(3).shuffle(files)
    studies: dict[str, int] = {}
    for path in files:
        uid = str(pydicom.dcmread(path, stop_before_pixels=True).StudyInstanceUID)
        studies[uid] = studies.get(uid, 0) + 1
    assert len(studies) == 3

    with ThreadPoolExecutor(4) as pool:
        sent = list(pool.map(lambda chunk: storescu(scp.port, files[chunk::4]), range(4)))

    assert [result.returncode for result in sent] == [0, 0, 0, 0]
    assert sum(r.stderr.count("Received Store Response (Success)") for r in sent) == len(files)
    for study_uid, count in studies.items():
        wait_until(lambda uid=study_uid: (s := scp.study(uid)) and s.state == StudyState.DONE, 30, "DONE")
        with scp.index.session() as session:
            instances = session.query(Instance).join(Series).filter(Series.study_uid == study_uid).count()
            completions = (
                session.query(AuditEvent)
                .filter(AuditEvent.study_uid == study_uid, AuditEvent.hop == Hop.COMPLETE)
                .count()
            )
            assert (instances, completions) == (count, 1)
            assert session.get(Study, study_uid).revision == 0  # never completed before all were in
        assert len(list((scp.root / "instances" / study_uid).rglob("*.dcm"))) == count


def test_the_association_limit_counts_both_processes(scp: ScpProcesses) -> None:
    with ThreadPoolExecutor(4) as pool:  # a burst, as from a modality's parallel senders
        held = list(pool.map(lambda _: association(scp.port), range(4)))
    try:
        assert all(assoc.is_established for assoc in held)
        holders = [int(pid) for pid in re.findall(r"pid=(\d+)", _connections_on(scp.port))]
        assert len(holders) == 4 and set(holders) == set(scp.receivers()), "one process took them all"
        refused = association(scp.port)
        assert refused.is_rejected
    finally:
        for assoc in held:
            assoc.release()
    wait_for_a_free_place(scp.port)


def _connections_on(port: int) -> str:
    """``ss``'s established connections accepted on ``port``, with the processes that hold them."""
    listing = subprocess.run(
        ["ss", "-tnpH", "state", "established", f"( sport = :{port} )"], capture_output=True, text=True
    )
    return listing.stdout


def test_peers_that_do_not_wait_for_the_answer_leave_every_place_free(scp: ScpProcesses) -> None:
    """Issue #23: about 40 such peers locked the port of a node until its restart. Here 60 over both
    processes (the forced, deterministic version is in test_hostile_peers.py); then all four places
    must be free again: four associations at once."""
    request = associate_rq()
    streams = [request + RELEASE_RQ, request + p_data(b"\x00"), request + ABORT, request]

    def peer(number: int) -> None:
        with socket.create_connection(("127.0.0.1", scp.port), timeout=2) as sock:
            sock.sendall(streams[number % len(streams)])
            try:
                while sock.recv(65536):
                    pass
            except (ConnectionResetError, TimeoutError):
                pass

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(peer, range(60)))

    def four_at_once() -> bool:
        held = [association(scp.port) for _ in range(4)]
        free = all(assoc.is_established for assoc in held)
        for assoc in held:
            if assoc.is_established:
                assoc.release()
        return free

    wait_until(four_at_once, 30, "four free places after the hostile peers", interval_s=0.5)


def test_a_receiver_that_dies_is_replaced(scp: ScpProcesses) -> None:
    before = scp.receivers()
    assert len(before) == 2
    os.kill(before[0], signal.SIGKILL)
    wait_until(
        lambda: len(set(scp.receivers()) - set(before)) == 1 and len(scp.receivers()) == 2, 30, "replacement"
    )
    for _ in range(4):  # connections now go to either process, the new one included
        sent = storescu(scp.port, [CT_HEAD / "I10"])
        assert "Received Store Response (Success)" in sent.stderr, sent.stderr


def test_a_study_held_by_a_receiver_that_dies_completes(scp: ScpProcesses) -> None:
    """The modality keeps its association open; both receivers are killed; the study still completes."""
    dataset = pydicom.dcmread(CT_HEAD / "I10")
    # A new instance of a new study: I10's own SOP Instance UID under another study would be a
    # conflicting resend (kept apart, storage.conflicting_resend).
    dataset.StudyInstanceUID, dataset.SOPInstanceUID = generate_uid(), generate_uid()
    scu = AE(ae_title="MODALITY")
    scu.add_requested_context(dataset.SOPClassUID, dataset.file_meta.TransferSyntaxUID)
    held = scu.associate("127.0.0.1", scp.port, ae_title="RADROUTER")
    assert held.is_established
    try:
        assert held.send_c_store(dataset).Status == 0x0000
        assert scp.study(dataset.StudyInstanceUID).state == StudyState.RECEIVING
        receivers = scp.receivers()
        for pid in receivers:
            os.kill(pid, signal.SIGKILL)
        wait_until(
            lambda: (s := scp.study(dataset.StudyInstanceUID)) and s.state == StudyState.DONE, 30, "DONE"
        )
    finally:
        held.abort()
    wait_until(lambda: len(set(scp.receivers()) - set(receivers)) == 2, 30, "two new receivers")


def test_the_command_line_does_not_import_prometheus_client_before_the_scp_names_its_metrics_folder() -> None:
    """prometheus_client reads PROMETHEUS_MULTIPROC_DIR when first imported: imported by the `radrouter`
    command itself, every receiver would count in its own memory and the SCP's /metrics would be empty."""
    probe = "import sys, radrouter.cli.commands; print('prometheus_client' in sys.modules)"
    found = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert found.stdout.strip() == "False"


@pytest.mark.parametrize("option", ["node.port", "node.metrics_port"])
def test_a_port_another_process_holds_is_a_sentence_and_exit_1(tmp_path: Path, option: str) -> None:
    """An admin who starts a second node on a used port reads which setting chose it, and the node
    stops rather than running without its port."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        held = holder.getsockname()[1]
        scp_port, metrics_port = (held, 0) if option == "node.port" else (free_port(), held)
        config = tmp_path / "radrouter.yaml"
        # Overrides, each for a reason: the held port as the one under test (the other free, or off);
        # 127.0.0.1 where the holder listens; a storage root of the test's own.
        config.write_text(
            f"node: {{host: 127.0.0.1, port: {scp_port}, metrics_port: {metrics_port}}}\n"
            f"storage: {{root: {tmp_path / 'data'}}}\n"
        )
        ended = subprocess.run(
            [sys.executable, "-m", "radrouter.cli", "scp", "--config", str(config)],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert ended.returncode == 1
    assert f"127.0.0.1:{held} ({option}) is already in use by another process" in ended.stderr
    assert "Traceback" not in ended.stderr
