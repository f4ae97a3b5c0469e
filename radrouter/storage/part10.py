"""The DICOM file (PS3.10) around a received data set: preamble, ``DICM`` and the File Meta group.

The group is the one pynetdicom writes for a C-STORE (``Event.encoded_dataset(include_meta=True)``),
byte for byte, but encoded directly: building it as a pydicom ``FileMetaDataset`` took 0.45 ms of the
receiver's CPU per instance, a tenth of all it spends.
"""

from __future__ import annotations

import struct

from pynetdicom import PYNETDICOM_IMPLEMENTATION_UID, PYNETDICOM_IMPLEMENTATION_VERSION

_PREAMBLE = b"\x00" * 128 + b"DICM"


def _element(element: int, vr: bytes, value: bytes, padding: bytes) -> bytes:
    """One explicit VR little endian element of group 0002, its value padded to an even length."""
    if len(value) % 2:
        value += padding
    if vr == b"OB":
        return struct.pack("<HH2s2xI", 0x0002, element, vr, len(value)) + value
    return struct.pack("<HH2sH", 0x0002, element, vr, len(value)) + value


_VERSION = _element(0x0001, b"OB", b"\x00\x01", b"\x00")
_IMPLEMENTATION = _element(0x0012, b"UI", PYNETDICOM_IMPLEMENTATION_UID.encode(), b"\x00") + _element(
    0x0013, b"SH", PYNETDICOM_IMPLEMENTATION_VERSION.encode(), b" "
)


def part10_file(dataset: bytes, sop_class_uid: str, sop_instance_uid: str, transfer_syntax_uid: str) -> bytes:
    """``dataset`` (as encoded in ``transfer_syntax_uid``) as a DICOM file."""
    group = b"".join(
        (
            _VERSION,
            _element(0x0002, b"UI", sop_class_uid.encode("ascii"), b"\x00"),
            _element(0x0003, b"UI", sop_instance_uid.encode("ascii"), b"\x00"),
            _element(0x0010, b"UI", transfer_syntax_uid.encode("ascii"), b"\x00"),
            _IMPLEMENTATION,
        )
    )
    length = struct.pack("<HH2sHI", 0x0002, 0x0000, b"UL", 4, len(group))
    return b"".join((_PREAMBLE, length, group, dataset))
