"""Instance files on disk: ``<root>/instances/<study>/<series>/<sop>.dcm``, written atomically.

UIDs come from the network, so they are validated before they become path components: a UID is
digits and dots only, at most 64 characters (PS3.5 9.1), which also rules out ``..`` and ``/``.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import tempfile
import uuid
from pathlib import Path

_UID = re.compile(r"[0-9]+(\.[0-9]+)*")


class InvalidUID(ValueError):
    """A UID that is not a valid DICOM UID and must not become a path."""


def validate_uid(uid: str, what: str = "UID") -> str:
    """Return ``uid`` stripped of DICOM padding, or raise :class:`InvalidUID`."""
    cleaned = uid.rstrip("\x00 ")
    if len(cleaned) > 64 or not _UID.fullmatch(cleaned):
        raise InvalidUID(f"{what} {cleaned[:80]!r} is not a valid DICOM UID")
    return cleaned


def write_atomically(path: Path, data: bytes, fsync: bool = True) -> None:
    """Write ``data`` to ``path`` so that readers see either nothing or the whole file.

    A temporary file in the same folder is written (and fsynced), then renamed over ``path``; the
    folder is fsynced too so the rename itself survives a power cut.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=".incoming-", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            if fsync:
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    if fsync:
        _fsync_folder(path.parent)


def place_atomically(path: Path, source: Path, fsync: bool = True) -> None:
    """Put the file ``source`` at ``path`` as :func:`write_atomically` writes bytes, without reading it
    into memory: a hard link where both are on one file system (nothing copied), else a streamed copy."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".incoming-{uuid.uuid4().hex}.part"
    try:
        try:
            os.link(source, tmp)
        except OSError as error:
            if error.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK):
                raise
            shutil.copyfile(source, tmp)
        if fsync:
            fd = os.open(tmp, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if fsync:
        _fsync_folder(path.parent)


def _fsync_folder(folder: Path) -> None:
    dir_fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


class InstanceStore:
    """Received instances, byte-for-byte as they arrived, and the results written for them."""

    def __init__(self, root: Path, fsync: bool = True) -> None:
        self.root = root.resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self.fsync = fsync

    def instance_path(self, study_uid: str, series_uid: str, sop_uid: str) -> Path:
        parts = (
            validate_uid(study_uid, "StudyInstanceUID"),
            validate_uid(series_uid, "SeriesInstanceUID"),
            validate_uid(sop_uid, "SOPInstanceUID") + ".dcm",
        )
        return self.root.joinpath("instances", *parts)

    def result_path(self, study_uid: str, sop_uid: str) -> Path:
        return self.root.joinpath(
            "results",
            validate_uid(study_uid, "StudyInstanceUID"),
            validate_uid(sop_uid, "SOPInstanceUID") + ".dcm",
        )

    def resolve(self, recorded: str) -> Path:
        """A path from the index: absolute, or relative to this root (a result from a remote worker)."""
        return self.root / recorded

    def free_bytes(self) -> int:
        """Free space on the storage root's file system."""
        return shutil.disk_usage(self.root).free

    def write(self, path: Path, data: bytes) -> None:
        if not path.resolve().is_relative_to(self.root):
            raise InvalidUID(f"{path} is outside the storage root")
        write_atomically(path, data, self.fsync)

    def place(self, path: Path, source: Path) -> None:
        """Store the file ``source`` (received to disk) at ``path``."""
        if not path.resolve().is_relative_to(self.root):
            raise InvalidUID(f"{path} is outside the storage root")
        place_atomically(path, source, self.fsync)
