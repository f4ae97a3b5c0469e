"""``python -m bench.ingest``: C-STORE throughput and completion latency against Orthanc and dcmtk.

Builds synthetic 300-slice CT studies (0.5 MB slices) and sends each with dcmtk's storescu
(TCP_NODELAY=1) over 1 and 4 associations to radrouter (``radrouter scp``, fsync on), Orthanc
(TCP_NODELAY=1), dcmtk ``storescp --fork`` and pynetdicom alone (:mod:`bench.raw_scp`, the ceiling of
any receiver built on it), interleaved, several repetitions. Prints instances/s, radrouter's ratios
to the peers measured in the same run, its completion latency (last instance
indexed -> study routed) and the peak RSS of every SCP process; then sends one 2,000-instance study
to radrouter to show that its processes' memory stays bounded.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from bench.raw_scp import AE_TITLE
from bench.synthetic import write_ct_series
from radrouter.storage.index import AuditEvent, Hop, Index, Study, StudyState
from tests.services import Orthanc, free_port, port_open, storescu_command, wait_until

NODELAY = {**os.environ, "TCP_NODELAY": "1"}


def send(port: int, ae_title: str, files: list[Path], associations: int) -> float:
    """Send ``files`` over ``associations`` parallel storescu processes; return the seconds taken."""
    started = time.monotonic()
    senders = [
        subprocess.Popen(
            storescu_command(port, files[n::associations], ae_title, calling_ae="BENCH"),
            env=NODELAY,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        for n in range(associations)
    ]
    for sender in senders:
        _, errors = sender.communicate()
        if sender.returncode != 0:
            raise RuntimeError(f"storescu to port {port} failed: {errors.decode()[-500:]}")
    return time.monotonic() - started


def cpu_seconds(pids: list[int]) -> float:
    """User and system CPU of ``pids`` and of their children that have ended (storescp's forks)."""
    ticks = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks += sum(int(value) for value in fields[11:15])
    return ticks / os.sysconf("SC_CLK_TCK")


def peak_rss_mb(pid: int) -> float:
    """VmHWM: the most resident memory the process ever had."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


class Radrouter:
    """``radrouter scp`` with the shipped defaults (two processes, fsync), on free ports."""

    ae_title = "RADROUTER"

    def __init__(self, workdir: Path, processes: int | None = None) -> None:
        self.port = free_port()
        root = workdir / "radrouter"
        config = workdir / "radrouter.yaml"
        node = f"port: {self.port}, metrics_port: 0" + (f", processes: {processes}" if processes else "")
        config.write_text(
            f"node: {{{node}}}\nstorage: {{root: {root}}}\n"
            f"broker: {{url: 'redis://127.0.0.1:{free_port()}/0'}}\n"
        )
        self.log = workdir / "radrouter.log"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "radrouter.cli", "scp", "--config", str(config)],
            stdout=self.log.open("wb"),
            stderr=subprocess.STDOUT,
        )
        wait_until(lambda: "listening on" in self.log.read_text(), 60, "radrouter scp")
        self.index = Index(f"sqlite:///{root / 'index.sqlite3'}")

    def processes(self) -> list[int]:
        pid = self.process.pid
        return [pid, *map(int, Path(f"/proc/{pid}/task/{pid}/children").read_text().split())]

    def completion_s(self, study_uid: str, sender_done: datetime) -> tuple[float, float]:
        """Seconds from the last instance indexed, and from the sender's exit, to the study routed."""

        def routed() -> AuditEvent | None:
            with self.index.session() as session:
                study = session.get(Study, study_uid)
                if study is None or study.state in (StudyState.RECEIVING, StudyState.COMPLETE):
                    return None
                event = session.query(AuditEvent).filter_by(study_uid=study_uid, hop=Hop.ROUTED).one()
                self._last_received = study.last_received_at
                return event

        event = wait_until(routed, 60, f"study {study_uid} routed")
        done = sender_done.replace(tzinfo=None)
        return (event.at - self._last_received).total_seconds(), (event.at - done).total_seconds()

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


class StoreSCP:
    """dcmtk's ``storescp --fork``: one process per association, files written, no index."""

    ae_title = "STORESCP"

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        (workdir / "storescp").mkdir()
        self.process = subprocess.Popen(
            [
                "/usr/bin/storescp",
                "--fork",
                "-od",
                str(workdir / "storescp"),
                "-aet",
                self.ae_title,
                str(self.port),
            ],
            env=NODELAY,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(1.0)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


class RawPynetdicom:
    """:mod:`bench.raw_scp`: pynetdicom alone in one process, writing raw bytes (the library's ceiling)."""

    ae_title = AE_TITLE

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bench.raw_scp", str(self.port), str(workdir / "pynetdicom")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_until(lambda: port_open(self.port), 60, "bench.raw_scp")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slices", type=int, default=300, help="instances per study")
    parser.add_argument("--reps", type=int, default=3, help="repetitions of each (receiver, associations)")
    parser.add_argument("--large", type=int, default=2000, help="instances of the memory study (0: skip)")
    parser.add_argument("--processes", type=int, help="radrouter's node.processes (default: its own default)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="radrouter-bench-") as tmp:
        run(Path(tmp), args.slices, args.reps, args.large, args.processes)


def run(workdir: Path, slices: int, reps: int, large: int, processes: int | None) -> None:
    radrouter = Radrouter(workdir, processes)
    orthanc_dir = workdir / "orthanc"
    orthanc_dir.mkdir()
    orthanc = Orthanc(orthanc_dir)
    orthanc.start()
    storescp = StoreSCP(workdir)
    pynetdicom = RawPynetdicom(workdir)
    receivers = {"radrouter": radrouter, "orthanc": orthanc, "storescp": storescp, "pynetdicom": pynetdicom}
    ports = {
        "radrouter": radrouter.port,
        "orthanc": orthanc.dicom_port,
        "storescp": storescp.port,
        "pynetdicom": pynetdicom.port,
    }
    titles = {name: receiver.ae_title for name, receiver in receivers.items()}
    pids = {
        "radrouter": radrouter.processes,
        "orthanc": lambda: [orthanc._process.pid] if orthanc._process else [],
        "storescp": lambda: [storescp.process.pid],
        "pynetdicom": lambda: [pynetdicom.process.pid],
    }
    rates: dict[tuple[str, int], list[float]] = {}
    cpu_ms: dict[tuple[str, int], list[float]] = {}
    latency: list[tuple[float, float]] = []
    try:
        for rep in range(reps):
            for associations in (1, 4):
                folder = workdir / f"ct-{rep}-{associations}"
                study_uid = write_ct_series(folder, slices)
                files = sorted(folder.glob("*.dcm"))
                turn = rep % len(receivers)
                order = list(receivers)[turn:] + list(receivers)[:turn]
                for name in order:
                    cpu_before = cpu_seconds(pids[name]())
                    seconds = send(ports[name], titles[name], files, associations)
                    sender_done = datetime.now(UTC)
                    rates.setdefault((name, associations), []).append(slices / seconds)
                    used = cpu_seconds(pids[name]()) - cpu_before
                    cpu_ms.setdefault((name, associations), []).append(1000 * used / slices)
                    if name == "radrouter":
                        latency.append(radrouter.completion_s(study_uid, sender_done))
                    print(
                        f"rep {rep} {name:9} {associations} assoc: {slices / seconds:7.1f} instances/s",
                        flush=True,
                    )
                for path in files:
                    path.unlink()
        report(rates, cpu_ms, latency)
        rss = {f"radrouter pid {pid}": peak_rss_mb(pid) for pid in radrouter.processes()}
        rss["orthanc"] = peak_rss_mb(orthanc._process.pid) if orthanc._process else 0.0
        print("peak RSS (MB): " + ", ".join(f"{name} {mb:.0f}" for name, mb in rss.items()))
        if large:
            folder = workdir / "large"
            write_ct_series(folder, large)
            seconds = send(radrouter.port, radrouter.ae_title, sorted(folder.glob("*.dcm")), 4)
            peaks = [peak_rss_mb(pid) for pid in radrouter.processes()]
            print(
                f"{large}-instance study to radrouter, 4 associations: {large / seconds:.1f} instances/s; "
                f"peak RSS per SCP process (MB): {', '.join(f'{mb:.0f}' for mb in peaks)}"
            )
    finally:
        radrouter.stop()
        orthanc.stop()
        storescp.stop()
        pynetdicom.stop()


def report(
    rates: dict[tuple[str, int], list[float]],
    cpu_ms: dict[tuple[str, int], list[float]],
    latency: list[tuple[float, float]],
) -> None:
    median = {key: statistics.median(values) for key, values in rates.items()}
    print(f"\n{'receiver':10} {'assoc':>5} {'median inst/s':>14} {'min':>8} {'max':>8} {'CPU ms/inst':>12}")
    for (name, associations), values in sorted(rates.items()):
        print(
            f"{name:10} {associations:5} {median[name, associations]:14.1f} "
            f"{min(values):8.1f} {max(values):8.1f} {statistics.median(cpu_ms[name, associations]):12.2f}"
        )
    for associations in (1, 4):
        ours = median["radrouter", associations]
        library = median["pynetdicom", associations] / median["orthanc", associations]
        print(
            f"{associations} assoc: radrouter / Orthanc = {ours / median['orthanc', associations]:.2f} "
            f"(target >= 1.2), radrouter / storescp = {ours / median['storescp', associations]:.2f} "
            "(target >= 0.5); "
            f"pynetdicom alone / Orthanc = {library:.2f}"
        )
    from_last = [first for first, _ in latency]
    from_sender = [second for _, second in latency]
    print(
        f"completion (last instance indexed -> routed): median {statistics.median(from_last):.2f} s, "
        f"max {max(from_last):.2f} s; from storescu's exit: median {statistics.median(from_sender):.2f} s, "
        f"max {max(from_sender):.2f} s"
    )


if __name__ == "__main__":
    main()
