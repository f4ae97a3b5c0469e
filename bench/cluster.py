"""``python -m bench.cluster``: ingest through HAProxy with one and two SCP nodes sharing completion.

Each node is ``radrouter scp`` (shipped defaults: two processes, fsync) in its own network namespace,
pinned by taskset to a CPU of its own when the machine has enough (node 1 on CPU 0, node 2 on CPU 1);
one PostgreSQL index, one Redis, HAProxy in front (the README's haproxy.cfg). The same synthetic
300-slice CT studies are sent over 4 associations with dcmtk's storescu through HAProxy to: one node
with its in-memory assembler (``cluster.enabled: false``, the peer), one node and two nodes with the
shared ledger; the three set-ups run side by side, each with its own index, Redis and HAProxy, and
are sent to in turn (interleaved repetitions). Prints instances/s, completion latency (last instance
indexed -> study routed, and from the sender's exit), the nodes' CPU per instance, and the ratios
two nodes / one node and ledger / in-memory.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from bench.ingest import cpu_seconds, send
from bench.synthetic import write_ct_series
from radrouter.storage.index import AuditEvent, Hop, Study, StudyState
from tests.cluster import Cluster
from tests.services import wait_until

#: (label, nodes, shared ledger); each set-up has its own PostgreSQL, Redis and HAProxy.
SETUPS = [("1 node, in-memory", 1, False), ("1 node, ledger", 1, True), ("2 nodes, ledger", 2, True)]


def completion_s(cluster: Cluster, study_uid: str, sender_done: datetime) -> tuple[float, float]:
    """Seconds from the last instance indexed, and from the sender's exit, to the study routed."""

    def routed() -> tuple[datetime, datetime] | None:
        with cluster.index.session() as session:
            study = session.get(Study, study_uid)
            if study is None or study.state in (StudyState.RECEIVING, StudyState.COMPLETE):
                return None
            event = session.query(AuditEvent).filter_by(study_uid=study_uid, hop=Hop.ROUTED).one()
            return event.at, study.last_received_at

    at, last = wait_until(routed, 60, f"study {study_uid} routed", interval_s=0.02)
    return (at - last).total_seconds(), (at - sender_done.replace(tzinfo=None)).total_seconds()


def node_pids(cluster: Cluster) -> list[int]:
    """Every node's SCP parent and receivers."""
    pids = []
    for node in cluster.nodes:
        assert node.process is not None
        pid = node.process.pid
        pids += [pid, *map(int, Path(f"/proc/{pid}/task/{pid}/children").read_text().split())]
    return pids


def cpu_sets(nodes: int) -> list[str]:
    cpus = sorted(os.sched_getaffinity(0))
    return [str(cpus[n]) for n in range(nodes)] if len(cpus) >= nodes else [""] * nodes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slices", type=int, default=300, help="instances per study")
    parser.add_argument("--reps", type=int, default=5, help="studies sent to each set-up")
    parser.add_argument("--associations", type=int, default=4, help="parallel storescu per study")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="radrouter-bench-cluster-") as tmp:
        run(Path(tmp), args.slices, args.reps, args.associations)


def run(workdir: Path, slices: int, reps: int, associations: int) -> None:
    """All set-ups run side by side, idle but for the one being sent to, in turn: each repetition
    meets the same load from the rest of the machine."""
    clusters: dict[str, Cluster] = {}
    figures: dict[str, dict[str, list[float]]] = {}
    slot = 1
    try:
        for label, nodes, shared in SETUPS:
            setup_dir = workdir / label.replace(" ", "-").replace(",", "")
            setup_dir.mkdir()
            clusters[label] = Cluster(setup_dir, nodes=nodes, shared=shared, first_slot=slot)
            slot += nodes
            clusters[label].start(cpus=cpu_sets(nodes))
            figures[label] = {"rate": [], "latency": [], "latency_sender": [], "cpu_ms": []}
        for rep in range(reps + 1):  # the first is a warm-up (imports, first connections)
            folder = workdir / f"ct-{rep}"
            study_uid = write_ct_series(folder, slices)  # one study, sent to every set-up's own index
            files = sorted(folder.glob("*.dcm"))
            order = list(clusters)[rep % len(clusters) :] + list(clusters)[: rep % len(clusters)]
            for label in order:
                cluster = clusters[label]
                cpu_before = cpu_seconds(node_pids(cluster))
                seconds = send(cluster.port, "RADROUTER", files, associations)  # through HAProxy
                cpu_ms = 1000 * (cpu_seconds(node_pids(cluster)) - cpu_before) / len(files)
                latency, from_sender = completion_s(cluster, study_uid, datetime.now(UTC))
                print(
                    f"rep {rep} {label:18} {len(files) / seconds:7.1f} instances/s, routed {latency:.2f} s "
                    f"after its last instance{' (warm-up)' if rep == 0 else ''}",
                    flush=True,
                )
                if rep:
                    measured = figures[label]
                    measured["rate"].append(len(files) / seconds)
                    measured["latency"].append(latency)
                    measured["latency_sender"].append(from_sender)
                    measured["cpu_ms"].append(cpu_ms)
            shutil.rmtree(folder)
    finally:
        for cluster in clusters.values():
            cluster.stop()
    report(figures, slices, associations)


def report(results: dict[str, dict[str, list[float]]], slices: int, associations: int) -> None:
    print(f"\n{slices}-instance CT studies over {associations} associations through HAProxy (medians):")
    rate = {label: statistics.median(figures["rate"]) for label, figures in results.items()}
    for label, figures in results.items():
        print(
            f"  {label:18} {rate[label]:7.1f} instances/s; completion "
            f"{statistics.median(figures['latency']):.2f} s after the last instance indexed, "
            f"{statistics.median(figures['latency_sender']):.2f} s after the sender's exit; "
            f"{statistics.median(figures['cpu_ms']):.1f} CPU ms per instance in the nodes"
        )
    one, two, memory = rate["1 node, ledger"], rate["2 nodes, ledger"], rate["1 node, in-memory"]
    print(f"  ratio 2 nodes / 1 node: {two / one:.2f}; ledger / in-memory on 1 node: {one / memory:.2f}")


if __name__ == "__main__":
    main()
