"""De-identified copies of what a delivery sends to an external destination.

The stored files stay as received; only the copies, in a scratch folder, are sent."""

from __future__ import annotations

from pathlib import Path

import pydicom

from radrouter.config.deidentification import Deidentification
from radrouter.deid.mapping import record_pseudonyms
from radrouter.deid.profile import IssuedPseudonym, deidentify
from radrouter.router.deliver.scu import OutgoingObject
from radrouter.storage.index import Index


def _copy(source: Path, options: Deidentification, target: Path, issued: list[IssuedPseudonym]) -> Path:
    dataset = pydicom.dcmread(source)
    issued += deidentify(dataset, options)
    dataset.save_as(target, enforce_file_format=True)
    return target


def deidentified_copies(
    objects: list[OutgoingObject], options: Deidentification, folder: Path, index: Index
) -> list[OutgoingObject]:
    """Write de-identified copies of ``objects`` under ``folder`` and record the pseudonyms issued
    before anything is sent, so whatever comes back can be re-identified."""
    issued: list[IssuedPseudonym] = []
    copies = [
        OutgoingObject(
            _copy(o.path, options, folder / f"{i}.dcm", issued),
            _copy(o.fallback_path, options, folder / f"{i}-fallback.dcm", issued)
            if o.fallback_path
            else None,
            follows=o.follows,  # only its encoding is read, which de-identification keeps
        )
        for i, o in enumerate(objects)
    ]
    record_pseudonyms(index, issued)
    return copies
