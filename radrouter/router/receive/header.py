"""The header the index needs, read from a received data set's spool file without loading the
data set: every element's length is checked over the file mapped into memory, and the elements up to
the pixel data are decoded from the file itself."""

from __future__ import annotations

import mmap
import zlib
from io import BytesIO
from pathlib import Path
from typing import Any

from pydicom import Dataset
from pydicom.filereader import read_dataset
from pydicom.uid import UID, DeflatedExplicitVRLittleEndian

from radrouter.router.receive.lengths import check_lengths
from radrouter.router.receive.spool import data_set_offset

#: What the index keeps of an instance.
_HEADER_TAGS = [
    "StudyInstanceUID",
    "SeriesInstanceUID",
    "Modality",
    "SeriesNumber",
    "SeriesDescription",
    "PatientID",
    "SOPClassUID",
    "SOPInstanceUID",
]
#: Where reading stops, as pydicom's ``stop_before_pixels`` does: Float, Double Float and Pixel Data.
_PIXEL_DATA_TAGS = frozenset({0x7FE00008, 0x7FE00009, 0x7FE00010})


class NoRoom(Exception):
    """A deflated data set inflates to more than the memory it was given."""


def index_header(received: Path, transfer_syntax: UID, room: int = 0) -> tuple[Dataset, int | None]:
    """The header up to the pixel data, with the elements the index needs decoded now, and the offset
    in the file of the element reading stopped at (None for a deflated data set, or none reached).

    Every element's structure is read (a data set that cannot be read back is refused here, not found
    later by routing or a pipeline), but only the indexed elements are converted. Every element must
    hold the bytes it declares, pixel data included (``check_lengths``), walked over the file mapped
    into memory: only element headers are touched, whatever the instance's size. A deflated data set
    is inflated whole, into at most ``room`` bytes (:class:`NoRoom` past it).
    """
    implicit, little = transfer_syntax.is_implicit_VR, transfer_syntax.is_little_endian
    with received.open("rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as view:
        start = data_set_offset(view)
        if transfer_syntax == DeflatedExplicitVRLittleEndian:
            inflater = zlib.decompressobj(-zlib.MAX_WBITS)
            inflated = inflater.decompress(view[start:], max(room, 1))
            if not inflater.eof:
                if inflater.unconsumed_tail or len(inflated) >= room:
                    raise NoRoom
                raise ValueError("the deflated data set is cut short")
            check_lengths(inflated, implicit, little)
            source: Any = BytesIO(inflated)
        else:
            check_lengths(view, implicit, little, start)
            handle.seek(start)
            source = handle
        header = read_dataset(
            source, implicit, little, stop_when=lambda tag, _vr, _length: tag in _PIXEL_DATA_TAGS
        )
        # pydicom leaves the file at the start of the element it stopped before.
        stopped_at = handle.tell() if source is handle and handle.tell() < len(view) else None
        for keyword in _HEADER_TAGS:
            header.get(keyword)
    return header, stopped_at
