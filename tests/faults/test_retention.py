"""Retention on a real, small disk (a tmpfs as the storage root) with the node as separate processes:
studies keep arriving, the watermark purges the oldest finished ones and the SCP never refuses; a study
with work in flight is never touched and its job delivers; kill -9 of the SCP (which runs the purger)
in the middle of a purge, then a restart: the index and the disk agree; a late instance reopens a
purged study; ``radrouter erase`` of one patient leaves nothing of it and the others intact."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from sqlalchemy import select

from radrouter.storage.index import AuditEvent, Hop, Index, Instance, Result, Series, Study
from tests.faults.conftest import FILES as MPRAGE_FILES
from tests.faults.conftest import STUDY as MPRAGE_STUDY
from tests.faults.conftest import FaultTally
from tests.faults.harness import PIPELINE_WORKER, NodeProcesses, study_uid_of
from tests.services import CT_HEAD, Orthanc, as_new_study, storescu, wait_until

CT_FILES = sorted(CT_HEAD.glob("I*"))  # 28 slices, 15 MB; under the default rules no rule asks for a CT
DISK_MB = 80


def _rows(index: Index, study_uid: str) -> list[tuple[str, str]]:
    """(SOP UID, path) of a study's instances."""
    with index.session() as session:
        return [
            (sop_uid, path)
            for sop_uid, path in session.execute(
                select(Instance.sop_uid, Instance.path)
                .join(Series, Series.uid == Instance.series_uid)
                .where(Series.study_uid == study_uid)
            )
        ]


def _study(index: Index, study_uid: str) -> Study:
    with index.session() as session:
        study = session.get(Study, study_uid)
        assert study is not None
        session.expunge(study)
        return study


def _purged(index: Index, study_uid: str) -> bool:
    return _study(index, study_uid).images_purged_at is not None


def assert_index_and_disk_agree(index: Index, root: Path) -> None:
    """Every instance row's file exists, and every file of instances/ and results/ under the root is
    an instance or a result the index records (and has not marked purged); the root's other folders
    (the SCP's metrics) are no study's."""
    with index.session() as session:
        instances = set(session.scalars(select(Instance.path)))
        results = {
            path
            for row in session.execute(
                select(Result.path, Result.fallback_path).where(Result.purged_at.is_(None))
            )
            for path in row
            if path
        }
    missing = [path for path in instances if not (root / path).is_file()]
    assert not missing, f"{len(missing)} instance row(s) name a missing file, e.g. {missing[:2]}"
    known = {str(root / path) for path in instances | results}
    files = [path for folder in ("instances", "results") for path in (root / folder).rglob("*")]
    unknown = [str(path) for path in files if path.is_file() and str(path) not in known]
    assert not unknown, f"{len(unknown)} file(s) under the storage root no row knows, e.g. {unknown[:2]}"


def test_watermark_purges_finished_studies_and_survives_kill_mid_purge(
    tmp_path: Path, orthanc: Orthanc, tally: FaultTally
) -> None:
    disk = tmp_path / "disk"
    disk.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={DISK_MB}m", "tmpfs", str(disk)], check=True)
    mounted: list[Path] = []
    node: NodeProcesses | None = None
    try:
        orthanc.delete_study(MPRAGE_STUDY)
        node = NodeProcesses(
            tmp_path / "node",
            orthanc,
            storage={
                "root": str(disk),
                # the index off the small disk, so only instances and results fill it
                "index_url": f"sqlite:///{tmp_path / 'index.sqlite3'}",
                # 8 MB of the 80 MB volume: refusals start at 72 MB used, which the studies below
                # exceed in total (24 MB MPRAGE + 15 MB per CT) unless retention purges
                "free_space_reserve_mb": 8,
            },
            retention={
                # a pass every 0.5 s instead of 60 s, so the watermark acts between two studies
                "interval_s": 0.5,
                # 45 %: 36 MB, just below the MPRAGE and one CT together, so every CT study that
                # arrives while the MPRAGE is held pushes the volume over and is purged; 40 %: 32 MB,
                # above the MPRAGE and its results, so the finished MPRAGE is purged only when over
                "high_watermark_pct": 45,
                "low_watermark_pct": 40,
            },
        )
        node.start("scp", "web", "worker-delivery")  # no pipeline worker yet: the MPRAGE's job waits
        root = disk.resolve()

        assert storescu(node.port, MPRAGE_FILES).stderr.count("(Success)") == len(MPRAGE_FILES)
        tally.sent(MPRAGE_FILES)
        node.wait_for_state(MPRAGE_STUDY, "ROUTED")

        def send_ct(n: int) -> str:
            files = as_new_study(CT_FILES, _folder(tmp_path, n))
            sent = storescu(node.port, files)
            assert sent.stderr.count("(Success)") == len(files), f"CT {n} refused: {sent.stderr[-1500:]}"
            tally.sent(files)
            # the next study once this one is complete (0.5 s quiet) and so DONE: a study still
            # arriving is not eligible, and 15 MB a second of them would fill this disk regardless
            node.wait_for_state(study_uid_of(files[0]), "DONE", timeout_s=30)
            return study_uid_of(files[0])

        # Studies keep arriving while the MPRAGE's job is queued: each CT goes DONE at once (no rule)
        # and the watermark purges it; 24 + 4 x 15 MB = 84 MB sent to an 80 MB disk, none refused.
        cts = [send_ct(n) for n in range(4)]
        wait_until(lambda: all(_purged(node.index, uid) for uid in cts), 60, "the CT studies purged", 0.2)
        assert len(_rows(node.index, MPRAGE_STUDY)) == len(MPRAGE_FILES)

        # While the job runs (PROCESSING) another study arrives and is purged; the MPRAGE is not.
        node.start(PIPELINE_WORKER)
        wait_until(lambda: node.study_state(MPRAGE_STUDY) != "ROUTED", 120, "the job started", 0.1)
        cts.append(send_ct(4))
        wait_until(lambda: _purged(node.index, cts[-1]), 60, "the fifth CT purged", 0.2)
        study = node.wait_for_state(MPRAGE_STUDY, "DONE", timeout_s=300)
        assert [d["state"] for d in study["deliveries"]] == ["DELIVERED", "DELIVERED"]
        tally.results_in_pacs(orthanc, MPRAGE_STUDY, 1)
        assert len(_rows(node.index, MPRAGE_STUDY)) == len(MPRAGE_FILES)
        assert all((root / path).is_file() for _, path in _rows(node.index, MPRAGE_STUDY))
        assert_index_and_disk_agree(node.index, root)

        # Kill -9 mid-purge. The finished MPRAGE is now the oldest finished study: the next CT puts
        # the volume over the watermark and its purge starts. A bind mount over the last file the
        # purger reads makes that unlink fail (EBUSY, even for root), so the purge stops half done
        # (marked, the other files gone, every row still there) and stays so, each pass trying again:
        # then the SCP is killed.
        last = Path(max(path for _, path in _rows(node.index, MPRAGE_STUDY)))  # it reads them by path
        subprocess.run(["mount", "--bind", str(last), str(last)], check=True)
        mounted.append(last)
        cts.append(send_ct(5))
        wait_until(
            lambda: (
                _study(node.index, MPRAGE_STUDY).purging_images_since is not None
                and "stays marked" in node.log("scp").read_text()
            ),
            60,
            "the MPRAGE's purge interrupted",
            0.1,
        )
        node.kill("scp")
        tally.fault("kill -9 of the SCP in the middle of a purge")
        rows = _rows(node.index, MPRAGE_STUDY)
        assert len(rows) == len(MPRAGE_FILES), "the rows go only after the files"
        assert sum((root / path).exists() for _, path in rows) == 1, "the purge was not half done"

        subprocess.run(["umount", str(last)], check=True)
        mounted.clear()
        node.start("scp")
        wait_until(lambda: _purged(node.index, MPRAGE_STUDY), 60, "the interrupted purge finished", 0.2)
        assert _rows(node.index, MPRAGE_STUDY) == []
        assert not _purged(node.index, cts[-1]), "the newest CT fits below the watermark now"
        assert_index_and_disk_agree(node.index, root)
        with node.index.session() as session:
            purges = session.scalars(
                select(AuditEvent.detail).where(
                    AuditEvent.study_uid == MPRAGE_STUDY, AuditEvent.hop == Hop.PURGED
                )
            ).all()
        assert [detail["reason"] for detail in purges] == ["resumed"]

        # A late instance of a purged study reopens it as a new revision.
        late = sorted(_folder(tmp_path, 0).iterdir())[:1]
        assert storescu(node.port, late).stderr.count("(Success)") == 1
        wait_until(lambda: _study(node.index, cts[0]).revision == 1, 30, "the study reopened", 0.2)
        node.wait_for_state(cts[0], "DONE", timeout_s=30)

        # Erasure of the MPRAGE's patient (its instances purged: found by its result files) while the
        # node runs: nothing of that patient is left, the CT patient's studies are intact.
        erased = subprocess.run(
            [sys.executable, "-m", "radrouter.cli", "erase", "--patient-id", "d2n_Philips_3T_R571"],
            env={**os.environ, "RADROUTER_CONFIG": str(node.config_path)},
            capture_output=True,
            text=True,
            check=False,
        )
        assert erased.returncode == 0, erased.stdout + erased.stderr
        with node.index.session() as session:
            assert session.get(Study, MPRAGE_STUDY) is None
            assert len(session.scalars(select(Study.uid).where(Study.uid.in_(cts))).all()) == len(cts)
        assert not (root / "results" / MPRAGE_STUDY).exists()
        assert len(_rows(node.index, cts[-1])) == len(CT_FILES)
        assert_index_and_disk_agree(node.index, root)
    finally:
        for path in mounted:
            subprocess.run(["umount", "-l", str(path)], check=False)
        if node is not None:
            node.stop()
        subprocess.run(["umount", "-l", str(disk)], check=False)


def _folder(tmp_path: Path, n: int) -> Path:
    folder = tmp_path / f"ct{n}"
    folder.mkdir(exist_ok=True)
    return folder
