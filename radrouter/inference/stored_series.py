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
from the index and their pixel values read where the record says they lie in the file. What each
slice's pixel format and value map are is worked out once per distinct encoding (:class:`ReadOnce`):
a series' slices mostly share theirs, so 170 slices cost about one.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Generic, TypeVar

import highdicom as hd
import numpy as np
import pydicom
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.tag import BaseTag, Tag
from pydicom.uid import UID, ImplicitVRLittleEndian

from radrouter.inference.volume import check_series, load_volume, read_series
from radrouter.storage.slices import PLAIN_SYNTAXES, SLICE_TAGS, SliceRecord, decode_slice_header

T = TypeVar("T")
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
    formats = ReadOnce(_FORMAT_TAGS, _pixel_format)
    for path, record in zip(files, records, strict=True):
        if wanted is not None and record is not None and record.pixel_data_at is not None:
            header = decode_slice_header(record)
            with path.open("rb") as handle:
                handle.seek(record.pixel_data_at)
                values = _plain_pixels(handle, header, UID(record.transfer_syntax_uid), formats)
            if values is not None:
                headers.append(header)
                pixels.append(values)
                continue
        with path.open("rb") as handle:
            dataset = pydicom.dcmread(handle, stop_before_pixels=True, specific_tags=wanted)
            if wanted is None:
                # Its tags, not its elements: iterating a data set converts every value, private too.
                tags = list(dataset.keys())
                private = [tag for tag in tags if tag.is_private]
                wanted = sorted(set(tags).difference(private) | SLICE_TAGS)
                # The first instance was read whole: keep only what every other slice keeps.
                for tag in private:
                    del dataset[tag]
            meta = getattr(dataset, "file_meta", None)
            syntax = meta.get("TransferSyntaxUID") if meta is not None else None
            pixels.append(_plain_pixels(handle, dataset, syntax, formats))
        headers.append(dataset)
    return StoredSeries(files, headers, pixels)


def _plain_pixels(
    handle: BinaryIO, dataset: Dataset, syntax: UID | None, formats: ReadOnce[PixelFormat | None]
) -> np.ndarray | None:
    """The slice's stored values, read from where ``handle`` is (the Pixel Data element), if plain."""
    found = formats.of(dataset) if syntax in PLAIN_SYNTAXES else None
    if found is None:
        return None
    dtype, rows, columns = found
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
    expected = rows * columns * dtype.itemsize
    if length not in (expected, expected + 1):  # an odd 8-bit value is padded to even length
        return None
    values = np.frombuffer(handle.read(expected), dtype=dtype.newbyteorder("<"))
    if values.size * dtype.itemsize != expected:
        return None
    return values.reshape(rows, columns)


#: A plain slice's pixel format: its integer type, rows and columns.
PixelFormat = tuple[np.dtype[Any], int, int]
#: What :func:`_pixel_format` reads.
_FORMAT_TAGS = tuple(
    Tag(keyword)
    for keyword in (
        "BitsAllocated",
        "PixelRepresentation",
        "SamplesPerPixel",
        "NumberOfFrames",
        "PhotometricInterpretation",
        "PresentationLUTShape",
        "Rows",
        "Columns",
        *_TRANSFORMS_ELSEWHERE,
    )
)


def _pixel_format(dataset: Dataset) -> PixelFormat | None:
    """The format of a single-frame greyscale slice of whole integers whose only pixel transform is
    a linear one; None for any other.

    Unused high bits (Bits Stored < Bits Allocated) stay as stored, as pydicom leaves them by default.
    """
    try:
        bits, signed = int(dataset.BitsAllocated), int(dataset.PixelRepresentation)
        samples = int(dataset.get("SamplesPerPixel", 1))
        rows, columns = int(dataset.Rows), int(dataset.Columns)
    except (AttributeError, TypeError, ValueError):
        return None
    plain = (
        (bits, signed) in _INTEGER_TYPES
        and "NumberOfFrames" not in dataset  # a multi-frame SOP class, even with one frame
        and samples == 1
        and dataset.get("PhotometricInterpretation") == "MONOCHROME2"
        and dataset.get("PresentationLUTShape", "IDENTITY") == "IDENTITY"
        and not any(keyword in dataset for keyword in _TRANSFORMS_ELSEWHERE)
    )
    return (np.dtype(_INTEGER_TYPES[(bits, signed)]), rows, columns) if plain else None


#: What the value map of a slice is read from: its real-world value map, else its modality rescale.
_VALUE_MAP_TAGS = (
    Tag("RealWorldValueMappingSequence"),
    Tag("RescaleSlope"),
    Tag("RescaleIntercept"),
)
#: A linear map: slope, intercept and the stored values it covers (None: any value).
LinearMap = tuple[float, float, float | None, float | None]


def _value_map(dataset: Dataset) -> LinearMap | None:
    """The slope and intercept highdicom applies (a linear real-world value map first, else the
    modality rescale), with the range of stored values a value map covers; None for a LUT."""
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
        return float(item.RealWorldValueSlope), float(item.RealWorldValueIntercept), float(low), float(high)
    slope, intercept = dataset.get("RescaleSlope"), dataset.get("RescaleIntercept")
    if slope or intercept:
        return float(slope or 1.0), float(intercept or 0.0), None, None
    return 1.0, 0.0, None, None


def _raw_key(dataset: Dataset, tags: Sequence[BaseTag]) -> tuple[object, ...] | None:
    """The bytes of ``tags`` as read (absent: None), with the data set's encoding; None once pydicom
    has converted one of them (the caller then reads the values)."""
    key: list[object] = [dataset.original_encoding]
    for tag in tags:
        item = dataset.get_item(tag)
        if item is not None and not (isinstance(item, RawDataElement) and isinstance(item.value, bytes)):
            return None
        key.append(None if item is None else item.value)
    return tuple(key)


class ReadOnce(Generic[T]):
    """What ``read`` makes of a slice, once per distinct encoding of the ``tags`` it reads: a series'
    slices mostly share their pixel format and value map, and pydicom converts each slice's anew (a
    Philips real-world value map is a sequence, parsed item by item)."""

    def __init__(self, tags: Sequence[BaseTag], read: Callable[[Dataset], T]) -> None:
        self.tags, self.read = tags, read
        self._known: dict[tuple[object, ...], T] = {}

    def of(self, dataset: Dataset) -> T:
        """``read(dataset)``, or what it gave for a slice encoding the same tags alike."""
        key = _raw_key(dataset, self.tags)
        if key is None:
            return self.read(dataset)
        if key not in self._known:
            self._known[key] = self.read(dataset)
        return self._known[key]


def _linear(found: LinearMap | None, values: np.ndarray) -> tuple[float, float] | None:
    """A slice's slope and intercept; None for a LUT or for values outside the map's range (the full
    path decides)."""
    if found is None:
        return None
    slope, intercept, low, high = found
    if low is not None and high is not None and (values.min() < low or values.max() > high):
        return None
    return slope, intercept


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
    maps = ReadOnce(_VALUE_MAP_TAGS, _value_map)
    array = np.empty((len(order), int(headers[0].Rows), int(headers[0].Columns)), np.float32)
    for plane, index in zip(array, order, strict=True):
        values = series.pixels[index]
        assert values is not None
        linear = _linear(maps.of(headers[index]), values)
        if linear is None:
            return None
        # In float32, as highdicom computes it: stored value x slope, then + intercept.
        slope, intercept = (np.float32(v) for v in linear)
        if slope != 1.0:
            np.multiply(values, slope, out=plane)
        else:
            plane[...] = values
        if intercept != 0.0:
            plane += intercept
    first = headers[order[0]]
    return hd.Volume.from_attributes(
        array=array,
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
