"""Key images for viewers that show no DICOM-SEG: source slices with the segment outlines burned in.

Each image is a Secondary Capture (PS3.3 A.8.1), not a Grayscale Softcopy Presentation State: every
PACS viewer shows an SC image, while GSPS graphic annotations are shown by fewer viewers than show SEG.
The slice keeps its own pixels; a band added below it holds the legend (segment names in their
display colours with their measured values) and the notice that it is an AI result, so no text lies
over anatomy. Slices: the largest cross-section of each segment, then a few evenly spread over its
extent. UIDs derive from the job as the SEG's and SR's do, so a retry rewrites the same objects.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import highdicom as hd
import numpy as np
from PIL import Image, ImageDraw, ImageFont
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.uid import ExplicitVRLittleEndian
from scipy import ndimage

from radrouter.inference.pipeline import SegmentSpec
from radrouter.inference.results.content import MANUFACTURER, UTF8, ResultIdentity
from radrouter.inference.results.measurements import ReportedMeasurement
from radrouter.inference.volume import is_multiframe

#: CID 7202: why the SC references its source slice.
SOURCE_FOR_PROCESSING = hd.sr.CodedConcept("121322", "DCM", "Source image for image processing operation")
#: How a radiologist writes the UCUM units whose codes are not meant for reading.
_UNIT_TEXT = {"[hnsf'U]": "HU", "1": ""}
_BAND_COLOUR = (0, 0, 0)
_TEXT_COLOUR = (255, 255, 255)


@dataclass(frozen=True)
class KeyImageRequest:
    """What key images need beyond the SEG's inputs: the input volume (the label map's grid)."""

    volume: hd.Volume
    spread_slices: int
    max_images: int


@dataclass(frozen=True)
class SourceFrame:
    """The source instance (and frame of a multi-frame instance) one slice of the volume came from."""

    dataset: Dataset
    frame_number: int | None


def notice(identity: ResultIdentity) -> str:
    """What every key image says of itself, in its band and in its Image Comments."""
    return f"AI result: {identity.pipeline} {identity.algorithm_version}. Not for diagnosis on its own."


def outline(mask: np.ndarray, width: int = 1) -> np.ndarray:
    """The segment's boundary on a slice: its pixels within ``width`` pixels of a pixel outside it."""
    inner: np.ndarray = np.asarray(ndimage.binary_erosion(mask, iterations=width, border_value=0), dtype=bool)
    edge: np.ndarray = mask & ~inner
    return edge


def choose_slices(labels: np.ndarray, segments: Sequence[SegmentSpec], spread: int, most: int) -> list[int]:
    """Slice indices (axis 0): each segment's largest slice first, then ``spread`` evenly over its
    extent; each slice once, at most ``most``, returned in slice order."""
    largest: list[int] = []
    spread_over: list[int] = []
    for spec in segments:
        areas = (labels == spec.label).sum(axis=(1, 2))
        present = np.flatnonzero(areas)
        if present.size == 0:
            continue
        largest.append(int(np.argmax(areas)))
        positions = np.linspace(0, present.size - 1, spread + 2)[1:-1]
        spread_over += [int(present[round(p)]) for p in positions]
    chosen = list(dict.fromkeys(largest + spread_over))[:most]
    return sorted(chosen)


def _position(dataset: Dataset, frame: Dataset | None) -> list[float]:
    source = frame.PlanePositionSequence[0] if frame is not None else dataset
    return [float(v) for v in source.ImagePositionPatient]


def source_frames(datasets: Sequence[Dataset], volume: hd.Volume) -> dict[int, SourceFrame]:
    """Which source instance (and frame) each slice index of ``volume`` lies on."""
    frames: list[SourceFrame] = []
    positions: list[list[float]] = []
    for dataset in datasets:
        if is_multiframe(dataset):
            for number, item in enumerate(dataset.PerFrameFunctionalGroupsSequence, start=1):
                if "PlanePositionSequence" in item:
                    frames.append(SourceFrame(dataset, number))
                    positions.append(_position(dataset, item))
        elif "ImagePositionPatient" in dataset:
            frames.append(SourceFrame(dataset, None))
            positions.append(_position(dataset, None))
    if not frames:
        return {}
    indices = volume.map_reference_to_indices(np.array(positions), round_output=True)
    return {
        int(k): frame
        for frame, (k, i, j) in zip(frames, indices, strict=True)
        if i == 0 and j == 0 and 0 <= k < volume.shape[0]
    }


def _window(dataset: Dataset, values: np.ndarray) -> tuple[float, float]:
    """The source's first VOI window (lower, upper), or its 0.5-99.5 percentiles when it has none."""
    voi = dataset
    shared = dataset.get("SharedFunctionalGroupsSequence")
    if "WindowCenter" not in dataset and shared and "FrameVOILUTSequence" in shared[0]:
        voi = shared[0].FrameVOILUTSequence[0]
    try:
        centre = voi.WindowCenter
        width = voi.WindowWidth
        centre = float(centre[0] if isinstance(centre, Sequence) and not isinstance(centre, str) else centre)
        width = float(width[0] if isinstance(width, Sequence) and not isinstance(width, str) else width)
        if width > 0:
            return centre - width / 2, centre + width / 2
    except (AttributeError, TypeError, ValueError, IndexError):
        pass
    low, high = np.percentile(values, [0.5, 99.5])
    return float(low), float(high) if high > low else float(low) + 1.0


def _value(measurement: ReportedMeasurement, name: str) -> str:
    unit = _UNIT_TEXT.get(measurement.unit.value, measurement.unit.value)
    return f"{name} {measurement.value:g} {unit}".rstrip()


def _legend(
    segments: Sequence[SegmentSpec], measurements: Sequence[ReportedMeasurement]
) -> list[tuple[str, tuple[int, int, int] | None]]:
    lines: list[tuple[str, tuple[int, int, int] | None]] = []
    for spec in segments:
        values = [
            _value(m, m.name.removeprefix(spec.name).strip() or m.name)
            for m in measurements
            if m.segment == spec
        ]
        lines.append((f"{spec.name}: {'; '.join(values)}" if values else spec.name, spec.color_rgb))
    series = [_value(m, m.name) for m in measurements if m.segment is None]
    if series:
        lines.append(("; ".join(series), None))
    return lines


def render(
    grey: np.ndarray,
    labels: np.ndarray,
    segments: Sequence[SegmentSpec],
    legend: list[tuple[str, tuple[int, int, int] | None]],
    footer: list[str],
) -> np.ndarray:
    """RGB pixels: the slice with outlines at its own size in the top left, a text band below it."""
    rows, columns = grey.shape
    size = max(12, columns // 32)
    font = ImageFont.load_default(size=size)
    line_height = int(size * 1.35)
    swatch = int(size * 0.8)
    texts = [text for text, _ in legend] + footer
    text_width = max(int(font.getlength(text)) for text in texts) + swatch * 2 + 8
    width = max(columns, text_width)
    canvas = Image.new("RGB", (width, rows + line_height * len(texts) + line_height // 2), _BAND_COLOUR)
    slice_rgb = np.repeat(grey[:, :, None], 3, axis=2)
    width = max(1, columns // 256)  # seen at a glance on a 512-pixel CT slice too
    for spec in segments:
        slice_rgb[outline(labels == spec.label, width)] = spec.color_rgb
    canvas.paste(Image.fromarray(slice_rgb, "RGB"), (0, 0))
    draw = ImageDraw.Draw(canvas)
    y = rows + line_height // 4
    for text, colour in legend:
        x = 4
        if colour is not None:
            draw.rectangle((x, y + 2, x + swatch, y + 2 + swatch), outline=colour, width=2)
            x += swatch * 2
        draw.text((x, y), text, fill=_TEXT_COLOUR, font=font)
        y += line_height
    for text in footer:
        draw.text((4, y), text, fill=_TEXT_COLOUR, font=font)
        y += line_height
    return np.asarray(canvas, dtype=np.uint8).copy()


def _laterality(source: Dataset) -> str:
    """The source's laterality, else U (unpaired): a cross-section of the body, not of one side."""
    for keyword in ("ImageLaterality", "Laterality", "FrameLaterality"):
        if source.get(keyword) in ("R", "L", "U", "B"):
            return str(source.get(keyword))
    return "U"


def _source_reference(frame: SourceFrame) -> Dataset:
    item = Dataset()
    item.ReferencedSOPClassUID = frame.dataset.SOPClassUID
    item.ReferencedSOPInstanceUID = frame.dataset.SOPInstanceUID
    if frame.frame_number is not None:
        item.ReferencedFrameNumber = frame.frame_number
    item.PurposeOfReferenceCodeSequence = [SOURCE_FOR_PROCESSING]
    return item


def build_key_images(
    datasets: Sequence[Dataset],
    labelmap: np.ndarray,
    segments: Sequence[SegmentSpec],
    measurements: Sequence[ReportedMeasurement],
    identity: ResultIdentity,
    request: KeyImageRequest,
) -> list[hd.sc.SCImage]:
    """The key-image series; empty when no segment is present on any slice."""
    frames = source_frames(datasets, request.volume)
    chosen = [
        k for k in choose_slices(labelmap, segments, request.spread_slices, request.max_images) if k in frames
    ]
    values = request.volume.array
    orientation = request.volume.get_closest_patient_orientation()
    legend = _legend(segments, measurements)
    warning = notice(identity)
    images = []
    for number, k in enumerate(chosen, start=1):
        frame = frames[k]
        low, high = _window(frame.dataset, values)
        grey = (np.clip((values[k] - low) / (high - low), 0, 1) * 255).astype(np.uint8)
        where = f"Slice {k + 1} of {labelmap.shape[0]}, series {frame.dataset.get('SeriesNumber', '')}"
        pixels = render(grey, labelmap[k], segments, legend, [where, warning])
        image = hd.sc.SCImage.from_ref_dataset(
            ref_dataset=datasets[0],
            pixel_array=pixels,
            photometric_interpretation=hd.PhotometricInterpretationValues.RGB,
            bits_allocated=8,
            coordinate_system=hd.CoordinateSystemNames.PATIENT,
            series_instance_uid=identity.uid("key-images-series"),
            series_number=identity.series_number + 2,
            sop_instance_uid=identity.uid(f"key-image-{k}"),
            instance_number=number,
            manufacturer=MANUFACTURER,
            patient_orientation=(orientation[2].value, orientation[1].value),
            transfer_syntax_uid=ExplicitVRLittleEndian,
            contributing_equipment=[identity.contributing_equipment()],
            specific_character_set=UTF8,
            series_description=f"AI {identity.pipeline} key images"[:64],
            manufacturer_model_name=identity.model_name,
            software_versions=identity.algorithm_version[:64],
        )
        image.BurnedInAnnotation = "YES"
        image.ImageLaterality = _laterality(frame.dataset)
        image.SourceImageSequence = [_source_reference(frame)]
        image.DerivationDescription = f"Outlines of {identity.pipeline} segments burned in"[:1024]
        image.ImageComments = warning
        images.append(image)
    return images


def build_key_objects(
    images: Sequence[hd.sc.SCImage], identity: ResultIdentity
) -> hd.ko.KeyObjectSelectionDocument:
    """A Key Object Selection (PS3.3 A.35.4) flagging the key images "Of Interest"."""
    content = hd.ko.KeyObjectSelection(
        document_title=codes.DCM.OfInterest,
        referenced_objects=list(images),
        observer_device_context=identity.device_observer(),
        description=notice(identity),
    )
    return hd.ko.KeyObjectSelectionDocument(
        evidence=list(images),
        content=content,
        series_instance_uid=identity.uid("key-objects-series"),
        series_number=identity.series_number + 3,
        sop_instance_uid=identity.uid("key-objects"),
        instance_number=1,
        manufacturer=MANUFACTURER,
        contributing_equipment=[identity.contributing_equipment()],
    )
