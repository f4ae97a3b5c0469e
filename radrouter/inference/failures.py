"""A failed job's reason in words a PACS admin can act on, never a bare exception class.

Each stage of a job (reading the series, the model, the SEG, the SR, storing) runs inside
:func:`stage`, which turns whatever escapes it into :class:`JobFailed` with a sentence such as
"the SEG could not be written: FrameOfReferenceUID is missing in series 3". The traceback goes to
the log at DEBUG, with the study UID.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

from pydicom.dataset import Dataset

#: The number of characters of a reason the index keeps.
REASON_LENGTH = 1000

_NO_ATTRIBUTE = re.compile(r"has no attribute '(\w+)'")


class JobFailed(RuntimeError):
    """A job that cannot give results; the message is the reason the API and the dashboard show."""


def _message(error: BaseException) -> str:
    """The message on one line: its first line, and its last where they differ (TorchScript and other
    wrappers put the cause last, after a traceback of their own)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    if len(lines) > 1:
        return f"{lines[0]} … {lines[-1]}"
    return lines[0] if lines else ""


def in_words(error: BaseException) -> str:
    """What went wrong, as a clause: the missing attribute, the exhausted resource, or the message."""
    message = _message(error)
    if isinstance(error, JobFailed):
        return message
    if isinstance(error, AttributeError) and (match := _NO_ATTRIBUTE.search(message)):
        return f"{match.group(1)} is missing"
    if isinstance(error, KeyError):
        return f"{message.strip(chr(39))} is missing" if message else "an attribute is missing"
    if isinstance(error, MemoryError) or type(error).__name__ == "OutOfMemoryError":
        return "the worker ran out of memory"
    if isinstance(error, FileNotFoundError):
        return f"a stored file is missing ({error.filename})"
    if isinstance(error, UnicodeError):
        return "text could not be encoded or decoded in the declared character set"
    if message:
        return message
    return f"an unexpected {re.sub(r'(?<!^)(?=[A-Z])', ' ', type(error).__name__).lower()}"


def series_name(datasets: list[Dataset]) -> str:
    """How the reason names the series: its number, as PACS shows it, else its UID."""
    if not datasets:
        return "the series"
    try:
        number = datasets[0].get("SeriesNumber", None)
    except (TypeError, ValueError):
        number = None
    if number not in (None, ""):
        return f"series {number}"
    return f"series {datasets[0].get('SeriesInstanceUID', '')}".rstrip()


@contextmanager
def stage(what: str, where: str = "") -> Iterator[None]:
    """Run a stage of a job; anything that escapes becomes ``JobFailed("<what>: <why> in <where>")``."""
    try:
        yield
    except JobFailed:
        raise
    except Exception as error:
        place = f" in {where}" if where else ""
        raise JobFailed(f"{what}: {in_words(error)}{place}"[:REASON_LENGTH]) from error
