"""A C-ECHO to the node's own SCP, as a modality would send it: what ``/api/health`` reports.

A process that runs is not a port that answers (issue #23: the port locked while every process ran).
The echo has a short timeout, and its outcome is kept a few seconds so that a health check polled
every second does not open an association each time.
"""

from __future__ import annotations

import ssl
import threading
import time

from pynetdicom import AE
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

from radrouter.config.settings import NodeSettings

#: A-ASSOCIATE-RJ (result, source, diagnostic) that still say the SCP is up: it refused our AE title.
_CALLING_AE_NOT_RECOGNIZED = (0x01, 0x01, 0x03)


def _local_address(host: str) -> str:
    return {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1"}.get(host, host)


def _client_context(node: NodeSettings) -> ssl.SSLContext | None:
    tls = node.tls
    if tls.cert_file is None or tls.key_file is None:
        return None
    context = ssl.create_default_context(cafile=str(tls.ca_file) if tls.ca_file else None)
    context.check_hostname = False  # we call our own address, whatever name the certificate bears
    if tls.ca_file is None:
        context.verify_mode = ssl.CERT_NONE
    if tls.require_client_cert:
        context.load_cert_chain(tls.cert_file, tls.key_file)
    return context


def echo_own_scp(node: NodeSettings, timeout_s: float = 2.0) -> str:
    """``"ok"`` when the SCP accepts an association and answers a C-ECHO; else what went wrong."""
    ae = AE(ae_title=node.ae_title)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = timeout_s
    ae.connection_timeout = timeout_s
    ae.add_requested_context(Verification)
    tls = _client_context(node)
    address = node.health_echo_host or _local_address(node.host)
    try:
        assoc = ae.associate(
            address, node.port, ae_title=node.ae_title, tls_args=(tls, address) if tls else None
        )
    except Exception as error:  # pragma: no cover - pynetdicom reports failures on the association
        return f"error: {type(error).__name__}"
    if assoc.is_rejected:
        reason = assoc.acceptor.primitive
        answer = (reason.result, reason.result_source, reason.diagnostic) if reason else None
        return "ok" if answer == _CALLING_AE_NOT_RECOGNIZED else f"error: association rejected {answer}"
    if not assoc.is_established:
        return "error: no association"
    try:
        status = assoc.send_c_echo()
    finally:
        assoc.release()
    if "Status" not in status or int(status.Status) != 0:
        return "error: C-ECHO failed"
    return "ok"


class CachedEcho:
    """``echo_own_scp``'s answer, at most ``max_age_s`` old; one echo at a time."""

    def __init__(self, node: NodeSettings, max_age_s: float = 5.0, timeout_s: float = 2.0) -> None:
        self.node = node
        self.max_age_s = max_age_s
        self.timeout_s = timeout_s
        self._lock = threading.Lock()
        self._answer: tuple[float, str] | None = None

    def __call__(self) -> str:
        with self._lock:
            if self._answer is not None and time.monotonic() - self._answer[0] < self.max_age_s:
                return self._answer[1]
            answer = echo_own_scp(self.node, self.timeout_s)
            self._answer = (time.monotonic(), answer)
            return answer
