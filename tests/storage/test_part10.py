"""The File Meta group radrouter writes is the one pynetdicom (via pydicom) would write, byte for byte."""

from __future__ import annotations

from io import BytesIO

import pydicom
import pytest
from pydicom.uid import UID, JPEG2000Lossless, generate_uid
from pynetdicom.dsutils import create_file_meta, encode_file_meta

from radrouter.storage.part10 import part10_file

DATASET = b""  # the group is independent of the data set, which is appended as received


@pytest.mark.parametrize(
    ("sop_class", "sop_instance", "syntax"),
    [
        ("1.2.840.10008.5.1.4.1.1.2", "1.2.3.4", "1.2.840.10008.1.2.1"),  # even and odd lengths
        ("1.2.840.10008.5.1.4.1.1.4.1", generate_uid(), "1.2.840.10008.1.2"),
        ("1.2.840.10008.5.1.4.1.1.1.1", "9" * 64, JPEG2000Lossless),
    ],
)
def test_file_meta_matches_pydicom(sop_class: str, sop_instance: str, syntax: str) -> None:
    expected_meta = encode_file_meta(
        create_file_meta(
            sop_class_uid=UID(sop_class), sop_instance_uid=UID(sop_instance), transfer_syntax=UID(syntax)
        )
    )
    written = part10_file(DATASET, sop_class, sop_instance, syntax)

    assert written == b"\x00" * 128 + b"DICM" + expected_meta + DATASET
    meta = pydicom.dcmread(BytesIO(written), stop_before_pixels=True).file_meta
    assert meta.MediaStorageSOPInstanceUID == sop_instance
    assert meta.TransferSyntaxUID == syntax
