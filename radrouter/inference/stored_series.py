"""A stored series read once: public headers without pixel data, and plain pixel data straight into numpy.

The full path (:func:`~radrouter.inference.volume.read_series`, then highdicom decoding each slice)
parses every header twice over, private groups included, and decodes 170 slices through pydicom's
pixel handlers. Here each file is opened once: the first instance's public attributes name the tags
read from every slice (a vendor's private groups, most of an MPRAGE header, are skipped; the
sanitiser, the SEG and the SR use public attributes only), and the Pixel Data value of an
uncompressed little endian slice is read as it lies in the file. Anything else (compressed or big
endian syntaxes, multi-frame instances, colour, LUTs, an inverted presentation) has no fast volume:
the caller takes the full path, which handles it or refuses it with its reason.

Where the index has each slice's record (``storage.slices``: kept by the SCP, which parsed the header
as it arrived), only the first file's header is parsed: the other slices are their slice headers
from the index and their pixel values read where the record says they lie in the file.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import highdicom as hd
import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.tag import BaseTag
from pydicom.uid import UID, ImplicitVRLittleEndian

from radrouter.inference.volume import check_series, load_volume, read_series
from radrouter.storage.slices import PLAIN_SYNTAXES, SLICE_TAGS, SliceRecord, decode_slice_header

_PIXEL_DATA = 0x7FE00010
_INTEGER_TYPES = {(8, 0): np.uint8, (8, 1): np.int8, (16, 0): np.uint16, (16, 1): np.int16}
#: Pixel transforms this path does not apply: a modality LUT, or per-frame functional groups.
_TRANSFORMS_ELSEWHERE = (
    "ModalityLUTSequence",
    "PerFrameFunctionalGroupsSequence",
    "SharedFunctionalGroupsSequence",
)


@dataclass(frozen=True)
class StoredSeries:
    """A series' headers (public attributes, no pixel data) and, per slice, its stored pixel values
    (None where the slice is not plain uncompressed data)."""

    paths: list[Path]
    headers: list[Dataset]
    pixels: list[np.ndarray | None]


def read_stored_series(
    paths: Sequence[str | Path], slices: Sequence[SliceRecord | None] | None = None
) -> StoredSeries:
    """Open each file once: its headers (the first instance's public tags) and its plain pixel values.

    With ``slices`` (the index's records, one per path or None), the first instance is still read
    whole, but a slice with a record is its slice header and its pixel values read where the record
    says they lie; a slice whose Pixel Data is not there after all is read from its file."""
    files = [Path(path) for path in paths]
    records = list(slices) if slices is not None else [None] * len(files)
    headers: list[Dataset] = []
    pixels: list[np.ndarray | None] = []
    wanted: list[BaseTag] | None = None
    for path, record in zip(files, records, strict=True):
        if wanted is not None and record is not None and record.pixel_data_at is not None:
            header = decode_slice_header(record)
            with path.open("rb") as handle:
                handle.seek(record.pixel_data_at)
                values = _plain_pixels(handle, header, UID(record.transfer_syntax_uid))
            if values is not None:
                headers.append(header)
                pixels.append(values)
                continue
        with path.open("rb") as handle:
            dataset = pydicom.dcmread(handle, stop_before_pixels=True, specific_tags=wanted)
            if wanted is None:
                public = {element.tag for element in dataset if not element.tag.is_private}
                wanted = sorted(public | SLICE_TAGS)
                # The first instance was read whole: keep only what every other slice keeps.
                for element in [e for e in dataset if e.tag.is_private]:
                    del dataset[element.tag]
            meta = getattr(dataset, "file_meta", None)
            syntax = meta.get("TransferSyntaxUID") if meta is not None else None
            pixels.append(_plain_pixels(handle, dataset, syntax))
        headers.append(dataset)
    return StoredSeries(files, headers, pixels)


def _plain_pixels(handle: BinaryIO, dataset: Dataset, syntax: UID | None) -> np.ndarray | None:
    """The slice's stored values, read from where ``handle`` is (the Pixel Data element), if plain."""
    if syntax not in PLAIN_SYNTAXES or not _plain_image(dataset):
        return None
    dtype = np.dtype(_INTEGER_TYPES[(int(dataset.BitsAllocated), int(dataset.PixelRepresentation))])
    header = handle.read(8)
    if len(header) < 8:
        return None
    group, element = struct.unpack("<HH", header[:4])
    if (group << 16) | element != _PIXEL_DATA:
        return None
    if syntax == ImplicitVRLittleEndian:
        (length,) = struct.unpack("<I", header[4:])
    else:
        if header[4:6] not in (b"OB", b"OW"):
            return None
        (length,) = struct.unpack("<I", handle.read(4))
    expected = int(dataset.Rows) * int(dataset.Columns) * dtype.itemsize
    if length not in (expected, expected + 1):  # an odd 8-bit value is padded to even length
        return None
    values = np.frombuffer(handle.read(expected), dtype=dtype.newbyteorder("<"))
    if values.size * dtype.itemsize != expected:
        return None
    return values.reshape(int(dataset.Rows), int(dataset.Columns))


def _plain_image(dataset: Dataset) -> bool:
    """A single-frame greyscale slice of whole integers whose only pixel transform is a linear one.

    Unused high bits (Bits Stored < Bits Allocated) stay as stored, as pydicom leaves them by default.
    """
    try:
        bits, signed = int(dataset.BitsAllocated), int(dataset.PixelRepresentation)
        samples = int(dataset.get("SamplesPerPixel", 1))
    except (AttributeError, TypeError, ValueError):
        return False
    return (
        (bits, signed) in _INTEGER_TYPES
        and "NumberOfFrames" not in dataset  # a multi-frame SOP class, even with one frame
        and samples == 1
        and dataset.get("PhotometricInterpretation") == "MONOCHROME2"
        and dataset.get("PresentationLUTShape", "IDENTITY") == "IDENTITY"
        and not any(keyword in dataset for keyword in _TRANSFORMS_ELSEWHERE)
    )


def _linear_map(dataset: Dataset, values: np.ndarray) -> tuple[float, float] | None:
    """The slope and intercept highdicom applies (a linear real-world value map first, else the
    modality rescale); None for a LUT or for values outside the map's range (the full path decides)."""
    maps = dataset.get("RealWorldValueMappingSequence")
    if maps:
        item = maps[0]
        if "RealWorldValueLUTData" in item:
            return None
        if "DoubleFloatRealWorldValueFirstValueMapped" in item:
            low = item.DoubleFloatRealWorldValueFirstValueMapped
            high = item.DoubleFloatRealWorldValueLastValueMapped
        else:
            low, high = item.RealWorldValueFirstValueMapped, item.RealWorldValueLastValueMapped
        if values.min() < low or values.max() > high:
            return None
        return float(item.RealWorldValueSlope), float(item.RealWorldValueIntercept)
    slope, intercept = dataset.get("RescaleSlope"), dataset.get("RescaleIntercept")
    if slope or intercept:
        return float(slope or 1.0), float(intercept or 0.0)
    return 1.0, 0.0


def _same(headers: Sequence[Dataset], keyword: str) -> bool:
    first = headers[0].get(keyword)
    return first is not None and all(ds.get(keyword) == first for ds in headers)


def stored_volume(series: StoredSeries) -> hd.Volume | None:
    """The series as highdicom's ``get_volume_from_series(dtype=float32)`` builds it, from the pixel
    values read with the headers; None where a slice is not plain (the caller takes the full path)."""
    headers = series.headers
    if not headers or any(values is None for values in series.pixels):
        return None
    if not all(
        _same(headers, keyword)
        for keyword in (
            "SeriesInstanceUID",
            "FrameOfReferenceUID",
            "ImageOrientationPatient",
            "PixelSpacing",
            "Rows",
            "Columns",
        )
    ) or any("ImagePositionPatient" not in ds for ds in headers):
        return None
    if len(headers) == 1:
        spacing, order = headers[0].get("SpacingBetweenSlices", 1.0), [0]
    else:
        # What get_series_volume_positions does after checking each dataset's SOP class against its
        # IOD for multi-frame (1 ms a slice; these have no Number of Frames, checked above).
        spacing, positions = hd.spatial.get_volume_positions(
            image_positions=[ds.ImagePositionPatient for ds in headers],
            image_orientation=headers[0].ImageOrientationPatient,
        )
        if spacing is None or positions is None:
            return None
        order = [positions.index(i) for i in range(len(headers))]
    frames = []
    for index in order:
        values = series.pixels[index]
        assert values is not None
        linear = _linear_map(headers[index], values)
        if linear is None:
            return None
        slope, intercept = (np.float32(v) for v in linear)
        frame = values
        if (float(slope), float(intercept)) != (1.0, 0.0):
            if slope != 1.0:
                frame = frame * slope
            if intercept != 0.0:
                frame = frame + intercept
        frames.append(frame.astype(np.float32, copy=False))
    first = headers[order[0]]
    return hd.Volume.from_attributes(
        array=np.stack(frames),
        frame_of_reference_uid=first.FrameOfReferenceUID,
        image_position=first.ImagePositionPatient,
        image_orientation=headers[0].ImageOrientationPatient,
        pixel_spacing=headers[0].PixelSpacing,
        spacing_between_slices=spacing,
        coordinate_system=hd.CoordinateSystemNames.PATIENT,
    )


def load_series(series: StoredSeries) -> tuple[list[Dataset], hd.Volume]:
    """The datasets the results are built from, and the volume: from the headers and pixel values
    read once where the series is plain, else by the full path (every file read whole again)."""
    if check_series(series.headers) is None:
        volume = stored_volume(series)
        if volume is not None:
            return series.headers, volume
    datasets = read_series(series.paths)
    return datasets, load_volume(datasets)
