"""Two SCP nodes in their own network namespaces behind HAProxy, one PostgreSQL, one Redis, real
workers and Orthanc: a study split between the nodes is routed once; a node killed mid-study loses
nothing answered Success, the sender's retry lands on the other, and the node restarted adds nothing;
the sweeper's lease passes from a killed holder to the node still alive.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pydicom
import pytest
from prometheus_client.parser import text_string_to_metric_families
from pynetdicom import AE
from sqlalchemy import func, select

from radrouter.config.settings import Settings
from radrouter.router.cluster import SWEEPER
from radrouter.storage.arrivals import Lease, LedgerAssociation, ScpNode
from radrouter.storage.index import (
    AuditEvent,
    Delivery,
    DeliveryState,
    Hop,
    Instance,
    Job,
    Series,
    Study,
    StudyState,
)
from tests.cluster import Cluster, ClusterNode
from tests.services import CT_HEAD, Orthanc, as_new_study, storescu_command, wait_until
from tests.user_models import build_threshold_torchscript

PIPELINE = "threshold-ts"


@pytest.fixture(scope="module")
def cluster(orthanc: Orthanc, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    workdir = tmp_path_factory.mktemp("cluster")
    model = build_threshold_torchscript(workdir / "threshold.ts")
    extra = f"""
destinations:
  pacs: {{host: 127.0.0.1, port: {orthanc.dicom_port}, ae_title: {orthanc.ae_title}}}
pipelines:
  {PIPELINE}:
    torchscript: {model}
    version: "1.0"
    input: {{modalities: [CT], min_slices: 8}}
    labels: [{{label: 1, name: Bone, type: SCT.Bone, color: [240, 240, 240]}}]
rules:
  - name: ct
    match: {{Modality: CT}}
    pipelines: [{PIPELINE}]
    results_to: [pacs]
"""
    running = Cluster(workdir, nodes=2, extra=extra, workers=(PIPELINE,))
    try:
        running.start()
        yield running
    finally:
        running.stop()


def instances_stored(node: ClusterNode) -> float:
    """The node's own count of C-STOREs answered Success (its Prometheus port, in its namespace)."""
    text = httpx.get(f"http://{node.namespace.address}:{node.metrics_port}/metrics", timeout=5).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if (
                sample.name == "radrouter_instances_received_total"
                and sample.labels.get("status") == "0x0000"
            ):
                return sample.value
    return 0.0


def settled(cluster: Cluster, study_uid: str, timeout_s: float = 120) -> Study:
    def done() -> Study | None:
        with cluster.index.session() as session:
            study = session.get(Study, study_uid)
            return (
                study if study is not None and study.state in (StudyState.DONE, StudyState.FAILED) else None
            )

    return wait_until(done, timeout_s, f"study {study_uid} to settle", interval_s=0.5)


def routed_once(cluster: Cluster, orthanc: Orthanc, study_uid: str, instances: int) -> None:
    """Completed once, on every instance; one job; its SEG and SR delivered to Orthanc once."""
    study = settled(cluster, study_uid)
    assert study.state == StudyState.DONE, study.reason
    with cluster.index.session() as session:
        hops = [
            hop for (hop,) in session.execute(select(AuditEvent.hop).where(AuditEvent.study_uid == study_uid))
        ]
        complete = session.scalars(
            select(AuditEvent).where(AuditEvent.study_uid == study_uid, AuditEvent.hop == Hop.COMPLETE)
        ).all()
        jobs = session.scalars(select(Job).where(Job.study_uid == study_uid)).all()
        stored = session.scalar(
            select(func.count()).select_from(Instance).join(Series).where(Series.study_uid == study_uid)
        )
        results = [result.id for job in jobs for result in job.results]
        delivered = session.scalar(
            select(func.count())
            .select_from(Delivery)
            .where(Delivery.state == DeliveryState.DELIVERED, Delivery.result_id.in_(results))
        )
    assert hops.count(Hop.COMPLETE) == hops.count(Hop.ROUTED) == 1, hops
    assert [event.detail["instances"] for event in complete] == [instances] == [stored]
    assert [(job.pipeline, job.revision) for job in jobs] == [(PIPELINE, 0)]
    assert delivered == 2  # SEG and SR, once each
    assert orthanc.count_instances(study_uid, "SEG") == 1
    assert orthanc.count_instances(study_uid, "SR") == 1


def test_a_study_over_four_associations_lands_on_both_nodes_and_is_routed_once(
    cluster: Cluster, orthanc: Orthanc, tmp_path: Path
) -> None:
    files = as_new_study(sorted(CT_HEAD.glob("I*")), tmp_path)
    study_uid = str(pydicom.dcmread(files[0], stop_before_pixels=True).StudyInstanceUID)
    before = [instances_stored(node) for node in cluster.nodes]
    for part in range(4):  # one after the other: HAProxy's least-connections alternates the nodes
        sent = subprocess.run(
            storescu_command(cluster.port, files[part::4]), capture_output=True, check=False
        )
        assert sent.returncode == 0, sent.stderr
    after = [instances_stored(node) for node in cluster.nodes]
    received = [a - b for a, b in zip(after, before, strict=True)]
    assert sum(received) == len(files) and all(count > 0 for count in received), received
    routed_once(cluster, orthanc, study_uid, len(files))


class Sender:
    """A modality through HAProxy, one instance at a time, noting which were answered Success."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.succeeded: list[Path] = []

    def send(self, files: list[Path], after_each: Any = None) -> list[Path]:
        """Send ``files`` on one association; return those not answered Success (to send again)."""
        ae = AE(ae_title="MODALITY")
        # A modality that gives up on a silent peer after 5 s and sends the rest again: within
        # cluster.node_timeout_s (10 s), while the dead node's studies are held for it. One that
        # retries later makes a new revision of the study, as any late instance does.
        ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 5
        datasets = [pydicom.dcmread(path) for path in files]
        for syntax in {ds.file_meta.TransferSyntaxUID for ds in datasets}:
            ae.add_requested_context(datasets[0].SOPClassUID, syntax)
        assoc = ae.associate("127.0.0.1", self.port, ae_title="RADROUTER")
        assert assoc.is_established
        left: list[Path] = []
        for path, dataset in zip(files, datasets, strict=True):
            status = assoc.send_c_store(dataset) if assoc.is_established else None
            if status is not None and status.get("Status") == 0:
                self.succeeded.append(path)
            else:
                left.append(path)
            if after_each is not None:
                after_each(len(self.succeeded))
        if assoc.is_established:
            assoc.release()
        return left


def node_receiving(cluster: Cluster) -> ClusterNode:
    """The node holding the one open association, from the ledger every node writes."""

    def found() -> str | None:
        with cluster.index.session() as session:
            return session.scalar(
                select(ScpNode.name)
                .join(LedgerAssociation, LedgerAssociation.incarnation == ScpNode.incarnation)
                .where(LedgerAssociation.ended_at.is_(None))
            )

    name = wait_until(found, 10, "the open association in the ledger")
    return next(node for node in cluster.nodes if node.name == name)


@pytest.fixture(scope="module")
def killed_mid_study(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """kill -9 the node receiving a study after 12 instances; the sender sends the rest again."""
    files = as_new_study(sorted(CT_HEAD.glob("I*")), tmp_path_factory.mktemp("killed"))
    study_uid = str(pydicom.dcmread(files[0], stop_before_pixels=True).StudyInstanceUID)
    sender = Sender(cluster.port)
    victim: list[ClusterNode] = []

    def kill_after_twelve(succeeded: int) -> None:
        if succeeded == 12 and not victim:
            victim.append(node_receiving(cluster))
            victim[0].kill()

    left = sender.send(files, after_each=kill_after_twelve)
    assert victim and 0 < len(left) <= len(files) - 12
    answered = list(sender.succeeded)
    with cluster.index.session() as session:  # what was answered Success is indexed, and on disk
        paths = dict(session.execute(select(Instance.sop_uid, Instance.path)).all())
    for path in answered:
        sop_uid = str(pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID)
        assert Path(paths[sop_uid]).is_file(), path
    assert sender.send(left) == []  # the retry: HAProxy takes it to the node still alive
    return {"study_uid": study_uid, "files": files, "victim": victim[0], "answered": answered}


def test_a_node_killed_mid_study_loses_nothing_and_the_study_is_routed_once(
    cluster: Cluster, orthanc: Orthanc, killed_mid_study: dict[str, Any]
) -> None:
    survivor = next(node for node in cluster.nodes if node is not killed_mid_study["victim"])
    assert survivor.process is not None and survivor.process.poll() is None
    routed_once(cluster, orthanc, killed_mid_study["study_uid"], len(killed_mid_study["files"]))


def test_the_killed_node_restarted_adds_no_job(
    cluster: Cluster, orthanc: Orthanc, killed_mid_study: dict[str, Any]
) -> None:
    study_uid = killed_mid_study["study_uid"]
    routed_once(cluster, orthanc, study_uid, len(killed_mid_study["files"]))
    with cluster.index.session() as session:
        jobs_before = session.scalar(select(func.count()).select_from(Job))
    killed_mid_study["victim"].start()
    # Long enough for a sweep and a reconciler pass of the restarted node to act, were they to.
    time.sleep(Settings().completion.open_quiet_period_s + 1)
    with cluster.index.session() as session:
        assert session.scalar(select(func.count()).select_from(Job)) == jobs_before
    routed_once(cluster, orthanc, study_uid, len(killed_mid_study["files"]))


def test_the_lease_holder_killed_hands_completion_to_the_other_node(
    cluster: Cluster, orthanc: Orthanc, killed_mid_study: dict[str, Any], tmp_path: Path
) -> None:
    def holder() -> str | None:
        with cluster.index.session() as session:
            return session.scalar(
                select(ScpNode.name)
                .join(Lease, Lease.holder == ScpNode.incarnation)
                .where(Lease.name == SWEEPER)
            )

    leader = next(node for node in cluster.nodes if node.name == holder())
    leader.kill()
    files = as_new_study(sorted(CT_HEAD.glob("I*")), tmp_path)
    sent = subprocess.run(storescu_command(cluster.port, files), capture_output=True, check=False)
    assert sent.returncode == 0, sent.stderr  # HAProxy sent it to the node still alive
    study_uid = str(pydicom.dcmread(files[0], stop_before_pixels=True).StudyInstanceUID)
    routed_once(cluster, orthanc, study_uid, len(files))  # once the dead holder's lease expired
    assert holder() != leader.name
