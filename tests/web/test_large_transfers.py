"""1 GiB through ``radrouter web`` in a memory cgroup smaller than that: a STOW-RS body is spooled part
by part to disk and linked into the store, and WADO-RS serves an instance from disk in pieces (before,
a 200 MB STOW took the web process from 0.5 to 2.8 GB, and WADO-RS of a 1.5 GB instance 6.5 GB)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pydicom
from sqlalchemy import select

from radrouter.config.rules import Priority
from radrouter.config.settings import Settings
from radrouter.inference.results.content import ResultIdentity, job_key
from radrouter.router.dispatch.job_credential import credentials_of
from radrouter.storage.index import Index, Instance, Job, JobState
from radrouter.storage.ingest import ReceivedInstance, record_instance
from radrouter.storage.store import InstanceStore
from tests.faults.cgroup import MemoryCgroup
from tests.router.receive.test_large_instance import RESIDENT_BUDGET, multi_frame
from tests.router.receive.test_large_instance import _resident_peak as resident_peak
from tests.services import free_port, wait_until

LIMIT = 768 * 2**20  # below the 1 GiB moved each way
PIPELINE = "threshold-ts"
BOUNDARY = "one-gib"


def _body(path: Path) -> Iterator[bytes]:
    """A one-part multipart/related body around the file, read from disk in pieces."""
    yield f"--{BOUNDARY}\r\nContent-Type: application/dicom\r\n\r\n".encode()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            yield chunk
    yield f"\r\n--{BOUNDARY}--\r\n".encode()


#: The node's service token (``web.api_token``) the WADO-RS read shows.
TOKEN = "large-transfers-test-token"


def test_a_one_gib_stow_and_wado_within_a_smaller_memory_limit(tmp_path: Path) -> None:
    root, port = tmp_path / "data", free_port()
    config = tmp_path / "radrouter.yaml"
    # A free port; and a service token, since WADO-RS, like every data route, needs sign-in or a token.
    config.write_text(f"web: {{port: {port}, api_token: {TOKEN}}}\nstorage: {{root: {root}}}\n")
    env = {**os.environ, "RADROUTER_CONFIG": str(config)}
    radrouter = [sys.executable, "-m", "radrouter.cli"]
    subprocess.run([*radrouter, "db", "upgrade"], env=env, check=True, capture_output=True, timeout=120)
    settings = Settings(storage={"root": root})
    store, index = InstanceStore(root), Index(settings.storage.resolved_index_url())

    # A 1 GiB instance the node holds, and a running job on its series.
    study_uid, series_uid = pydicom.uid.generate_uid(), pydicom.uid.generate_uid()
    patient = {"StudyInstanceUID": study_uid, "SeriesInstanceUID": series_uid, "PatientID": "LARGE-1"}
    sop_uid = pydicom.uid.generate_uid()
    held = store.instance_path(study_uid, series_uid, sop_uid)
    multi_frame(held, sop_uid=sop_uid, **patient)
    record_instance(index, ReceivedInstance.of_stored_file(held))
    with index.session() as session:
        job = Job(study_uid=study_uid, series_uid=series_uid, pipeline=PIPELINE, priority=Priority.ROUTINE,
                  rule="r", state=JobState.RUNNING)  # fmt: skip
        session.add(job)
        session.flush()
        job_id = job.id
    credentials = credentials_of(settings)
    assert credentials is not None
    # Its 1 GiB "result", named as the job's SR (its content is the real CT's: only its size matters).
    result_uid = ResultIdentity(job_key(series_uid, PIPELINE, 0), PIPELINE, "1", 1).uid("sr")
    offered = tmp_path / "result.dcm"
    multi_frame(offered, sop_uid=result_uid, **{**patient, "SeriesInstanceUID": pydicom.uid.generate_uid()})

    cgroup = MemoryCgroup(LIMIT)
    log = tmp_path / "web.log"
    web = subprocess.Popen(
        cgroup.wrap([*radrouter, "web"]), env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    try:
        wait_until(lambda: "Uvicorn running" in log.read_text(), 60, "radrouter web")
        url = f"http://127.0.0.1:{port}/dicomweb"
        stow = httpx.post(
            f"{url}/studies",
            content=_body(offered),
            headers={
                "Content-Type": f'multipart/related; type="application/dicom"; boundary={BOUNDARY}',
                "Authorization": f"Bearer {credentials.issue(job_id)}",
            },
            timeout=300,
        )
        assert stow.status_code == 200, (stow.headers, log.read_text()[-2000:])
        stored = root / "results" / study_uid / f"{result_uid}.dcm"
        assert stored.stat().st_size == offered.stat().st_size

        served = 0
        with httpx.stream(
            "GET",
            f"{url}/studies/{study_uid}/series/{series_uid}/instances/{sop_uid}",
            headers={
                "Accept": 'multipart/related; type="application/dicom"; transfer-syntax=*',
                "Authorization": f"Bearer {TOKEN}",
            },
            timeout=300,
        ) as response:
            assert response.status_code == 200
            for chunk in response.iter_raw():
                served += len(chunk)
        assert served > held.stat().st_size

        peak = resident_peak(web.pid)
        assert cgroup.oom_kills() == 0
        assert 0 < peak < RESIDENT_BUDGET + 128 * 2**20, peak  # the web app's own needs are larger
        with index.session() as session:
            assert session.scalars(select(Instance.sop_uid)).all() == [sop_uid]
    finally:
        os.killpg(web.pid, signal.SIGTERM)
        web.wait(timeout=30)
        cgroup.remove()
        index.engine.dispose()
