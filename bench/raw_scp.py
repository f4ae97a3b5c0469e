"""``python -m bench.raw_scp PORT FOLDER``: pynetdicom alone, the ceiling of any receiver built on it.

One process, every storage SOP class in every transfer syntax, each C-STORE's bytes written to a file
(no fsync, no index, no parsing): the issue's anchor "a single pynetdicom process writing raw bytes".
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, AllStoragePresentationContexts, evt

AE_TITLE = "PYNETDICOM"


def main() -> None:
    port, folder = int(sys.argv[1]), Path(sys.argv[2])
    folder.mkdir(parents=True, exist_ok=True)
    ae = AE(AE_TITLE)
    ae.maximum_pdu_size = 0
    for context in AllStoragePresentationContexts:
        ae.add_supported_context(context.abstract_syntax, ALL_TRANSFER_SYNTAXES)

    def store(event: Any) -> int:
        (folder / f"{event.request.AffectedSOPInstanceUID}.dcm").write_bytes(
            event.encoded_dataset(include_meta=True)
        )
        return 0x0000

    ae.start_server(("127.0.0.1", port), evt_handlers=[(evt.EVT_C_STORE, store)], block=True)


if __name__ == "__main__":
    main()
