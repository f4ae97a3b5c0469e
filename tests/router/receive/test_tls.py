"""DICOM TLS over the real network: dcmtk's storescu against the SCP, with a test CA made here."""

from __future__ import annotations

import socket
import ssl
import time
from pathlib import Path

import pytest
from pynetdicom import AE
from pynetdicom.sop_class import Verification

from tests.pki import certificate_authority, signed_certificate
from tests.router.receive.test_scp import ONE_SLICE, RunningSCP, stored_files
from tests.services import storescu


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A throw-away CA, a server certificate for 127.0.0.1 and a client certificate for the modality."""
    folder = tmp_path_factory.mktemp("pki")
    certificate_authority(folder, "radrouter test CA")
    signed_certificate(folder, "server", "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")
    signed_certificate(folder, "modality", "extendedKeyUsage=clientAuth\n")
    return folder


def tls_settings(pki: Path, mutual: bool) -> dict[str, object]:
    return {
        "cert_file": pki / "server.crt",
        "key_file": pki / "server.key",
        "ca_file": pki / "ca.crt",
        "require_client_cert": mutual,
    }


def test_a_modality_with_a_certificate_stores_over_mutual_tls(tmp_path: Path, pki: Path) -> None:
    with RunningSCP(tmp_path / "data", tls=tls_settings(pki, mutual=True)) as scp:
        client = ("+tls", str(pki / "modality.key"), str(pki / "modality.crt"), "+cf", str(pki / "ca.crt"))
        sent = storescu(scp.settings.node.port, ONE_SLICE, options=client)
        assert "Received Store Response (Success)" in sent.stderr, sent.stderr
        assert scp.done.wait(10)
        assert scp.instances() == 1
    assert len(stored_files(tmp_path / "data")) == 1


def test_mutual_tls_refuses_a_client_without_a_certificate(tmp_path: Path, pki: Path) -> None:
    with RunningSCP(tmp_path / "data", tls=tls_settings(pki, mutual=True)) as scp:
        anonymous = ("+tla", "+cf", str(pki / "ca.crt"))
        sent = storescu(scp.settings.node.port, ONE_SLICE, options=anonymous)
        assert sent.returncode != 0
        assert "Association Accepted" not in sent.stderr
        assert scp.instances() == 0
    assert stored_files(tmp_path / "data") == []


def test_a_tls_port_refuses_plain_tcp_and_accepts_a_client_without_certificate(
    tmp_path: Path, pki: Path
) -> None:
    """Without mutual TLS, any client that checks our certificate may send; a plain one may not."""
    with RunningSCP(tmp_path / "data", tls=tls_settings(pki, mutual=False)) as scp:
        plain = storescu(scp.settings.node.port, ONE_SLICE)
        assert plain.returncode != 0
        assert "Association Accepted" not in plain.stderr
        assert scp.instances() == 0
        anonymous = storescu(scp.settings.node.port, ONE_SLICE, options=("+tla", "+cf", str(pki / "ca.crt")))
        assert "Received Store Response (Success)" in anonymous.stderr, anonymous.stderr
        assert scp.instances() == 1


def test_a_client_refuses_a_server_certificate_from_another_ca(tmp_path: Path, pki: Path) -> None:
    """The modality checks us: trusting only another CA, it refuses our certificate."""
    other = tmp_path / "other"
    other.mkdir()
    certificate_authority(other, "other CA")
    with RunningSCP(tmp_path / "data", tls=tls_settings(pki, mutual=False)) as scp:
        sent = storescu(scp.settings.node.port, ONE_SLICE, options=("+tla", "+cf", str(other / "ca.crt")))
        assert sent.returncode != 0
        assert scp.instances() == 0


def _tls_echo_seconds(port: int, pki: Path) -> float:
    """Seconds a TLS C-ECHO association takes, from connect to release."""
    context = ssl.create_default_context(cafile=str(pki / "ca.crt"))
    scu = AE(ae_title="MODALITY")
    scu.acse_timeout = scu.dimse_timeout = scu.network_timeout = scu.connection_timeout = 10
    scu.add_requested_context(Verification)
    started = time.monotonic()
    assoc = scu.associate("127.0.0.1", port, ae_title="RADROUTER", tls_args=(context, "127.0.0.1"))
    assert assoc.is_established
    status = assoc.send_c_echo()
    assoc.release()
    assert int(status.Status) == 0
    return time.monotonic() - started


def test_silent_tls_clients_do_not_delay_another(tmp_path: Path, pki: Path) -> None:
    """Two connections that never send a ClientHello: the handshake waits in their own threads, so a
    third client is served as fast as without them (it waited 59.5 s behind them in the accept loop)."""
    with RunningSCP(tmp_path / "data", tls=tls_settings(pki, mutual=False)) as scp:
        port = scp.settings.node.port
        normal = min(_tls_echo_seconds(port, pki) for _ in range(2))
        silent = [socket.create_connection(("127.0.0.1", port)) for _ in range(2)]
        try:
            time.sleep(0.2)  # both accepted, their handshakes waiting
            delayed = _tls_echo_seconds(port, pki)
        finally:
            for sock in silent:
                sock.close()
        assert delayed < normal + 1, f"{delayed:.2f} s with two silent clients, {normal:.2f} s without"
