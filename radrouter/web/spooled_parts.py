"""A multipart/related request body written part by part to files as it arrives, never whole into
memory (python-multipart's streaming parser), and refused past a size limit with nothing kept.

STOW-RS bodies carry whole instances (a SEG can be hundreds of MB): read into memory and parsed
there, a 200 MB body took the web process from 0.5 to 2.8 GB.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import BinaryIO

from fastapi import HTTPException
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header


class TooLarge(Exception):
    """The body is larger than the limit."""


async def spool_parts(
    content_type: str, declared_length: int | None, body: AsyncIterator[bytes], folder: Path, limit: int
) -> list[Path]:
    """Write each part of the body to a file in ``folder``; the files in order.

    Raises HTTP 415 for a body that is not multipart/related, 400 for one without a boundary or that
    does not parse, and :class:`TooLarge` as soon as the body (or its declared length) passes ``limit``.
    """
    media_type, options = parse_options_header(content_type)
    if media_type != b"multipart/related":
        expected = 'multipart/related; type="application/dicom"'
        raise HTTPException(415, f"STOW-RS takes {expected}, not {content_type}")
    boundary = options.get(b"boundary")
    if not boundary:
        raise HTTPException(400, "the multipart body has no boundary")
    if declared_length is not None and declared_length > limit:
        raise TooLarge
    parts: list[Path] = []
    current: list[BinaryIO] = []

    def begin() -> None:
        parts.append(folder / f"part-{len(parts):05d}.dcm")
        current.append(parts[-1].open("wb"))

    def data(chunk: bytes, start: int, end: int) -> None:
        current[-1].write(chunk[start:end])

    def end() -> None:
        current.pop().close()

    parser = MultipartParser(boundary, {"on_part_begin": begin, "on_part_data": data, "on_part_end": end})
    received = 0
    try:
        async for chunk in body:
            received += len(chunk)
            if received > limit:
                raise TooLarge
            parser.write(chunk)
        parser.finalize()
    except MultipartParseError as error:
        raise HTTPException(400, f"the multipart body does not parse: {error}") from error
    finally:
        for handle in current:
            handle.close()
    if not parts:
        raise HTTPException(400, "the multipart body has no parts (boundary missing or wrong)")
    return parts
