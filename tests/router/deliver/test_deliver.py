"""Delivery to a real Orthanc 1.10, which refuses the Label Map Segmentation SOP class."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from io import BytesIO
from pathlib import Path

import numpy as np
import pydicom
import pytest
from highdicom.seg import SegmentationTypeValues
from pydicom.sr.codedict import codes
from pydicom.uid import generate_uid

from radrouter.config.settings import Destination
from radrouter.inference.pipeline import Prediction, SegmentSpec
from radrouter.inference.results.content import ResultIdentity
from radrouter.inference.results.measurements import reported_measurements
from radrouter.inference.results.seg import build_segmentation
from radrouter.inference.results.sr import build_report, report_on_stand_in
from radrouter.inference.volume import load_volume, read_series
from radrouter.router.deliver.scu import OutgoingObject, RefusedByDestination, Sent, send
from tests.services import CT_HEAD, Orthanc, free_port, port_open, wait_until

BINARY_SEG = "1.2.840.10008.5.1.4.1.1.66.4"
COMPREHENSIVE_3D_SR = "1.2.840.10008.5.1.4.1.1.88.34"
STORESCP = "/usr/bin/storescp"
LABELMAP_SEG = "1.2.840.10008.5.1.4.1.1.66.7"

SEGMENTS = (
    SegmentSpec(1, "Bone", codes.SCT.Tissue, codes.SCT.Bone),
    SegmentSpec(2, "Soft tissue", codes.SCT.Tissue, codes.SCT.SoftTissue),
)


@pytest.fixture(scope="module")
def labelmap_seg(labelmap_results: list[Path]) -> tuple[Path, Path]:
    return labelmap_results[0], labelmap_results[1]


@pytest.fixture(scope="module")
def labelmap_results(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
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
    measurements = reported_measurements(_Thresholds(), prediction)
    report = build_report(datasets, labelmap, measurements, [], codes.LN.CTUnspecifiedBodyRegion, identity)
    reports = [report, report_on_stand_in(report, labelmap, binary, identity)]
    paths = [folder / name for name in ("labelmap.dcm", "binary.dcm", "sr.dcm", "sr-stand-in.dcm")]
    for dataset, path in zip((labelmap, binary, *reports), paths, strict=True):
        dataset.save_as(path, enforce_file_format=True)
    return paths


class _Thresholds:
    """The pipeline declaration the SR needs: two segments, no measurements or findings of its own."""

    name, version, segments, measurements, findings = "threshold-test", "1.0", SEGMENTS, (), ()


def test_a_refused_labelmap_seg_falls_back_to_binary(
    orthanc: Orthanc, labelmap_seg: tuple[Path, Path]
) -> None:
    pacs = Destination(host="127.0.0.1", port=orthanc.dicom_port, ae_title=orthanc.ae_title)
    sent = send(pacs, [OutgoingObject(labelmap_seg[0], fallback_path=labelmap_seg[1])], "RADROUTER", 30)
    assert sent == [Sent(BINARY_SEG, stand_in=True)]


def test_the_sr_follows_its_seg_to_the_stand_in_and_its_references_resolve_there(
    orthanc: Orthanc, labelmap_results: list[Path]
) -> None:
    labelmap, binary, sr, sr_stand_in = labelmap_results
    pacs = Destination(host="127.0.0.1", port=orthanc.dicom_port, ae_title=orthanc.ae_title)
    outgoing = [OutgoingObject(labelmap, binary), OutgoingObject(sr, sr_stand_in, follows=labelmap)]
    sent = send(pacs, outgoing, "RADROUTER", 30)
    assert sent == [Sent(BINARY_SEG, stand_in=True), Sent(COMPREHENSIVE_3D_SR, stand_in=True)]
    held = pydicom.dcmread(sr_stand_in)
    study_uid = str(held.StudyInstanceUID)
    in_pacs = [
        pydicom.dcmread(BytesIO(f))
        for s in orthanc.find_series(study_uid, "SR")
        for f in orthanc.instance_files(s)
    ]
    assert [d.SOPInstanceUID for d in in_pacs] == [held.SOPInstanceUID]
    evidence = in_pacs[0].CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence
    segs = {
        i.ReferencedSOPInstanceUID
        for s in evidence
        for i in s.ReferencedSOPSequence
        if i.ReferencedSOPClassUID == BINARY_SEG
    }
    seg_series = orthanc.find_series(study_uid, "SEG")
    held_segs = {
        pydicom.dcmread(BytesIO(f)).SOPInstanceUID for s in seg_series for f in orthanc.instance_files(s)
    }
    assert segs and segs <= held_segs


@pytest.fixture
def accepts_label_maps(tmp_path: Path) -> Iterator[tuple[Destination, Path]]:
    """dcmtk's storescp, promiscuous: a peer that accepts the Label Map Segmentation class."""
    port = free_port()
    process = subprocess.Popen(
        [STORESCP, "-pm", "+xa", "-od", str(tmp_path), "-aet", "LABELMAPS", str(port)],
        env={**os.environ, "TCP_NODELAY": "1"},
    )
    try:
        wait_until(lambda: port_open(port), 30, "storescp")
        yield Destination(host="127.0.0.1", port=port, ae_title="LABELMAPS"), tmp_path
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_where_the_label_map_seg_is_accepted_its_own_sr_goes_with_it(
    accepts_label_maps: tuple[Destination, Path], labelmap_results: list[Path]
) -> None:
    peer, received = accepts_label_maps
    labelmap, binary, sr, sr_stand_in = labelmap_results
    outgoing = [OutgoingObject(labelmap, binary), OutgoingObject(sr, sr_stand_in, follows=labelmap)]
    sent = send(peer, outgoing, "RADROUTER", 30)
    assert sent == [Sent(LABELMAP_SEG, stand_in=False), Sent(COMPREHENSIVE_3D_SR, stand_in=False)]
    stored = {str(pydicom.dcmread(path).SOPInstanceUID) for path in received.iterdir()}
    assert stored == {str(pydicom.dcmread(path).SOPInstanceUID) for path in (labelmap, sr)}


def test_a_refused_class_without_stand_in_is_an_error(
    orthanc: Orthanc, labelmap_seg: tuple[Path, Path]
) -> None:
    pacs = Destination(host="127.0.0.1", port=orthanc.dicom_port, ae_title=orthanc.ae_title)
    with pytest.raises(RefusedByDestination, match="refused SOP class"):
        send(pacs, [OutgoingObject(labelmap_seg[0])], "RADROUTER", 30)


def test_nothing_to_send_opens_no_association() -> None:
    nowhere = Destination(host="127.0.0.1", port=9, ae_title="NOBODY")  # discard port: nothing listens
    assert send(nowhere, [], "RADROUTER", 1) == []
