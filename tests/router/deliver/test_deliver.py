"""Delivery to a real Orthanc 1.10, which refuses the Label Map Segmentation SOP class."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from highdicom.seg import SegmentationTypeValues
from pydicom.sr.codedict import codes
from pydicom.uid import generate_uid

from radrouter.config.settings import Destination
from radrouter.inference.pipeline import Prediction, SegmentSpec
from radrouter.inference.results.content import ResultIdentity
from radrouter.inference.results.seg import build_segmentation
from radrouter.inference.volume import load_volume, read_series
from radrouter.router.deliver.scu import OutgoingObject, RefusedByDestination, send
from tests.services import CT_HEAD, Orthanc

BINARY_SEG = "1.2.840.10008.5.1.4.1.1.66.4"
LABELMAP_SEG = "1.2.840.10008.5.1.4.1.1.66.7"

SEGMENTS = (
    SegmentSpec(1, "Bone", codes.SCT.Tissue, codes.SCT.Bone),
    SegmentSpec(2, "Soft tissue", codes.SCT.Tissue, codes.SCT.SoftTissue),
)


@pytest.fixture(scope="module")
def labelmap_seg(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A two-label SEG over the real head CT phantom (labels by HU threshold), and its BINARY stand-in."""
    datasets = read_series(sorted(p for p in CT_HEAD.iterdir() if p.name.startswith("I")))
    volume = load_volume(datasets)
    labels = np.zeros(volume.shape, dtype=np.uint8)
    labels[volume.array > 300] = 1
    labels[(volume.array > -100) & (volume.array < 100)] = 2
    prediction = Prediction(labelmap=volume.with_array(labels), model_seconds=0.0)
    identity = ResultIdentity(str(generate_uid()), "threshold-test", "1.0", 9200)
    folder = tmp_path_factory.mktemp("seg")
    labelmap = build_segmentation(datasets, prediction, SEGMENTS, identity)
    binary = build_segmentation(datasets, prediction, SEGMENTS, identity, SegmentationTypeValues.BINARY)
    assert (labelmap.SOPClassUID, binary.SOPClassUID) == (LABELMAP_SEG, BINARY_SEG)
    assert labelmap.SOPInstanceUID != binary.SOPInstanceUID
    paths = folder / "labelmap.dcm", folder / "binary.dcm"
    labelmap.save_as(paths[0], enforce_file_format=True)
    binary.save_as(paths[1], enforce_file_format=True)
    return paths


def test_a_refused_labelmap_seg_falls_back_to_binary(
    orthanc: Orthanc, labelmap_seg: tuple[Path, Path]
) -> None:
    pacs = Destination(host="127.0.0.1", port=orthanc.dicom_port, ae_title=orthanc.ae_title)
    sent = send(pacs, [OutgoingObject(labelmap_seg[0], fallback_path=labelmap_seg[1])], "RADROUTER", 30)
    assert sent == [BINARY_SEG]


def test_a_refused_class_without_stand_in_is_an_error(
    orthanc: Orthanc, labelmap_seg: tuple[Path, Path]
) -> None:
    pacs = Destination(host="127.0.0.1", port=orthanc.dicom_port, ae_title=orthanc.ae_title)
    with pytest.raises(RefusedByDestination, match="refused SOP class"):
        send(pacs, [OutgoingObject(labelmap_seg[0])], "RADROUTER", 30)


def test_nothing_to_send_opens_no_association() -> None:
    nowhere = Destination(host="127.0.0.1", port=9, ae_title="NOBODY")  # discard port: nothing listens
    assert send(nowhere, [], "RADROUTER", 1) == []
