"""Delivery speed: radrouter's C-STORE SCU against a plain pynetdicom SCU, one association each.

Both send the same synthetic CT series to Orthanc (TCP_NODELAY=1), interleaved; Orthanc forgets the
study between sends, so every send stores every instance.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

from pynetdicom import AE

from bench.synthetic import write_ct_series
from radrouter.config.settings import Destination
from radrouter.router.deliver.associations import AssociationPool
from radrouter.router.deliver.scu import OutgoingObject, send
from radrouter.router.transport import NODELAY_HANDLER
from tests.services import Orthanc

#: What bench.synthetic writes: CT Image Storage in Explicit VR Little Endian.
CT_EXPLICIT = ("1.2.840.10008.5.1.4.1.1.2", "1.2.840.10008.1.2.1")
#: Kept open no longer than the send that opened it: each timed send negotiates its own association.
OPEN_ASSOCIATIONS = AssociationPool(keep_open_s=0.5)


def plain_pynetdicom(orthanc: Orthanc, files: list[Path]) -> None:
    """The anchor: pynetdicom's AE with TCP_NODELAY, one presentation context, one C-STORE per file."""
    ae = AE(ae_title="BENCH")
    ae.add_requested_context(*CT_EXPLICIT)
    assoc = ae.associate(
        "127.0.0.1", orthanc.dicom_port, ae_title=orthanc.ae_title, evt_handlers=[NODELAY_HANDLER]
    )
    if not assoc.is_established:
        raise RuntimeError("Orthanc refused the association")
    try:
        for path in files:
            status = assoc.send_c_store(path)
            if getattr(status, "Status", None) != 0:
                raise RuntimeError(f"Orthanc did not store {path.name}: {status}")
    finally:
        assoc.release()


def radrouter_delivery(orthanc: Orthanc, files: list[Path]) -> None:
    """As the delivery worker sends: the association is left open for the next delivery."""
    destination = Destination(host="127.0.0.1", port=orthanc.dicom_port, ae_title=orthanc.ae_title)
    outgoing = [OutgoingObject(path, encoding=CT_EXPLICIT) for path in files]  # as the index holds them
    send(destination, outgoing, "RADROUTER", 30.0, OPEN_ASSOCIATIONS)


def delivery_rates(orthanc: Orthanc, folder: Path, instances: int, reps: int) -> float:
    """Print instances/s of each sender and their ratio (target >= 1.0); return the ratio."""
    study_uid = write_ct_series(folder, instances)
    files = sorted(folder.glob("*.dcm"))
    senders = {"radrouter": radrouter_delivery, "pynetdicom": plain_pynetdicom}
    rates: dict[str, list[float]] = {name: [] for name in senders}
    print(f"\ndelivery of {instances} CT instances to Orthanc over one association:")
    for rep in range(reps):
        order = list(senders) if rep % 2 == 0 else list(reversed(senders))
        for name in order:
            orthanc.delete_study(study_uid)
            started = time.monotonic()
            senders[name](orthanc, files)
            rates[name].append(instances / (time.monotonic() - started))
            print(f"  rep {rep} {name:10} {rates[name][-1]:7.1f} instances/s", flush=True)
    medians = {name: statistics.median(values) for name, values in rates.items()}
    ratio = medians["radrouter"] / medians["pynetdicom"]
    print(
        f"median: radrouter {medians['radrouter']:.1f}, pynetdicom {medians['pynetdicom']:.1f} instances/s; "
        f"ratio {ratio:.2f} (target >= 1.0)"
    )
    return ratio
