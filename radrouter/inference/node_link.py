"""How a worker reaches its node's series and hands results back: shared storage or DICOMweb.

``shared`` (the default, and docker-compose's): the worker mounts the node's storage root at the same
path, reads instances where the SCP wrote them and writes results beside them. ``dicomweb``: a worker
on a machine without that mount fetches each series by WADO-RS into its own storage root (the local
cache: a series already there is not fetched again) and returns its results by STOW-RS, so the node
delivers, audits and triages them as if they were computed there.
"""

from __future__ import annotations

from io import BytesIO
from pathlib import Path

import pydicom
from dicomweb_client.api import DICOMwebClient
from pydicom.dataset import Dataset

from radrouter.config.settings import SeriesAccess, Settings
from radrouter.storage.store import InstanceStore


class ResultsNotReturned(RuntimeError):
    """The node refused or failed to store some results sent back by STOW-RS."""


class SharedStorage:
    """The node's storage root is mounted here: nothing moves over the network."""

    #: The files are those the SCP stored, so the index's Pixel Data offsets hold.
    files_as_received = True

    def __init__(self, store: InstanceStore) -> None:
        self.store = store

    def series_files(self, study_uid: str, series_uid: str, recorded: dict[str, str]) -> list[Path]:
        """The instance files of a series; ``recorded`` maps SOP Instance UID to the path in the index."""
        return [Path(path) for path in recorded.values()]

    def recorded_result_path(self, path: Path) -> str:
        return str(path)

    def return_results(self, files: list[Path], credential: str | None = None) -> None:
        """Results are already where the node's delivery reads them."""


class NodeOverDicomweb:
    """A worker on another machine: series in by WADO-RS (cached), results out by STOW-RS."""

    #: The cached files are written here anew, so the index's Pixel Data offsets need not hold.
    files_as_received = False

    def __init__(self, store: InstanceStore, node_url: str, api_token: str | None = None) -> None:
        self.store = store
        self.node_url = node_url
        # The node's WADO-RS routes need its API token when one is set (web.api_token).
        headers = {"Authorization": f"Bearer {api_token}"} if api_token else None
        self.client = DICOMwebClient(url=node_url, headers=headers)

    def series_files(self, study_uid: str, series_uid: str, recorded: dict[str, str]) -> list[Path]:
        cached = {sop: self.store.instance_path(study_uid, series_uid, sop) for sop in recorded}
        if not all(path.is_file() for path in cached.values()):
            # As received: the node serves instances byte for byte, in their own transfer syntax.
            for dataset in self.client.iter_series(
                study_uid, series_uid, media_types=(("application/dicom", "*"),)
            ):
                sop = str(dataset.SOPInstanceUID)
                self.store.write(self.store.instance_path(study_uid, series_uid, sop), encode_file(dataset))
        missing = [sop for sop, path in cached.items() if not path.is_file()]
        if missing:
            raise LookupError(f"the node did not serve {len(missing)} instance(s) of series {series_uid}")
        return list(cached.values())

    def recorded_result_path(self, path: Path) -> str:
        """Relative to the storage root: the node files the object at the same place under its own root."""
        return str(path.relative_to(self.store.root))

    def return_results(self, files: list[Path], credential: str | None = None) -> None:
        """STOW-RS the result files as written, showing the job's credential (the node takes only the
        results of that job); the node answers 200 only when it stored all of them."""
        if not credential:
            raise ResultsNotReturned("the job's task carried no credential for returning its results")
        stow = DICOMwebClient(url=self.node_url, headers={"Authorization": f"Bearer {credential}"})
        response = stow.store_instances([pydicom.dcmread(path) for path in files])
        failed = response.get("FailedSOPSequence", [])
        if failed:
            raise ResultsNotReturned(f"the node refused {len(failed)} of {len(files)} result(s)")


def node_link(settings: Settings, store: InstanceStore) -> SharedStorage | NodeOverDicomweb:
    if settings.worker.series_access == SeriesAccess.DICOMWEB:
        token = settings.web.api_token.get_secret_value() if settings.web.api_token else None
        return NodeOverDicomweb(store, settings.worker.node_url, token)
    return SharedStorage(store)


def encode_file(dataset: Dataset) -> bytes:
    """A dataset as a DICOM file (preamble and file meta), as it is stored and sent."""
    buffer = BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()
