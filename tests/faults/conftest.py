"""The fault suite's tally: what was sent, which faults were injected, what was lost or duplicated."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pytest

from tests.faults.harness import NodeProcesses, study_uid_of
from tests.services import MPRAGE, Orthanc

FILES = sorted(MPRAGE.glob("*.dcm"))
STUDY = study_uid_of(FILES[0])


@dataclass
class FaultTally:
    studies_sent: int = 0
    instances_sent: int = 0
    faults_injected: list[str] = field(default_factory=list)
    instances_lost: int = 0
    results_duplicated: int = 0
    results_missing: int = 0

    def sent(self, files: list[Path], new_study: bool = True) -> None:
        self.studies_sent += int(new_study)
        self.instances_sent += len(files)

    def fault(self, what: str) -> None:
        self.faults_injected.append(what)

    def lost(self, expected: set[str], indexed: set[str]) -> None:
        self.instances_lost += len(expected - indexed)
        assert expected <= indexed, f"{len(expected - indexed)} acknowledged instance(s) lost"

    def results_in_pacs(self, pacs: Orthanc, study_uid: str, expected_each: int) -> None:
        """Exactly ``expected_each`` SEG and SR instances of the study in the PACS."""
        for modality in ("SEG", "SR"):
            found = pacs.count_instances(study_uid, modality)
            self.results_duplicated += max(0, found - expected_each)
            self.results_missing += max(0, expected_each - found)
            assert found == expected_each, f"{found} {modality} in PACS, expected {expected_each}"


@pytest.fixture(scope="session")
def tally() -> Iterator[FaultTally]:
    counts = FaultTally()
    yield counts
    summary = {**asdict(counts), "faults": len(counts.faults_injected)}
    print(f"\nfault suite: {json.dumps(summary)}")
    if os.environ.get("RADROUTER_FAULT_REPORT"):
        Path(os.environ["RADROUTER_FAULT_REPORT"]).write_text(json.dumps(summary, indent=2))


@pytest.fixture
def node(tmp_path: Path, orthanc: Orthanc) -> Iterator[NodeProcesses]:
    """A fresh node of separate processes, and the PACS without the test study's earlier results."""
    orthanc.delete_study(STUDY)
    running = NodeProcesses(tmp_path, orthanc)
    try:  # a start that times out must not leave the processes it did start behind
        running.start()
        yield running
    finally:
        running.stop()
