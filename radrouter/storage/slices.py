"""What the index keeps of each received slice for the pipelines: its slice header and where its
Pixel Data lies in the stored file.

The SCP parses every header up to the pixel data anyway (``router.receive.header``). Keeping the few
attributes that differ from slice to slice, or that the volume and the results read on each slice
(geometry, rescale, window, UIDs), lets a worker build a 170-slice volume without walking 170 full
headers again, two thirds of an MPRAGE's being vendor-private groups: it reads the first instance
whole and, of the others, their slice headers from the index and their pixel values from the file.

A slice header holds no patient data (the index holds none): the results copy patient and study
attributes from the first instance, read from its file.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass
from io import BytesIO

from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filereader import read_dataset
from pydicom.filewriter import write_dataset
from pydicom.tag import Tag
from pydicom.uid import UID, ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pydicom.valuerep import VR

from radrouter.storage.index import Instance

log = logging.getLogger(__name__)

#: What the pipelines read from each slice but the first: the volume's geometry, pixel format and
#: rescale; the references the SEG, SR and key images make to it; the window and laterality a key
#: image is drawn with.
SLICE_TAGS = frozenset(
    Tag(keyword)
    for keyword in (
        "SpecificCharacterSet",
        "ImageType",
        "SOPClassUID",
        "SOPInstanceUID",
        "Modality",
        "Laterality",
        "SliceThickness",
        "SpacingBetweenSlices",
        "StudyInstanceUID",
        "SeriesInstanceUID",
        "SeriesNumber",
        "InstanceNumber",
        "ImagePositionPatient",
        "ImageOrientationPatient",
        "FrameOfReferenceUID",
        "ImageLaterality",
        "SliceLocation",
        "SamplesPerPixel",
        "PhotometricInterpretation",
        "NumberOfFrames",
        "Rows",
        "Columns",
        "PixelSpacing",
        "BitsAllocated",
        "BitsStored",
        "HighBit",
        "PixelRepresentation",
        "WindowCenter",
        "WindowWidth",
        "VOILUTFunction",
        "RescaleIntercept",
        "RescaleSlope",
        "RescaleType",
        "ModalityLUTSequence",
        "RealWorldValueMappingSequence",
        "PresentationLUTShape",
        "SharedFunctionalGroupsSequence",
        "PerFrameFunctionalGroupsSequence",
    )
)


#: The syntaxes whose pixel values a worker reads as they lie in the file; the others take the full path.
PLAIN_SYNTAXES = frozenset({ExplicitVRLittleEndian, ImplicitVRLittleEndian})


@dataclass(frozen=True)
class SliceRecord:
    """One instance as the index keeps it for a worker: its slice header, encoded in the syntax it was
    received in, and the offset of its Pixel Data element in the stored file (None: not known)."""

    header: bytes
    transfer_syntax_uid: str
    pixel_data_at: int | None

    @classmethod
    def of_instance(cls, instance: Instance) -> SliceRecord | None:
        """The record an instance's index row holds; None where it holds none."""
        if instance.slice_header is None or instance.pixel_data_at is None:
            return None
        return cls(instance.slice_header, instance.transfer_syntax_uid, instance.pixel_data_at)


def slice_record(header: Dataset, transfer_syntax: UID, pixel_data_at: int | None) -> SliceRecord | None:
    """What the index keeps of a received slice whose pixel values a worker can read in place: an
    uncompressed single-frame image whose Pixel Data element starts at ``pixel_data_at``; None for
    anything else (another syntax, a header encoded otherwise than its syntax says, no geometry)."""
    if pixel_data_at is None or transfer_syntax not in PLAIN_SYNTAXES or "ImagePositionPatient" not in header:
        return None
    if header.original_encoding != (transfer_syntax.is_implicit_VR, transfer_syntax.is_little_endian):
        return None
    try:
        encoded = encode_slice_header(header, transfer_syntax)
    except Exception:  # a value pydicom cannot write back: the worker reads this slice from its file
        log.debug("no slice header kept for %s", header.get("SOPInstanceUID"), exc_info=True)
        return None
    return SliceRecord(encoded, str(transfer_syntax), pixel_data_at)


def encode_slice_header(header: Dataset, transfer_syntax: UID) -> bytes:
    """The :data:`SLICE_TAGS` of a received header, as the sender encoded them (values not decoded)."""
    kept = Dataset()
    for tag in SLICE_TAGS.intersection(header.keys()):
        element = header.get_item(tag)
        if isinstance(element, DataElement) and element.VR == VR.SQ and element.is_undefined_length:
            # With its length, a sequence is read back unparsed until asked for (a Philips value map
            # on each of 170 slices is then parsed once); of undefined length, pydicom parses it whole.
            element = copy.copy(element)
            element.is_undefined_length = False
        kept[tag] = element
    implicit, little = transfer_syntax.is_implicit_VR, transfer_syntax.is_little_endian
    buffer = DicomBytesIO()
    buffer.is_implicit_VR, buffer.is_little_endian = implicit, little
    # Encoded as read: pydicom writes each raw value's bytes as they are, converting nothing.
    kept.set_original_encoding(implicit, little, header.original_character_set)
    write_dataset(buffer, kept)
    return buffer.getvalue()


def decode_slice_header(record: SliceRecord) -> Dataset:
    """The slice header back as a data set."""
    syntax = UID(record.transfer_syntax_uid)
    return read_dataset(BytesIO(record.header), syntax.is_implicit_VR, syntax.is_little_endian)
