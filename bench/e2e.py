"""``python -m bench.e2e``: last C-STORE response -> SEG and SR stored in Orthanc, stage by stage.

Runs ``radrouter up`` (the default rule: the Philips 3D T1 goes to brain extraction; and a chest CT
rule: ct-lung; results to the PACS) and a real Orthanc as that PACS, on free ports. Each run sends the
MPRAGE (170 instances) or the chest CT (16) as a new study with dcmtk's storescu (TCP_NODELAY=1) and
waits for Orthanc to say, from its Lua ``OnStoredInstance`` callback, that it has stored the study's
SEG and SR (no polling loads the cores while the model runs). It prints, per pipeline
over the runs, the median time from storescu's exit to both results in Orthanc minus the model's own
forward time (target <= 3 s), each stage from radrouter's own records (audit trail, job timings,
deliveries), and the stages other than the model and the completion wait, added up, as a share of
the model's time (target <= 25 %). Each pipeline then runs again with the modality's MPPS around the
send (N-CREATE IN PROGRESS before, N-SET COMPLETED listing every instance after): timed from the
N-SET's answer, and with the completion wait (COMPLETED -> routed) counted among the stages. Then:
(a) delivery speed, radrouter's C-STORE SCU
against a plain pynetdicom SCU, 300 instances over one association to Orthanc, interleaved;
(b) five studies sent at once, each one's end-to-end time; (c) the PyPI peer ``dicom-ai-router``
(:mod:`bench.peer`), where it can run here.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pydicom
import yaml
from pydicom.uid import generate_uid
from sqlalchemy import select

from bench.delivery import delivery_rates
from bench.ingest import NODELAY
from bench.peer import peer_end_to_end
from radrouter.config.settings import Settings
from radrouter.storage.index import AuditEvent, Hop, Index, Study, utcnow
from tests.router.receive.mpps_scu import completed_step, send_step, start_step
from tests.services import CT_CHEST, MPRAGE, Node, Orthanc, as_new_study, storescu_command, wait_until

#: The README's default rule, and chest CT to ct-lung (the rules of a config replace the defaults).
RULES = """
rules:
  - name: brain-t1-3d
    match:
      Modality: MR
      MRAcquisitionType: 3D
      SeriesDescription: {regex: "(?i)(t1|mprage|bravo|spgr|tfe|tfl)"}
    pipelines: [brain-extraction]
    results_to: [pacs]
  - name: chest-ct
    match: {Modality: CT, BodyPartExamined: CHEST}
    pipelines: [ct-lung]
    results_to: [pacs]
"""
#: What each pipeline's runs send.
SERIES = {"brain-extraction": MPRAGE, "ct-lung": CT_CHEST}
#: The stages that are not ours to shorten: the model itself, and the wait for the study to be complete.
NOT_AROUND_THE_MODEL = ("model", "completion wait")

#: The stages of a study's path, in order, as the table prints them.
STAGES = (
    "completion wait",
    "queue wait",
    "volume load",
    "model",
    "pre/post-processing",
    "SEG",
    "SR",
    "write",
    "job end -> delivery",
    "delivery",
    "delivered -> seen in Orthanc",
)


@dataclass
class StudyTiming:
    """One study's end-to-end seconds (storescu's exit, or with MPPS the N-SET COMPLETED's answer ->
    SEG and SR in Orthanc) and its stages."""

    end_to_end_s: float
    stages: dict[str, float]
    #: Sent with MPPS: the completion wait is the node's (COMPLETED -> routed) and counts as a stage.
    mpps: bool = False

    @property
    def minus_model_s(self) -> float:
        return self.end_to_end_s - self.stages["model"]

    @property
    def around_model(self) -> float:
        """Every stage other than the model and (without MPPS) the completion wait, added up, over the
        model's time."""
        excluded = ("model",) if self.mpps else NOT_AROUND_THE_MODEL
        around = sum(s for name, s in self.stages.items() if name not in excluded)
        return around / self.stages["model"]


#: Orthanc's callback on each stored instance: a result's study and modality to the bench's listener.
ON_STORED = """
function OnStoredInstance(instanceId, tags, metadata, origin)
  if tags['Modality'] == 'SEG' or tags['Modality'] == 'SR' then
    HttpPost('{url}', tags['StudyInstanceUID'] .. ' ' .. tags['Modality'])
  end
end
"""


class ResultWatch:
    """When each study's SEG and SR were stored in Orthanc, as Orthanc itself says it (its Lua
    ``OnStoredInstance`` callback posts each result to this listener): to the millisecond, and no
    polling loads the two cores while the model runs."""

    def __init__(self, workdir: Path) -> None:
        self.stored: dict[tuple[str, str], tuple[float, datetime]] = {}
        watch = self

        class Listener(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                when = (time.monotonic(), utcnow())
                study_uid, modality = self.rfile.read(int(self.headers["Content-Length"])).decode().split()
                watch.stored.setdefault((study_uid, modality), when)
                self.send_response(204)
                self.end_headers()

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Listener)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.script = workdir / "on-stored.lua"
        url = f"http://127.0.0.1:{self.server.server_address[1]}/stored"
        self.script.write_text(ON_STORED.replace("{url}", url))

    def arrived(self, study_uid: str) -> tuple[float, datetime] | None:
        """When the later of the study's SEG and SR was stored (monotonic, UTC); None before."""
        times = [self.stored.get((study_uid, modality)) for modality in ("SEG", "SR")]
        return max(t for t in times if t is not None) if all(times) else None

    def close(self) -> None:
        self.server.shutdown()


def recorded(index: Index, study_uid: str) -> bool:
    """The job's end and every delivery's are in the index (the results can reach Orthanc first: each
    leaves as soon as it is stored, and a delivery is recorded after Orthanc's answer)."""
    with index.session() as session:
        study = session.get(Study, study_uid)
        if study is None or not study.jobs:
            return False
        job = study.jobs[-1]
        deliveries = [delivery for result in job.results for delivery in result.deliveries]
        return job.finished_at is not None and bool(deliveries) and all(d.delivered_at for d in deliveries)


def stages_of(
    index: Index, study_uid: str, seen_at: datetime, completed_at: datetime | None = None
) -> dict[str, float]:
    """A study's stages in seconds, from the index the node keeps anyway (no bench instrumentation);
    with ``completed_at`` (the MPPS N-SET COMPLETED's answer), the completion wait runs from then."""
    wait_until(lambda: recorded(index, study_uid), 30, f"the records of study {study_uid}", 0.02)
    with index.session() as session:
        study = session.get(Study, study_uid)
        assert study is not None
        routed = session.scalars(
            select(AuditEvent).where(AuditEvent.study_uid == study_uid, AuditEvent.hop == Hop.ROUTED)
        ).one()
        job = study.jobs[-1]
        timings = job.timings
        deliveries = [delivery for result in job.results for delivery in result.deliveries]
        assert job.finished_at is not None and all(d.delivered_at for d in deliveries)
        created = min(d.created_at for d in deliveries)
        delivered = max(d.delivered_at for d in deliveries if d.delivered_at)
        # Without MPPS the wait runs from the last instance; with it, from COMPLETED if that came later.
        since = max(study.last_received_at, completed_at or study.last_received_at)
        return {
            "completion wait": (routed.at - since).total_seconds(),
            "queue wait": timings["queue_wait_s"],
            "volume load": timings["volume_load_s"],
            "model": timings["model_s"],
            "pre/post-processing": timings["predict_s"] - timings["model_s"],
            "SEG": timings["seg_s"],
            "SR": timings["sr_s"],
            "write": timings["write_s"],
            "job end -> delivery": (created - job.finished_at).total_seconds(),
            "delivery": (delivered - created).total_seconds(),
            "delivered -> seen in Orthanc": (seen_at - delivered).total_seconds(),
        }


def send_and_wait(
    node: Node, index: Index, watch: ResultWatch, folders: list[Path], mpps: bool = False
) -> list[StudyTiming]:
    """Send each folder as one study (all at once, one storescu each); time each to its results. With
    ``mpps``, one folder, inside its Modality Performed Procedure Step."""
    if mpps:
        (folder,) = folders
        return [_send_with_mpps(node, index, watch, folder)]
    started = {
        folder.name: subprocess.Popen(
            storescu_command(node.port, sorted(folder.iterdir())),
            env=NODELAY,
            stdout=subprocess.DEVNULL,
        )
        for folder in folders
    }
    sent: dict[str, tuple[float, datetime]] = {}
    seen: dict[str, tuple[float, datetime]] = {}
    deadline = time.monotonic() + 300
    while len(seen) < len(started):
        if time.monotonic() > deadline:
            raise TimeoutError(f"Orthanc reported no SEG and SR of {set(started) - set(seen)} in 300 s")
        for uid, sender in started.items():
            if uid not in sent and sender.poll() is not None:
                if sender.returncode != 0:
                    raise RuntimeError(f"storescu failed with exit status {sender.returncode}")
                sent[uid] = (time.monotonic(), utcnow())
        for uid in sent:
            if uid not in seen and (stored := watch.arrived(uid)) is not None:
                seen[uid] = stored
        time.sleep(0.01)  # storescu's exit is timed to 10 ms; the results' arrival is Orthanc's own time
    return [StudyTiming(seen[uid][0] - sent[uid][0], stages_of(index, uid, seen[uid][1])) for uid in started]


def _send_with_mpps(node: Node, index: Index, watch: ResultWatch, folder: Path) -> StudyTiming:
    """N-CREATE, storescu, N-SET COMPLETED (its dataset built before the send, as a modality has it);
    timed from the N-SET's answer."""
    files = sorted(folder.iterdir())
    step_uid = str(generate_uid())
    completion = completed_step(files)
    if start_step(node.port, step_uid, folder.name) != 0x0000:
        raise RuntimeError("the node refused the MPPS N-CREATE")
    sender = subprocess.run(storescu_command(node.port, files), env=NODELAY, stdout=subprocess.DEVNULL)
    if sender.returncode != 0:
        raise RuntimeError(f"storescu failed with exit status {sender.returncode}")
    if send_step(node.port, step_uid, completion) != 0x0000:
        raise RuntimeError("the node refused the MPPS N-SET COMPLETED")
    sent, completed_at = time.monotonic(), utcnow()
    deadline = sent + 300
    while (stored := watch.arrived(folder.name)) is None:
        if time.monotonic() > deadline:
            raise TimeoutError(f"Orthanc reported no SEG and SR of {folder.name} in 300 s")
        time.sleep(0.05)
    seen, seen_at = stored
    return StudyTiming(seen - sent, stages_of(index, folder.name, seen_at, completed_at), mpps=True)


def new_study(workdir: Path, series: Path = MPRAGE) -> Path:
    """A series (the MPRAGE) under new UIDs, in a folder named by its Study Instance UID."""
    scratch = Path(tempfile.mkdtemp(dir=workdir))
    copies = as_new_study(sorted(series.glob("*.dcm")), scratch)
    uid = str(pydicom.dcmread(copies[0], stop_before_pixels=True).StudyInstanceUID)
    return scratch.rename(workdir / uid)


def print_stage_table(timings: list[StudyTiming], warm_up: StudyTiming | None = None) -> None:
    """Median, min and max of each stage over the runs; the warm-up (the node's first study) beside."""
    print(f"\n{'stage':30} {'median s':>9} {'min':>7} {'max':>7} {'warm-up' if warm_up else '':>8}")
    columns: list[tuple[str, Callable[[StudyTiming], float]]] = [
        *((stage, lambda t, stage=stage: t.stages[stage]) for stage in STAGES),
        ("end to end", lambda t: t.end_to_end_s),
        ("end to end minus model", lambda t: t.minus_model_s),
        ("around the model / model", lambda t: t.around_model),
    ]
    for name, value in columns:
        values = [value(t) for t in timings]
        beside = f"{value(warm_up):8.3f}" if warm_up is not None else ""
        print(f"{name:30} {statistics.median(values):9.3f} {min(values):7.3f} {max(values):7.3f} {beside}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="single-study runs (after one warm-up)")
    parser.add_argument("--mpps-runs", type=int, default=3, help="runs sent with MPPS per pipeline (0: skip)")
    parser.add_argument("--concurrent", type=int, default=5, help="studies sent at once (0: skip)")
    parser.add_argument("--delivery", type=int, default=300, help="instances of the delivery test (0: skip)")
    parser.add_argument("--delivery-reps", type=int, default=3, help="repetitions of the delivery test")
    parser.add_argument("--no-peer", action="store_true", help="skip the dicom-ai-router peer")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="radrouter-e2e-") as tmp:
        run(Path(tmp), args)


def run(workdir: Path, args: argparse.Namespace) -> None:
    (workdir / "orthanc").mkdir()
    watch = ResultWatch(workdir)
    orthanc = Orthanc(workdir / "orthanc", lua_scripts=[watch.script])
    orthanc.start()
    (workdir / "node").mkdir()
    node = Node(workdir / "node", orthanc, pipelines=RULES)
    node.start()
    settings = Settings(**yaml.safe_load(node.config_path.read_text()))
    index = Index(settings.storage.resolved_index_url())
    studies = workdir / "studies"
    studies.mkdir()
    try:
        for pipeline, series in SERIES.items():
            timings: list[StudyTiming] = []
            print(f"\n{pipeline} on {series.name}:")
            for number in range(args.runs + 1):
                (timing,) = send_and_wait(node, index, watch, [new_study(studies, series)])
                label = "warm-up" if number == 0 else f"run {number}"
                print(
                    f"{label:8} end to end {timing.end_to_end_s:6.2f} s, "
                    f"model {timing.stages['model']:6.2f} s, minus model {timing.minus_model_s:5.2f} s",
                    flush=True,
                )
                timings.append(timing)
            warm_up, runs = timings[0], timings[1:]
            print_stage_table(runs, warm_up)
            ours = statistics.median(t.minus_model_s for t in runs)
            around = statistics.median(t.around_model for t in runs)
            print(f"median end to end minus model: {ours:.2f} s (target <= 3 s)")
            print(
                f"{pipeline}: stages other than the model and the completion wait, added up: "
                f"{around:.1%} of the model's time (target <= 25 %)"
            )
            if args.mpps_runs:
                with_mpps = [
                    send_and_wait(node, index, watch, [new_study(studies, series)], mpps=True)[0]
                    for _ in range(args.mpps_runs)
                ]
                print(
                    f"\n{pipeline} with MPPS, {args.mpps_runs} runs timed from the N-SET COMPLETED's answer:"
                )
                print_stage_table(with_mpps)
                print(
                    f"{pipeline} with MPPS: stages other than the model, the completion wait included: "
                    f"{statistics.median(t.around_model for t in with_mpps):.1%} of the model's time "
                    "(target <= 25 %)"
                )
        if args.delivery:
            delivery_rates(orthanc, workdir / "delivery", args.delivery, args.delivery_reps)
        if args.concurrent:
            folders = [new_study(studies) for _ in range(args.concurrent)]
            together = send_and_wait(node, index, watch, folders)
            print(f"\n{args.concurrent} studies sent at once (end to end, model, queue wait):")
            for number, timing in enumerate(sorted(together, key=lambda t: t.end_to_end_s), 1):
                print(
                    f"  study {number}: {timing.end_to_end_s:6.2f} s, model {timing.stages['model']:5.2f} s, "
                    f"queue wait {timing.stages['queue wait']:6.2f} s, "
                    f"minus own model {timing.minus_model_s:6.2f} s"
                )
        if not args.no_peer:
            peer = peer_end_to_end(workdir / "peer", orthanc, new_study(studies))
            print(f"\ndicom-ai-router: {peer}")
    finally:
        node.stop()
        orthanc.stop()
        watch.close()


if __name__ == "__main__":
    main()
