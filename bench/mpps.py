"""Completion latency with MPPS next to the timer's, on the same study, in one run.

One ``radrouter scp`` with the README defaults (no broker, no rules: a complete study goes DONE)
receives the head CT as a modality sends it: in two parts over two dcmtk storescu associations with
``--pause-s`` between them. It arrives ``--runs`` times without MPPS (the timer decides), and as many
times as a new study with a pynetdicom MPPS SCU around it (N-CREATE before, N-SET COMPLETED listing
every instance after). Printed per way: completions per study (the timer completes at the pause, then
again after the second part: a revision routed twice), and the latency of the final completion after
the last instance was stored (the ``quiet_s`` of its ``complete`` hop, measured by the node). Usage:

    .venv/bin/python -m bench.mpps [--runs 3] [--pause-s 5]
"""

from __future__ import annotations

import argparse
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pydicom.uid import generate_uid

from radrouter.storage.index import AuditEvent, Hop, Index, Study, StudyState
from tests.router.receive.mpps_scu import end_step, start_step, two_series
from tests.services import free_port, storescu, wait_until


def _completions(index: Index, study_uid: str) -> list[float]:
    with index.session() as session:
        events = session.query(AuditEvent).filter(
            AuditEvent.study_uid == study_uid, AuditEvent.hop == Hop.COMPLETE
        )
        return [float(event.detail["quiet_s"]) for event in events.order_by(AuditEvent.id)]


def _settled(index: Index, study_uid: str, completions: int) -> bool:
    with index.session() as session:
        study = session.get(Study, study_uid)
        done = study is not None and study.state == StudyState.DONE
    return done and len(_completions(index, study_uid)) >= completions


def _send(port: int, folder: Path, pause_s: float, index: Index, with_mpps: bool) -> list[float]:
    study_uid, first, second = two_series(folder)
    step_uid = generate_uid()
    if with_mpps:
        assert start_step(port, step_uid, study_uid) == 0x0000
    assert storescu(port, first).returncode == 0
    time.sleep(pause_s)
    assert storescu(port, second).returncode == 0
    if with_mpps:
        assert end_step(port, step_uid, first + second) == 0x0000
    # The timer completes the study at the pause, then again after the second part.
    wait_until(lambda: _settled(index, study_uid, 1 if with_mpps else 2), 60, "completed")
    time.sleep(1.5)  # a completion that would still come after the quiet period
    return _completions(index, study_uid)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--pause-s", type=float, default=5.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="radrouter-bench-mpps-") as scratch:
        work = Path(scratch)
        port, root = free_port(), work / "data"
        config = work / "radrouter.yaml"
        config.write_text(
            f"node: {{port: {port}, metrics_port: 0}}\n"
            f"storage: {{root: {root}, free_space_reserve_mb: 64}}\n"
            f"broker: {{url: 'redis://127.0.0.1:{free_port()}/0'}}\n"
            "rules: []\n"
        )
        log = work / "scp.log"
        scp = subprocess.Popen(
            [sys.executable, "-m", "radrouter.cli", "scp", "--config", str(config)],
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
        )
        try:
            wait_until(lambda: "listening on" in log.read_text(), 60, "the SCP")
            index = Index(f"sqlite:///{root / 'index.sqlite3'}")
            results: dict[str, list[list[float]]] = {"timer": [], "mpps": []}
            for run in range(args.runs):
                for way in results:
                    folder = work / f"{way}-{run}"
                    folder.mkdir()
                    results[way].append(_send(port, folder, args.pause_s, index, way == "mpps"))
        finally:
            scp.send_signal(signal.SIGTERM)
            scp.wait(timeout=30)
    print(f"head CT in two parts, {args.pause_s:.0f} s apart, {args.runs} run(s) each way")
    latency = {}
    for way, runs in results.items():
        latency[way] = statistics.median(completions[-1] for completions in runs)
        counts = sorted({len(completions) for completions in runs})
        print(
            f"{way:>5}: completions per study {counts}, "
            f"final completion {latency[way]:.3f} s after the last instance"
        )
    print(f"ratio timer/mpps: {latency['timer'] / latency['mpps']:.1f}x")


if __name__ == "__main__":
    main()
