"""C-STOREs a trusted archive refuses, sent over the real network by a hostile SCU (issue #23, finding 3).

pynetdicom sends a file's data set bytes as they are (``tests.fuzz.cases`` turns that on) and takes
the command's SOP Class and Instance UIDs from its File Meta group: a file whose meta and data set
disagree, or whose data set is cut short, reaches the SCP exactly as a broken modality would send it.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator
from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_file_meta_info
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from tests.fuzz.cases import SOURCES, Sender, split_file
from tests.router.receive.test_scp import RunningSCP, stored_files

CT = SOURCES[0]  # a real CT slice, Explicit VR Little Endian, Pixel Data last
MR_IMAGE = "1.2.840.10008.5.1.4.1.1.4"


def part10(sop_class: str, sop_instance: str, dataset: bytes) -> bytes:
    """A file whose File Meta group (what the command is made from) says ``sop_class``/``sop_instance``."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop_instance
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    encoded = DicomBytesIO()
    write_file_meta_info(encoded, meta, enforce_standard=True)
    return bytes(128) + b"DICM" + encoded.getvalue() + dataset


def ct_dataset() -> bytes:
    return split_file(CT)[1]


def replaced_uid(dataset: bytes, old: str, new: str) -> bytes:
    """The data set with the value of the UI element holding ``old`` replaced (same even length)."""
    old_value = old.encode() + b"\0" * (len(old) % 2)
    new_value = new.encode().ljust(len(old_value), b"\0")
    assert len(new_value) == len(old_value) and dataset.count(old_value) >= 1
    return dataset.replace(old_value, new_value)


def ct_uids() -> tuple[str, str]:
    header = pydicom.dcmread(CT, stop_before_pixels=True)
    return str(header.SOPClassUID), str(header.SOPInstanceUID)


def with_pixel_data_length(dataset: bytes, length: int) -> bytes:
    """The data set with its Pixel Data (7FE0,0010) OW declaring ``length`` bytes."""
    at = dataset.rindex(b"\xe0\x7f\x10\x00OW\x00\x00")
    return dataset[: at + 8] + struct.pack("<I", length) + dataset[at + 12 :]


@pytest.fixture
def scp(tmp_path: Path) -> Iterator[RunningSCP]:
    with RunningSCP(tmp_path / "data") as running:
        yield running


@pytest.fixture
def sender(scp: RunningSCP) -> Iterator[Sender]:
    scu = Sender(scp.settings.node.port)
    scu.ae.add_requested_context(MR_IMAGE, ExplicitVRLittleEndian)
    yield scu
    scu.close()


def send(sender: Sender, tmp_path: Path, data: bytes) -> int | None:
    path = tmp_path / "case.dcm"
    path.write_bytes(data)
    return sender.store(path)


def test_the_unaltered_file_is_stored(scp: RunningSCP, sender: Sender, tmp_path: Path) -> None:
    sop_class, sop_instance = ct_uids()
    assert send(sender, tmp_path, part10(sop_class, sop_instance, ct_dataset())) == 0x0000
    assert scp.instances() == 1


def test_a_command_instance_uid_other_than_the_data_sets_is_refused(
    scp: RunningSCP, sender: Sender, tmp_path: Path
) -> None:
    sop_class, _ = ct_uids()
    assert send(sender, tmp_path, part10(sop_class, generate_uid(), ct_dataset())) == 0xA900
    assert scp.instances() == 0
    assert stored_files(scp.settings.storage.root) == []


def test_a_command_sop_class_other_than_the_data_sets_is_refused(
    scp: RunningSCP, sender: Sender, tmp_path: Path
) -> None:
    _, sop_instance = ct_uids()
    assert send(sender, tmp_path, part10(MR_IMAGE, sop_instance, ct_dataset())) == 0xA900
    assert scp.instances() == 0
    assert stored_files(scp.settings.storage.root) == []


def test_a_data_set_whose_own_sop_instance_uid_is_invalid_is_refused(
    scp: RunningSCP, sender: Sender, tmp_path: Path
) -> None:
    sop_class, sop_instance = ct_uids()
    invalid = "1.2.x" + "9" * (len(sop_instance) - 5)  # same length, not a UID
    dataset = replaced_uid(ct_dataset(), sop_instance, invalid)
    assert send(sender, tmp_path, part10(sop_class, sop_instance, dataset)) in {0xA900, 0xC001}
    assert scp.instances() == 0
    assert stored_files(scp.settings.storage.root) == []


@pytest.mark.parametrize(
    "cut",
    [
        pytest.param(lambda data: with_pixel_data_length(data, 2**31), id="pixel data declaring 2 GiB"),
        pytest.param(lambda data: data[: len(data) // 2], id="cut in the pixel data"),
        pytest.param(lambda data: data[:1001], id="cut in the header"),
    ],
)
def test_a_truncated_data_set_is_refused_and_nothing_stored(
    scp: RunningSCP, sender: Sender, tmp_path: Path, cut: Callable[[bytes], bytes]
) -> None:
    sop_class, sop_instance = ct_uids()
    dataset = cut(ct_dataset())
    assert send(sender, tmp_path, part10(sop_class, sop_instance, dataset)) in {0xA900, 0xC000}
    assert scp.instances() == 0
    assert stored_files(scp.settings.storage.root) == []
