"""The SCP under fuzzed input over the network: every case is answered, nothing crashes, the node serves on.

A few hundred cases here; `bench/fuzz.py` runs tens of thousands against a `radrouter scp` process.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest
from hypothesis import HealthCheck, example, given, settings

from radrouter.storage.index import Instance
from tests.fuzz.cases import FAILURES, DatasetCase, PduCase, Sender, dataset_cases, echo, pdu_cases, send_raw
from tests.router.receive.test_scp import RunningSCP

FUZZ = settings(max_examples=150, deadline=None, database=None, suppress_health_check=list(HealthCheck))


@pytest.fixture(scope="module")
def scp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningSCP]:
    # Malformed association requests hold a slot until pynetdicom's ACSE timer ends them (30 s):
    # room for all of them, so every case meets the SCP rather than its association limit.
    with RunningSCP(tmp_path_factory.mktemp("fuzz") / "data", max_associations=1000) as running:
        yield running
    assert running.server is not None


@pytest.fixture(scope="module")
def case_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cases") / "case.dcm"


@pytest.fixture(scope="module")
def sender(scp: RunningSCP) -> Iterator[Sender]:
    scu = Sender(scp.settings.node.port)
    yield scu
    scu.close()


def check_dataset_case(sender: Sender, scp: RunningSCP, case_file: Path, case: DatasetCase) -> int:
    """Send one mutated file; Success only for a dataset the SCP indexed and stored readably."""
    meta, body = case.build()
    case_file.write_bytes(meta + body)
    file_meta = pydicom.filereader.read_file_meta_info(case_file)
    status = sender.store(case_file)
    assert status is not None, "the SCP did not answer"
    if status == 0x0000:
        with scp.index.session() as session:
            instance = session.get(Instance, str(file_meta.MediaStorageSOPInstanceUID))
            assert instance is not None, "answered Success but not indexed"
            stored = pydicom.dcmread(instance.path, stop_before_pixels=True)
        assert stored.file_meta.MediaStorageSOPInstanceUID == file_meta.MediaStorageSOPInstanceUID
    else:
        assert status in FAILURES, f"unexpected status 0x{status:04X}"
    return status


@FUZZ
@given(case=dataset_cases())
# A byte zeroed inside a sequence after Series Number: accepted once by a header read that stopped there.
@example(case=DatasetCase(source=4, edits=((0.013671875, 0),), cut=None))
def test_mutated_real_files_get_a_status_and_never_crash_the_scp(
    sender: Sender, scp: RunningSCP, case_file: Path, case: DatasetCase
) -> None:
    check_dataset_case(sender, scp, case_file, case)


@FUZZ
@given(case=pdu_cases())
def test_malformed_pdus_never_crash_the_scp(scp: RunningSCP, case: PduCase) -> None:
    send_raw(scp.settings.node.port, case)


def test_the_scp_still_serves_after_the_fuzzing(scp: RunningSCP) -> None:
    assert echo(scp.settings.node.port)
