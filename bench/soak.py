"""``python -m bench.soak``: the node under steady load while a random process of it is killed.

Runs ``radrouter up`` with its shipped defaults (default rules: the Philips 3D T1 goes to brain
extraction, results to a real Orthanc) on free ports. Senders push the MPRAGE as new studies with
dcmtk's storescu at a steady rate; one whose association breaks sends the study again, as a modality
does. Every ``--kill-every`` seconds one process of the node, chosen at random from those ``up``
reports (SCP, web app, each worker, the embedded redis-server), gets kill -9. When the time is up the
chaos stops, and once the node is quiet the run checks, from Orthanc and the index:

- every instance answered Success is stored and indexed;
- every job is DONE and left exactly one SEG and one SR in Orthanc (a job re-run after a kill rewrites
  the same objects, which the PACS keeps once); nothing is stuck (no job QUEUED or RUNNING, no
  delivery PENDING);

and reports studies per hour, p50/p95 from the last C-STORE response to both results in Orthanc,
and each kill with the seconds until its process ran again. ``tests/node/test_soak.py`` runs a
short form; the long one is ``python -m bench.soak --minutes 20``.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import statistics
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pydicom
import yaml
from sqlalchemy import func, select

from radrouter.config.settings import Settings
from radrouter.storage.index import Delivery, DeliveryState, Index, Instance, Job, JobState, Result, Series
from radrouter.storage.node_status import ProcessState, read_node_status
from tests.services import MPRAGE, Node, Orthanc, as_new_study, storescu

#: A modality sends a study again this often at most when its association broke.
RESEND_AFTER_S = 3.0


@dataclass
class SentStudy:
    """One study a sender pushed: its UID, the SOP UIDs answered Success, and when the last answer came."""

    study_uid: str
    files: list[Path]
    acknowledged: set[str] = field(default_factory=set)
    sends: int = 0
    last_response_at: float = 0.0
    results_seen_at: float | None = None


@dataclass
class Recovery:
    process: str
    killed_at: float
    back_after_s: float | None = None


@dataclass
class SoakReport:
    minutes: float
    studies: list[SentStudy]
    recoveries: list[Recovery]
    problems: list[str]

    @property
    def times_to_result_s(self) -> list[float]:
        return sorted(
            max(0.0, s.results_seen_at - s.last_response_at)
            for s in self.studies
            if s.results_seen_at is not None
        )

    def lines(self) -> list[str]:
        times = self.times_to_result_s
        done = len(times)
        lines = [
            f"{len(self.studies)} studies sent in {self.minutes:.1f} min, {done} with SEG and SR in Orthanc "
            f"({done / (self.minutes / 60):.0f} studies/hour)",
        ]
        if times:
            p95 = times[min(len(times) - 1, round(0.95 * (len(times) - 1)))]
            lines.append(
                f"last C-STORE response -> SEG and SR: p50 {statistics.median(times):.1f} s, p95 {p95:.1f} s"
            )
        lines.append(f"{len(self.recoveries)} kill -9:")
        for recovery in self.recoveries:
            back = (
                f"running again after {recovery.back_after_s:.1f} s" if recovery.back_after_s else "not back"
            )
            lines.append(f"  {recovery.process}: {back}")
        lines.append("checks: " + ("all passed" if not self.problems else f"{len(self.problems)} failed"))
        lines += [f"  FAILED: {problem}" for problem in self.problems]
        return lines


def _send_until_acknowledged(node: Node, study: SentStudy, stop_at: float) -> None:
    """storescu the study; again (as a modality would) while some instance was not answered Success."""
    while True:
        study.sends += 1
        result = storescu(node.port, study.files)
        study.last_response_at = time.monotonic()
        answered = result.stderr.count("(Success)")
        study.acknowledged |= {_sop_uid(path) for path in study.files[:answered]}
        if result.returncode == 0 and answered == len(study.files):
            return
        if time.monotonic() > stop_at:
            return
        time.sleep(RESEND_AFTER_S)


def _sop_uid(path: Path) -> str:
    return str(pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID)


def _kill_random(node: Node, rng: random.Random) -> Recovery | None:
    status = read_node_status(node.workdir / "data")
    if status is None:
        return None
    running = {
        name: p.pid for name, p in status.processes.items() if p.pid and p.state == ProcessState.RUNNING
    }
    if not running:
        return None
    name = rng.choice(sorted(running))
    os.kill(running[name], signal.SIGKILL)
    recovery = Recovery(name, time.monotonic())
    killed_pid = running[name]

    def watch() -> None:
        while time.monotonic() - recovery.killed_at < 300:
            now = read_node_status(node.workdir / "data")
            process = now.processes.get(name) if now is not None else None
            if process is not None and process.state == ProcessState.RUNNING and process.pid != killed_pid:
                recovery.back_after_s = time.monotonic() - recovery.killed_at
                return
            time.sleep(0.1)

    threading.Thread(target=watch, daemon=True).start()
    return recovery


def soak(
    workdir: Path,
    minutes: float,
    kill_every_s: float,
    study_every_s: float,
    senders: int = 2,
    quiet_timeout_s: float = 600.0,
    seed: int = 1,
) -> SoakReport:
    rng = random.Random(seed)
    (workdir / "pacs").mkdir()
    orthanc = Orthanc(workdir / "pacs")
    orthanc.start()
    (workdir / "node").mkdir()
    node = Node(workdir / "node", orthanc, pipelines="")  # the shipped defaults, as a site gets them
    node.start()
    sources = sorted(MPRAGE.glob("*.dcm"))
    studies: list[SentStudy] = []
    recoveries: list[Recovery] = []
    started = time.monotonic()
    stop_at = started + minutes * 60
    watching = threading.Event()
    threading.Thread(target=_watch_results, args=(orthanc, studies, watching), daemon=True).start()
    try:
        threads: list[threading.Thread] = []
        next_study, next_kill = started, started + kill_every_s
        while time.monotonic() < stop_at:
            now = time.monotonic()
            if now >= next_study and sum(t.is_alive() for t in threads) < senders:
                folder = Path(tempfile.mkdtemp(dir=workdir, prefix="study-"))
                files = as_new_study(sources, folder)
                study = SentStudy(
                    str(pydicom.dcmread(files[0], stop_before_pixels=True).StudyInstanceUID), files
                )
                studies.append(study)
                thread = threading.Thread(target=_send_until_acknowledged, args=(node, study, stop_at + 120))
                thread.start()
                threads.append(thread)
                next_study = now + study_every_s
            if now >= next_kill:
                recovery = _kill_random(node, rng)
                if recovery is not None:
                    recoveries.append(recovery)
                next_kill = now + kill_every_s
            time.sleep(0.2)
        for thread in threads:
            thread.join(timeout=300)
        elapsed_min = (time.monotonic() - started) / 60
        problems = _check_quiet_node(node, orthanc, studies, quiet_timeout_s)
        return SoakReport(elapsed_min, studies, recoveries, problems)
    finally:
        watching.set()
        node.stop()
        orthanc.stop()


def _watch_results(orthanc: Orthanc, studies: list[SentStudy], stop: threading.Event) -> None:
    """Note when each study's SEG and SR are first both in Orthanc (polled every 0.25 s)."""
    while not stop.wait(0.25):
        for study in list(studies):
            waiting = study.results_seen_at is None and study.last_response_at
            if (
                waiting
                and orthanc.find_series(study.study_uid, "SEG")
                and orthanc.find_series(study.study_uid, "SR")
            ):
                study.results_seen_at = time.monotonic()


def _check_quiet_node(node: Node, orthanc: Orthanc, studies: list[SentStudy], timeout_s: float) -> list[str]:
    settings = Settings(**yaml.safe_load(node.config_path.read_text()))
    index = Index(settings.storage.resolved_index_url())
    deadline = time.monotonic() + timeout_s
    pending = {study.study_uid: study for study in studies}
    while pending and time.monotonic() < deadline:
        for uid, study in list(pending.items()):
            if study.results_seen_at is not None and _settled(index, uid):
                del pending[uid]
        time.sleep(0.5)
    problems = [
        f"study {uid}: no SEG and SR in Orthanc, or work left, after {timeout_s:.0f} s" for uid in pending
    ]
    for study in studies:
        with index.session() as session:
            stored = set(
                session.scalars(
                    select(Instance.sop_uid).join(Series).where(Series.study_uid == study.study_uid)
                ).all()
            )
            jobs_done = session.scalar(
                select(func.count())
                .select_from(Job)
                .where(Job.study_uid == study.study_uid, Job.state == JobState.DONE)
            )
        missing = study.acknowledged - stored
        if missing:
            problems.append(
                f"study {study.study_uid}: {len(missing)} instance(s) answered Success not stored"
            )
        if study.study_uid in pending:
            continue
        seg, sr = (
            len(orthanc.find_series(study.study_uid, "SEG")),
            len(orthanc.find_series(study.study_uid, "SR")),
        )
        if not seg == sr == jobs_done:
            problems.append(
                f"study {study.study_uid}: {seg} SEG and {sr} SR in Orthanc for {jobs_done} job(s)"
            )
    index.engine.dispose()
    return problems


def _settled(index: Index, study_uid: str) -> bool:
    """No job of the study queued or running, no delivery of it (results or originals) pending."""
    with index.session() as session:
        busy_jobs = session.scalar(
            select(func.count())
            .select_from(Job)
            .where(Job.study_uid == study_uid, Job.state.in_((JobState.QUEUED, JobState.RUNNING)))
        )
        pending_results = session.scalar(
            select(func.count())
            .select_from(Delivery)
            .join(Result, Delivery.result_id == Result.id)
            .join(Job, Result.job_id == Job.id)
            .where(Delivery.state == DeliveryState.PENDING, Job.study_uid == study_uid)
        )
        pending_originals = session.scalar(
            select(func.count())
            .select_from(Delivery)
            .where(Delivery.state == DeliveryState.PENDING, Delivery.study_uid == study_uid)
        )
    return not (busy_jobs or pending_results or pending_originals)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--minutes", type=float, default=20.0, help="how long studies arrive and kills happen"
    )
    parser.add_argument("--kill-every", type=float, default=45.0, help="seconds between two kill -9")
    parser.add_argument("--study-every", type=float, default=20.0, help="seconds between two new studies")
    parser.add_argument("--senders", type=int, default=2, help="studies being sent at once, at most")
    parser.add_argument("--seed", type=int, default=1, help="which processes get killed, in which order")
    arguments = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="radrouter-soak-") as scratch:
        report = soak(
            Path(scratch),
            arguments.minutes,
            arguments.kill_every,
            arguments.study_every,
            arguments.senders,
            seed=arguments.seed,
        )
    print("\n".join(report.lines()))
    return 1 if report.problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
