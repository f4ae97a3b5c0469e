"""Prediction → DICOM Segmentation (PS3.3 A.51) referencing the source series, on its frame of reference.

One segment gives a BINARY SEG; several non-overlapping labels give a LABELMAP SEG (RLE lossless),
plus a BINARY stand-in for destinations that do not yet accept the Label Map Segmentation class.

A label map over single-frame slices goes to highdicom as frames in the order of the source images
(frame i on source image i, as its ``pixel_array`` documents), not as a volume: given a volume,
highdicom finds each plane's source image by comparing every plane with every image, half of the
SEG's time on a 170-slice MPRAGE. The SEG is the same either way (``tests/inference/test_seg_frames.py``).
"""

from __future__ import annotations

from collections.abc import Sequence

import highdicom as hd
import numpy as np
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian, RLELossless

from radrouter.inference.pipeline import Prediction, SegmentSpec
from radrouter.inference.results.content import MANUFACTURER, UTF8, ResultIdentity
from radrouter.inference.volume import is_multiframe


def segment_descriptions(
    segments: Sequence[SegmentSpec], identity: ResultIdentity
) -> list[hd.seg.SegmentDescription]:
    return [
        hd.seg.SegmentDescription(
            segment_number=spec.label,
            segment_label=spec.name,
            segmented_property_category=spec.category,
            segmented_property_type=spec.property_type,
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
            algorithm_identification=identity.algorithm_sequence(),
            tracking_uid=identity.uid(f"segment-{spec.label}"),
            tracking_id=spec.name,
            display_color=hd.color.CIELabColor.from_rgb(*spec.color_rgb),
        )
        for spec in segments
    ]


def build_segmentation(
    source_images: Sequence[Dataset],
    prediction: Prediction,
    segments: Sequence[SegmentSpec],
    identity: ResultIdentity,
    segmentation_type: hd.seg.SegmentationTypeValues | None = None,
    character_set: str = UTF8,
) -> hd.seg.Segmentation:
    """The SEG for ``prediction``; its type is LABELMAP for several labels, BINARY for one (or if asked)."""
    if segmentation_type is None:
        segmentation_type = (
            hd.seg.SegmentationTypeValues.LABELMAP
            if len(segments) > 1
            else hd.seg.SegmentationTypeValues.BINARY
        )
    labelmap = prediction.labelmap
    if labelmap.array.dtype != np.uint8:
        labelmap = labelmap.astype(np.uint8)
    highest = max(s.label for s in segments)
    if labelmap.array.max() > highest:  # labels without a segment are background (no copy otherwise)
        labelmap = labelmap.with_array(np.where(labelmap.array <= highest, labelmap.array, 0))
    frames = frames_on_sources(source_images, labelmap)
    is_labelmap = segmentation_type == hd.seg.SegmentationTypeValues.LABELMAP
    role = "seg-labelmap" if is_labelmap else "seg"
    return hd.seg.Segmentation(
        source_images=source_images,
        pixel_array=labelmap if frames is None else frames,
        segmentation_type=segmentation_type,
        segment_descriptions=segment_descriptions(segments, identity),
        series_instance_uid=identity.uid(f"{role}-series"),
        series_number=identity.series_number,
        sop_instance_uid=identity.uid(role),
        instance_number=1,
        manufacturer=MANUFACTURER,
        manufacturer_model_name=identity.model_name,
        software_versions=identity.algorithm_version[:64],
        device_serial_number="0",
        content_label="AI_SEG",
        content_description=f"{identity.pipeline} segmentation"[:64],
        series_description=f"AI {identity.pipeline} SEG"[:64],
        transfer_syntax_uid=RLELossless if is_labelmap else ExplicitVRLittleEndian,
        contributing_equipment=[identity.contributing_equipment()],
        specific_character_set=character_set,
    )


def frames_on_sources(source_images: Sequence[Dataset], labelmap: hd.Volume) -> np.ndarray | None:
    """The label map's slices in the order of ``source_images``, each on its own source slice; None
    where that is not so (a multi-frame source, or a slice between or beside the label map's planes):
    highdicom then matches the volume's planes itself."""
    if any(is_multiframe(image) or "ImagePositionPatient" not in image for image in source_images):
        return None
    try:
        positions = np.array([[float(v) for v in image.ImagePositionPatient] for image in source_images])
    except (TypeError, ValueError):
        return None
    if positions.shape != (len(source_images), 3) or len(source_images) != labelmap.shape[0]:
        return None
    exact = labelmap.map_reference_to_indices(positions)
    indices = np.rint(exact).astype(int)
    on_planes = np.allclose(exact, indices, atol=1e-3) and not indices[:, 1:].any()
    if not on_planes or sorted(indices[:, 0].tolist()) != list(range(labelmap.shape[0])):
        return None
    frames: np.ndarray = labelmap.array[indices[:, 0]]
    return frames
