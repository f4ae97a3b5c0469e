"""Does a received data set hold every byte its elements declare? Read from the raw bytes.

The SCP stores instances as received and decodes only the header; a data set cut short (a Pixel
Data declaring 2 GiB of which 0.5 MB arrived) reads as a valid header all the same, and was stored
as a file no reader can open. This walks every element's header, items and delimiters included,
and skips each value by its declared length: tens of microseconds, whatever the pixel data's size.
"""

from __future__ import annotations

import mmap
import struct

#: Explicit VRs with a 2-byte reserved field and a 4-byte length (PS3.5 7.1.2).
_LONG_VRS = frozenset(
    {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}
)
_UNDEFINED = 0xFFFFFFFF
_ITEM, _ITEM_END, _SEQUENCE_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD


class Truncated(ValueError):
    """The data set ends before an element, item or sequence it began."""


def check_lengths(data: bytes | mmap.mmap, implicit_vr: bool, little_endian: bool, start: int = 0) -> None:
    """Raise :class:`Truncated` unless the data set that begins at ``start`` ends exactly where ``data``
    does (``data`` may map a file: only element headers are read)."""
    _Walk(data, little_endian).elements(start, implicit_vr, until=None)


class _Walk:
    def __init__(self, data: bytes | mmap.mmap, little_endian: bool) -> None:
        self.data = data
        self.tag = struct.Struct("<HH" if little_endian else ">HH").unpack_from
        self.u32 = struct.Struct("<I" if little_endian else ">I").unpack_from
        self.u16 = struct.Struct("<H" if little_endian else ">H").unpack_from

    def elements(self, offset: int, implicit_vr: bool, until: int | None) -> int:
        """Walk elements from ``offset`` to the end of the data (``until`` None) or past ``until``."""
        data, end = self.data, len(self.data)
        while offset < end:
            if offset + 8 > end:
                raise Truncated(f"an element header cut at byte {offset}")
            group, element = self.tag(data, offset)
            if group << 16 | element == until:
                return offset + 8
            nested_implicit = implicit_vr
            if implicit_vr or group == 0xFFFE:
                (length,) = self.u32(data, offset + 4)
                offset += 8
            else:
                vr = data[offset + 4 : offset + 6]
                if vr in _LONG_VRS:
                    if offset + 12 > end:
                        raise Truncated(f"an element header cut at byte {offset}")
                    (length,) = self.u32(data, offset + 8)
                    offset += 12
                    nested_implicit = vr == b"UN"  # UN of undefined length: an implicit VR sequence
                else:
                    (length,) = self.u16(data, offset + 6)
                    offset += 8
            if length == _UNDEFINED:
                offset = self.items(offset, nested_implicit)
            elif offset + length > end:
                raise Truncated(
                    f"({group:04X},{element:04X}) declares {length} bytes, {end - offset} were received"
                )
            else:
                offset += length
        if until is not None:
            raise Truncated("an item without its delimiter")
        return offset

    def items(self, offset: int, implicit_vr: bool) -> int:
        """Walk a sequence's (or encapsulated pixel data's) items, past its delimiter."""
        data, end = self.data, len(self.data)
        while True:
            if offset + 8 > end:
                raise Truncated("a sequence without its delimiter")
            group, element = self.tag(data, offset)
            (length,) = self.u32(data, offset + 4)
            tag = group << 16 | element
            offset += 8
            if tag == _SEQUENCE_END:
                return offset
            if tag != _ITEM:
                raise Truncated(f"({group:04X},{element:04X}) where a sequence item belongs")
            if length == _UNDEFINED:
                offset = self.elements(offset, implicit_vr, until=_ITEM_END)
            elif offset + length > end:
                raise Truncated(f"an item declares {length} bytes, {end - offset} were received")
            else:
                offset += length
