"""``/api/health`` sends a real C-ECHO to the node's own SCP: degraded when the port does not answer,
whatever the processes say (issue #23: the port locked while every process ran)."""

from __future__ import annotations

import time
from pathlib import Path

from pynetdicom import AE
from pynetdicom.sop_class import Verification

from radrouter.config.settings import Settings
from radrouter.router.receive.self_check import CachedEcho, echo_own_scp
from radrouter.web.app import create_app
from tests.access import token_client
from tests.router.receive.test_scp import RunningSCP


def test_health_reports_the_scp_answering_and_then_not(tmp_path: Path) -> None:
    with RunningSCP(tmp_path / "data") as scp:
        client = token_client(create_app(scp.settings, scp.index), scp.index)
        started = time.monotonic()
        health = client.get("/api/health").json()
        assert health["checks"]["scp"] == "ok"
        assert time.monotonic() - started < 5
    # The port is closed now, and the answer older than its cache: degraded.
    assert echo_own_scp(scp.settings.node, timeout_s=1).startswith("error")


def test_a_full_scp_is_reported(tmp_path: Path) -> None:
    """Every place taken: the SCP answers "Local Limit Exceeded", which is not healthy."""
    with RunningSCP(tmp_path / "data", max_associations=1) as scp:
        scu = AE(ae_title="MODALITY")
        scu.add_requested_context(Verification)
        held = scu.associate("127.0.0.1", scp.settings.node.port, ae_title="RADROUTER")
        assert held.is_established
        try:
            assert "rejected" in echo_own_scp(scp.settings.node, timeout_s=1)
        finally:
            held.release()


def test_the_echo_is_cached_for_a_few_seconds(tmp_path: Path) -> None:
    with RunningSCP(tmp_path / "data") as scp:
        echo = CachedEcho(scp.settings.node, max_age_s=60, timeout_s=1)
        assert echo() == "ok"
    assert echo() == "ok"  # the SCP is gone, but the answer is younger than max_age_s


def test_the_scp_metrics_listen_on_loopback_unless_configured() -> None:
    assert Settings().node.metrics_host == "127.0.0.1"
    assert Settings(node={"metrics_host": "0.0.0.0"}).node.metrics_host == "0.0.0.0"
