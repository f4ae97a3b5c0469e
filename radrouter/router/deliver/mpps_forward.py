"""Forwards the modalities' MPPS to the destinations with ``forward_mpps`` (a PACS or RIS that tracks
procedures too), as an MPPS SCU.

Messages go out in the order received, from one thread per SCP process, so the modality's answer
never waits for a destination and an N-SET never overtakes its N-CREATE. Forwarding is best effort:
a destination that refuses or is down is logged, the node's own completion does not depend on it.
External destinations never get one (an MPPS carries the patient's identity).
"""

from __future__ import annotations

import logging
import queue
import threading
from dataclasses import dataclass

from pydicom import Dataset
from pydicom.uid import UID
from pynetdicom import AE
from pynetdicom.sop_class import ModalityPerformedProcedureStep  # type: ignore[attr-defined]

from radrouter.config.settings import Destination

log = logging.getLogger(__name__)

MPPS_SOP_CLASS = UID(ModalityPerformedProcedureStep)


@dataclass(frozen=True)
class StepMessage:
    """An N-CREATE (``create``) or N-SET of step ``uid`` with its attribute list."""

    create: bool
    uid: str
    attributes: Dataset


class StepForwarder:
    """Queues each recorded step message for the destinations that want them."""

    def __init__(self, destinations: dict[str, Destination], calling_ae: str, timeout_s: float) -> None:
        self.destinations = {name: d for name, d in destinations.items() if d.forward_mpps and not d.external}
        self.calling_ae = calling_ae
        self.timeout_s = timeout_s
        self._queue: queue.Queue[StepMessage] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def forward(self, message: StepMessage) -> None:
        if not self.destinations:
            return
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="mpps-forward", daemon=True)
                self._thread.start()
        self._queue.put(message)

    def _run(self) -> None:
        while True:
            message = self._queue.get()
            for name, destination in self.destinations.items():
                try:
                    status = self._send(destination, message)
                except Exception as error:  # a destination's failure must not stop the others
                    status = f"{type(error).__name__}: {error}"
                if status != "0x0000":
                    log.warning("MPPS %s not forwarded to %s: %s", message.uid, name, status)

    def _send(self, destination: Destination, message: StepMessage) -> str:
        ae = AE(ae_title=self.calling_ae)
        ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = self.timeout_s
        ae.add_requested_context(MPPS_SOP_CLASS)
        assoc = ae.associate(destination.host, destination.port, ae_title=destination.ae_title)
        if not assoc.is_established:
            return "no association"
        try:
            if message.create:
                status, _ = assoc.send_n_create(message.attributes, MPPS_SOP_CLASS, message.uid)
            else:
                status, _ = assoc.send_n_set(message.attributes, MPPS_SOP_CLASS, message.uid)
        finally:
            assoc.release()
        code = getattr(status, "Status", None)
        return "no answer" if code is None else f"0x{int(code):04X}"
