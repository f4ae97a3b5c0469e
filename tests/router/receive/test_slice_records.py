"""The SCP keeps each plain slice's record in the index as it receives it: the slice header (no patient
data, no private groups) and where the Pixel Data element starts in the stored file; a compressed
slice gets none (the worker reads it whole)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pydicom
import pytest
from pydicom.dataelem import RawDataElement
from pydicom.tag import Tag
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, RLELossless

from radrouter.storage.index import Instance
from radrouter.storage.slices import SliceRecord, decode_slice_header
from tests.router.receive.test_scp import RunningSCP
from tests.services import CT_HEAD, MPRAGE, storescu

PIXEL_DATA_TAG = b"\xe0\x7f\x10\x00"
VALUE_MAP = Tag("RealWorldValueMappingSequence")


@pytest.mark.parametrize(
    ("files", "options", "syntax"),
    [
        (sorted(MPRAGE.glob("*.dcm"))[:4], ("--propose-little",), ExplicitVRLittleEndian),
        ([CT_HEAD / "I10", CT_HEAD / "I100"], ("--propose-implicit",), ImplicitVRLittleEndian),
        ([], ("--propose-rle", "--required"), RLELossless),  # two MPRAGE slices, RLE by dcmtk
    ],
    ids=["explicit", "implicit", "rle"],
)
def test_each_plain_slice_is_kept_with_its_slice_header_and_pixel_data_offset(
    tmp_path: Path, files: list[Path], options: tuple[str, ...], syntax: str
) -> None:
    files = list(files)
    if not files:
        for source in sorted(MPRAGE.glob("*.dcm"))[:2]:
            files.append(tmp_path / source.name)
            subprocess.run(["/usr/bin/dcmcrle", "+e", str(source), str(files[-1])], check=True)
    with RunningSCP(tmp_path / "data") as scp:
        sent = storescu(scp.settings.node.port, files, options=options)
        assert sent.stderr.count("Received Store Response (Success)") == len(files), sent.stderr
        with scp.index.session() as session:
            instances = session.query(Instance).all()
    assert len(instances) == len(files)
    for instance in instances:
        assert instance.transfer_syntax_uid == syntax
        if syntax == RLELossless:  # compressed: no record, the worker reads the file whole
            assert instance.slice_header is None and instance.pixel_data_at is None
            continue
        assert instance.slice_header is not None and instance.pixel_data_at is not None
        with Path(instance.path).open("rb") as stored:
            stored.seek(instance.pixel_data_at)
            assert stored.read(4) == PIXEL_DATA_TAG
        header = decode_slice_header(SliceRecord(instance.slice_header, syntax, instance.pixel_data_at))
        assert header.SOPInstanceUID == instance.sop_uid
        assert len(header.ImagePositionPatient) == 3 and int(header.Rows) > 0
        assert not any(element.tag.is_private for element in header)
        assert not {"PatientName", "PatientID", "PatientBirthDate", "AccessionNumber"} & set(header.dir())
        if syntax == ExplicitVRLittleEndian:  # the MPRAGE's value map, left unparsed until asked for
            kept = decode_slice_header(SliceRecord(instance.slice_header, syntax, instance.pixel_data_at))
            assert isinstance(kept.get_item(VALUE_MAP), RawDataElement)  # (iterating parses it)
            stored = pydicom.dcmread(instance.path, stop_before_pixels=True)
            assert kept.RealWorldValueMappingSequence == stored.RealWorldValueMappingSequence
