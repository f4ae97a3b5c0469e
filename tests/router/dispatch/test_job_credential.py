"""Job credentials: issued by the node with its own key, checked for the one job, expired after the
configured time; a worker with its own storage root can issue none."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from radrouter.config.settings import Settings
from radrouter.router.dispatch.job_credential import (
    KEY_FILE,
    CredentialRefused,
    JobCredentials,
    credentials_of,
)
from radrouter.router.dispatch.send import inference_task


def test_a_credential_names_its_job_and_only_this_nodes_key_makes_one(tmp_path: Path) -> None:
    settings = Settings(storage={"root": tmp_path})
    node, again = credentials_of(settings), credentials_of(settings)
    assert node is not None and again is not None
    assert again.job_of(node.issue(42)) == 42  # one key file, made once, read by every process
    assert stat.S_IMODE((tmp_path / KEY_FILE).stat().st_mode) == 0o600
    other = JobCredentials(b"another node's key", ttl_s=3600)
    with pytest.raises(CredentialRefused, match="not issued by this node"):
        node.job_of(other.issue(42))
    with pytest.raises(CredentialRefused, match="no job credential"):
        node.job_of(None)


def test_a_credential_expires(tmp_path: Path) -> None:
    key = b"k" * 32
    with pytest.raises(CredentialRefused, match="expired"):
        JobCredentials(key, ttl_s=-1).job_of(JobCredentials(key, ttl_s=60).issue(7))


def test_the_inference_task_carries_the_jobs_credential_where_the_node_issues_one(tmp_path: Path) -> None:
    node = Settings(storage={"root": tmp_path / "node"})
    task = inference_task(node, 5, "brain-extraction", 4)
    credentials = credentials_of(node)
    assert credentials is not None and task.credential is not None
    assert credentials.job_of(task.credential) == 5
    remote = Settings(
        storage={"root": tmp_path / "remote"},
        worker={"series_access": "dicomweb", "node_url": "http://node:8080/dicomweb"},
    )
    assert inference_task(remote, 5, "brain-extraction", 4).credential is None
    assert not (tmp_path / "remote" / KEY_FILE).exists()
