"""The SCP over the real network, with dcmtk's storescu as the modality: who may send, and bad input."""

from __future__ import annotations

import os
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pydicom
import pytest
from highdicom.legacy import LegacyConvertedEnhancedCTImage
from pydicom.filereader import read_file_meta_info
from pydicom.uid import (
    JPEG2000,
    DeflatedExplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGExtended12Bit,
    JPEGLosslessSV1,
    JPEGLSLossless,
    RLELossless,
    generate_uid,
)
from pynetdicom import AE
from pynetdicom.association import Association
from pynetdicom.sop_class import Verification

from radrouter.config.settings import CompletionSettings, RetentionSettings, Settings
from radrouter.router.assemble import StudyAssembler
from radrouter.router.receive.scp import StorageSCP
from radrouter.storage.index import Index, Instance, Series, Study
from radrouter.storage.store import InstanceStore
from tests.services import CT_HEAD, DATA, DCMSEND, ECHOSCU, MPRAGE, free_port, storescu, wait_until

ONE_SLICE = [CT_HEAD / "I10"]


class RunningSCP:
    """The SCP in this process, on the README's defaults but for these overrides, each for a reason: a
    free port and a storage root of the test's own (tests run side by side); a 0.2 s quiet period, so
    a test of what is stored and refused does not wait out the default completion; no fsync, which
    these tests do not exercise (the fault tests, on ``radrouter up`` as shipped, do)."""

    def __init__(self, root: Path, **node: Any) -> None:
        storage = node.pop("storage", {})
        self.settings = Settings(node={"port": free_port(), **node}, storage={"root": root, **storage})
        self.index = Index(self.settings.storage.resolved_index_url())
        self.completed: list[str] = []
        self.done = threading.Event()
        self.assembler = StudyAssembler(CompletionSettings(quiet_period_s=0.2), self._complete)
        self.scp = StorageSCP(self.settings, InstanceStore(root, fsync=False), self.index, self.assembler)

    def _complete(self, study_uid: str) -> None:
        self.completed.append(study_uid)
        self.done.set()

    def __enter__(self) -> RunningSCP:
        self.assembler.start()
        self.server = self.scp.serve(block=False)
        return self

    def __exit__(self, *_: object) -> None:
        self.server.shutdown()
        self.assembler.stop()
        self.index.engine.dispose()

    def instances(self) -> int:
        with self.index.session() as session:
            return len(session.query(Instance).all())


@pytest.fixture
def root(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path / "data"


def test_a_study_is_stored_indexed_and_completed(root: Path) -> None:
    with RunningSCP(root) as scp:
        sent = storescu(scp.settings.node.port, ONE_SLICE)
        assert "Received Store Response (Success)" in sent.stderr
        assert scp.done.wait(10)
        assert scp.instances() == 1
        stored = list((root / "instances").rglob("*.dcm"))
        assert [p.read_bytes()[128:132] for p in stored] == [b"DICM"]


def test_a_wrong_called_ae_is_rejected(root: Path) -> None:
    with RunningSCP(root) as scp:
        sent = storescu(scp.settings.node.port, ONE_SLICE, ae_title="SOMEONE_ELSE")
        assert sent.returncode != 0
        assert "Called AE Title Not Recognized" in sent.stderr
        assert scp.instances() == 0


def test_a_calling_ae_outside_the_allow_list_is_rejected(root: Path) -> None:
    with RunningSCP(root, allowed_calling_aes=["CT01"]) as scp:
        sent = storescu(scp.settings.node.port, ONE_SLICE)  # calls as MODALITY
        assert sent.returncode != 0
        assert "Calling AE Title Not Recognized" in sent.stderr
        assert scp.instances() == 0


def test_below_the_free_space_reserve_the_answer_is_out_of_resources(root: Path) -> None:
    with RunningSCP(root, storage={"free_space_reserve_mb": 1 << 40}) as scp:
        sent = storescu(scp.settings.node.port, ONE_SLICE)
        assert "Received Store Response (Refused: OutOfResources)" in sent.stderr
        assert scp.instances() == 0
        assert not (root / "instances").exists()  # nothing half-written
        echo = subprocess.run([ECHOSCU, "-aec", "RADROUTER", "127.0.0.1", str(scp.settings.node.port)])
        assert echo.returncode == 0, "the SCP must keep running when the disk is full"


def test_a_dataset_that_cannot_be_indexed_gets_a_failure_status(root: Path, tmp_path: Path) -> None:
    """Synthetic: the real CT slice without its Study Instance UID, which no real file lacks."""
    broken = pydicom.dcmread(ONE_SLICE[0])
    del broken.StudyInstanceUID
    path = tmp_path / "no-study-uid.dcm"
    broken.save_as(path)
    with RunningSCP(root) as scp:
        sent = storescu(scp.settings.node.port, [path])
        assert "Received Store Response (Error: CannotUnderstand)" in sent.stderr
        assert scp.instances() == 0


def test_each_series_records_who_sent_it_and_which_ae_title_it_called(root: Path) -> None:
    """Rules can route on the called AE, e.g. one AE title per pipeline on the same node."""
    with RunningSCP(root, check_called_ae=False) as scp:
        sent = storescu(scp.settings.node.port, ONE_SLICE, ae_title="TO_AI")
        assert "Received Store Response (Success)" in sent.stderr
        with scp.index.session() as session:
            series = session.query(Series).one()
            assert (series.calling_ae, series.called_ae) == ("MODALITY", "TO_AI")


def stored_files(root: Path) -> list[Path]:
    return sorted((root / "instances").rglob("*.dcm")) if (root / "instances").exists() else []


@pytest.fixture(scope="module")
def compressed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The real JPEG 2000 chest X-ray, and a real CT slice compressed by dcmtk at test time."""
    folder = tmp_path_factory.mktemp("compressed")
    files = {"jpeg2000": DATA / "cxr" / "RG1_J2KI.dcm", "deflate": ONE_SLICE[0]}
    for name, tool, option in [
        ("jpeg-lossless", "dcmcjpeg", "+e1"),
        ("jpeg-extended", "dcmcjpeg", "+ee"),
        ("jpeg-ls", "dcmcjpls", "+el"),
        ("rle", "dcmcrle", "+e"),
    ]:
        files[name] = folder / f"{name}.dcm"
        made = subprocess.run(
            [f"/usr/bin/{tool}", option, str(ONE_SLICE[0]), str(files[name])], capture_output=True
        )
        assert made.returncode == 0, made.stderr
    return files


@pytest.mark.parametrize(
    ("name", "proposal", "transfer_syntax"),
    [
        ("jpeg2000", "--propose-j2k-lossy", JPEG2000),
        ("jpeg-lossless", "--propose-lossless", JPEGLosslessSV1),
        ("jpeg-extended", "--propose-jpeg12", JPEGExtended12Bit),
        ("jpeg-ls", "--propose-jls-lossless", JPEGLSLossless),
        ("rle", "--propose-rle", RLELossless),
        ("deflate", "--propose-deflated", DeflatedExplicitVRLittleEndian),  # storescu deflates on the way
    ],
)
def test_compressed_transfer_syntaxes_are_stored_as_received(
    root: Path, compressed: dict[str, Path], name: str, proposal: str, transfer_syntax: str
) -> None:
    sent_file = pydicom.dcmread(compressed[name])
    with RunningSCP(root) as scp:
        sent = storescu(scp.settings.node.port, [compressed[name]], options=(proposal, "--required"))
        assert "Received Store Response (Success)" in sent.stderr, sent.stderr
        assert scp.done.wait(10)
        with scp.index.session() as session:
            (instance,) = session.query(Instance).all()
            assert instance.transfer_syntax_uid == transfer_syntax
    (stored,) = stored_files(root)
    received = pydicom.dcmread(stored)
    assert received.file_meta.TransferSyntaxUID == transfer_syntax
    assert received.PixelData == sent_file.PixelData  # neither decoded nor transcoded


def after_the_meta_group(path: Path) -> bytes:
    """A Part 10 file's data set as encoded: what follows the preamble, ``DICM`` and the File Meta group."""
    meta_length = int(read_file_meta_info(path).FileMetaInformationGroupLength)
    return path.read_bytes()[132 + 12 + meta_length :]


@pytest.fixture(scope="module")
def compressed_slices(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Real MR and CT slices, each its own instance: RLE, JPEG lossless and JPEG-LS by dcmtk, JPEG 2000
    by pydicom (with pylibjpeg-openjpeg). Two MR slices: one SOP class in two presentation contexts."""
    folder = tmp_path_factory.mktemp("compressed-slices")
    files = []
    for name, tool, option, source in [
        ("mr-rle", "dcmcrle", "+e", MPRAGE / "1301_0001.dcm"),
        ("ct-jpeg-lossless", "dcmcjpeg", "+e1", CT_HEAD / "I10"),
        ("mr-jpeg-ls", "dcmcjpls", "+el", MPRAGE / "1301_0002.dcm"),
    ]:
        files.append(folder / f"{name}.dcm")
        made = subprocess.run([f"/usr/bin/{tool}", option, str(source), str(files[-1])], capture_output=True)
        assert made.returncode == 0, made.stderr
    jpeg2000 = pydicom.dcmread(CT_HEAD / "I100")
    jpeg2000.compress(JPEG2000Lossless)
    files.append(folder / "ct-jpeg-2000.dcm")
    jpeg2000.save_as(files[-1], enforce_file_format=True)
    return files


def test_dcmsend_with_its_default_options_gets_each_file_stored_in_its_own_encoding(
    root: Path, compressed_slices: list[Path]
) -> None:
    """dcmsend proposes each file's syntax with uncompressed fallbacks in one context where it could
    decompress (its default ``--decompress-lossless``; dcmtk has no JPEG 2000 codec, so that one alone):
    the SCP takes the file's syntax, so nothing is decompressed and the data set arrives byte for byte
    (pynetdicom's own choice was Implicit VR Little Endian)."""
    with RunningSCP(root) as scp:
        sent = subprocess.run(
            [DCMSEND, "-v", "-aet", "MODALITY", "-aec", "RADROUTER", "127.0.0.1", str(scp.settings.node.port)]
            + [str(path) for path in compressed_slices],
            capture_output=True,
            text=True,
            env={**os.environ, "TCP_NODELAY": "1"},
        )
        assert sent.returncode == 0, sent.stderr
    stored = {path.stem: path for path in stored_files(root)}
    assert len(stored) == len(compressed_slices)
    for path in compressed_slices:
        meta = read_file_meta_info(path)
        received = stored[str(meta.MediaStorageSOPInstanceUID)]
        assert read_file_meta_info(received).TransferSyntaxUID == meta.TransferSyntaxUID, path.name
        assert after_the_meta_group(received) == after_the_meta_group(path), path.name


def test_an_enhanced_multi_frame_instance_is_one_instance_of_one_series(root: Path, tmp_path: Path) -> None:
    """A Legacy Converted Enhanced CT built from the real 30-slice head CT: one file, the whole series."""
    slices = [pydicom.dcmread(path) for path in sorted(CT_HEAD.glob("I*"))]
    enhanced = LegacyConvertedEnhancedCTImage(
        slices,
        series_instance_uid=generate_uid(),
        series_number=900,
        sop_instance_uid=generate_uid(),
        instance_number=1,
    )
    path = tmp_path / "enhanced.dcm"
    enhanced.save_as(path)
    with RunningSCP(root) as scp:
        sent = storescu(scp.settings.node.port, [path], options=("--required",))
        assert "Received Store Response (Success)" in sent.stderr, sent.stderr
        assert scp.done.wait(10)
        assert scp.completed == [enhanced.StudyInstanceUID]
        with scp.index.session() as session:
            (instance,) = session.query(Instance).all()
            assert instance.series_uid == enhanced.SeriesInstanceUID
            assert instance.sop_class_uid == enhanced.SOPClassUID
    (stored,) = stored_files(root)
    assert int(pydicom.dcmread(stored, stop_before_pixels=True).NumberOfFrames) == len(slices)


def test_a_uid_that_would_escape_the_storage_root_is_refused(root: Path) -> None:
    """Synthetic: a Study Instance UID made to climb out of the storage root, sent by pynetdicom."""
    hostile = pydicom.dcmread(ONE_SLICE[0])
    hostile.StudyInstanceUID = "../../../../tmp/escaped"
    with RunningSCP(root) as scp:
        status = send_with_pynetdicom(scp.settings.node.port, hostile)
        assert status == 0xC001
        assert scp.instances() == 0
    assert stored_files(root) == []
    assert not list(root.parent.rglob("escaped*"))


def send_with_pynetdicom(port: int, dataset: pydicom.Dataset) -> int:
    """C-STORE ``dataset`` in its own transfer syntax; return the status the SCP answered."""
    scu = AE(ae_title="MODALITY")
    scu.add_requested_context(dataset.SOPClassUID, dataset.file_meta.TransferSyntaxUID)
    assoc = scu.associate("127.0.0.1", port, ae_title="RADROUTER")
    assert assoc.is_established
    try:
        return int(assoc.send_c_store(dataset).Status)
    finally:
        assoc.release()


def association(port: int) -> Association:
    """A C-ECHO association from the modality, as the SCP answered it."""
    scu = AE(ae_title="MODALITY")
    scu.add_requested_context(Verification)
    return scu.associate("127.0.0.1", port, ae_title="RADROUTER")


def wait_for_a_free_place(port: int) -> None:
    """A released association frees its place once its thread has ended: wait for that."""

    def a_place_is_free() -> bool:
        assoc = association(port)
        if not assoc.is_established:
            return False
        assoc.release()
        return True

    wait_until(a_place_is_free, 10, "a free place after the release")


def test_associations_beyond_the_maximum_are_rejected(root: Path) -> None:
    with RunningSCP(root, max_associations=1) as scp:
        first = association(scp.settings.node.port)
        try:
            assert first.is_established
            assert association(scp.settings.node.port).is_rejected
        finally:
            first.release()
        wait_for_a_free_place(scp.settings.node.port)


def test_an_instance_that_would_reach_the_reserve_has_retention_purge_first(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before it answers Out of Resources the SCP runs a retention pass (the timed one may be a minute
    away): the finished study over the watermark goes, and the instance is stored."""
    from tests.storage.test_retention import _study

    with RunningSCP(root) as scp:
        assert scp.scp.purger is not None
        # every disk is over a watermark this low: the finished study is purged when a pass runs
        scp.scp.purger.retention = RetentionSettings(high_watermark_pct=0.001, low_watermark_pct=0.001)
        finished = _study(scp.index, scp.scp.store, 1, settled_h_ago=1)
        # the reserve reached for as long as the finished study's files are there
        monkeypatch.setattr(
            scp.scp.free_space, "room_for", lambda size: not list((root / "instances" / finished).rglob("*"))
        )
        sent = storescu(scp.settings.node.port, ONE_SLICE)
        assert "Received Store Response (Success)" in sent.stderr
        assert scp.instances() == 1
        with scp.index.session() as session:
            study = session.get(Study, finished)
            assert study is not None and study.images_purged_at is not None
