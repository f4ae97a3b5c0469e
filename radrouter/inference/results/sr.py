"""Prediction → Comprehensive 3D SR with a TID 1500 Measurement Report (IHE AI Results).

Each segment gets a TID 1411 volumetric group that references its SEG segment and the source series,
with the segment's volume in mL and TID 4019 algorithm identification on every measurement.
"""

from __future__ import annotations

from collections.abc import Sequence

import highdicom as hd
import numpy as np
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code

from radrouter.inference.pipeline import Prediction, SegmentSpec
from radrouter.inference.results.content import MANUFACTURER, ResultIdentity

MILLILITER = Code("mL", "UCUM", "milliliter")


def segment_volumes_ml(prediction: Prediction, segments: Sequence[SegmentSpec]) -> dict[int, float]:
    """Volume of each label in mL (voxel count x voxel volume in mm³ / 1000)."""
    counts = np.bincount(prediction.labelmap.array.ravel().astype(np.int64), minlength=256)
    voxel_ml = prediction.labelmap.voxel_volume / 1000.0
    return {spec.label: float(counts[spec.label] * voxel_ml) for spec in segments}


def build_report(
    source_images: Sequence[Dataset],
    segmentation: hd.seg.Segmentation,
    volumes_ml: dict[int, float],
    segments: Sequence[SegmentSpec],
    procedure: Code,
    identity: ResultIdentity,
    replaces: Sequence[Dataset] = (),
) -> hd.sr.Comprehensive3DSR:
    """The report; ``replaces`` are earlier reports of the same job on an older study revision, which
    the new one lists in its Predecessor Documents Sequence (PS3.3 C.17.2.3)."""
    algorithm = identity.tid4019()
    observer = hd.sr.ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=identity.uid("device"),
            name=identity.model_name,
            manufacturer_name=MANUFACTURER,
            model_name=identity.pipeline[:64],
        ),
    )
    present = {int(item.SegmentNumber) for item in segmentation.SegmentSequence}
    groups = [
        hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations(
            tracking_identifier=hd.sr.TrackingIdentifier(
                uid=identity.uid(f"tracking-{spec.label}"), identifier=spec.name
            ),
            referenced_segment=hd.sr.ReferencedSegment(
                sop_class_uid=segmentation.SOPClassUID,
                sop_instance_uid=segmentation.SOPInstanceUID,
                segment_number=spec.label,
                source_series=hd.sr.SourceSeriesForSegmentation(source_images[0].SeriesInstanceUID),
            ),
            finding_type=spec.property_type,
            algorithm_id=algorithm,
            measurements=[
                hd.sr.Measurement(
                    name=codes.SCT.Volume,
                    value=round(volumes_ml[spec.label], 2),
                    unit=MILLILITER,
                    algorithm_id=algorithm,
                )
            ],
        )
        for spec in segments
        if spec.label in present
    ]
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_device_context=observer),
        procedure_reported=procedure,
        imaging_measurements=groups,
    )
    return hd.sr.Comprehensive3DSR(
        evidence=[*source_images, segmentation],
        content=report,
        series_instance_uid=identity.uid("sr-series"),
        series_number=identity.series_number + 1,
        sop_instance_uid=identity.uid("sr"),
        instance_number=1,
        manufacturer=MANUFACTURER,
        is_complete=True,
        series_description=f"AI {identity.pipeline} report"[:64],
        contributing_equipment=[identity.contributing_equipment()],
        previous_versions=list(replaces) or None,
    )
