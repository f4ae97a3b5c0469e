"""Prediction → Comprehensive 3D SR with a TID 1500 Measurement Report (IHE AI Results).

Each segment gets a TID 1411 volumetric group that references its SEG segment and the source series,
with its volume in mL and the pipeline's measurements for that segment. Each finding gets a TID 1501
group: a qualitative evaluation (present / absent), its probability, and its location as finding
site. Every group carries TID 4019 algorithm identification.
"""

from __future__ import annotations

import pickle
from collections.abc import Sequence

import highdicom as hd
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code
from pydicom.uid import UID

from radrouter.inference.results.content import MANUFACTURER, UTF8, ResultIdentity
from radrouter.inference.results.measurements import ReportedFinding, ReportedMeasurement

PROBABILITY = codes.DCM.Probability
NO_UNITS = Code("1", "UCUM", "no units")


def _measurement(item: ReportedMeasurement, algorithm: hd.sr.AlgorithmIdentification) -> hd.sr.Measurement:
    return hd.sr.Measurement(name=item.code, value=item.value, unit=item.unit, algorithm_id=algorithm)


def _finding_group(
    finding: ReportedFinding, identity: ResultIdentity, algorithm: hd.sr.AlgorithmIdentification
) -> hd.sr.MeasurementsAndQualitativeEvaluations:
    probability = (
        [
            hd.sr.Measurement(
                name=PROBABILITY, value=finding.probability, unit=NO_UNITS, algorithm_id=algorithm
            )
        ]
        if finding.probability is not None
        else []
    )
    return hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(
            uid=identity.uid(f"finding-{finding.name}"), identifier=finding.name[:64]
        ),
        finding_type=finding.code,
        algorithm_id=algorithm,
        finding_sites=[hd.sr.FindingSite(finding.segment.property_type)] if finding.segment else None,
        measurements=probability,
        qualitative_evaluations=[
            hd.sr.QualitativeEvaluation(
                name=finding.code, value=codes.SCT.Present if finding.present else codes.SCT.Absent
            )
        ],
    )


def build_report(
    source_images: Sequence[Dataset],
    segmentation: hd.seg.Segmentation,
    measurements: Sequence[ReportedMeasurement],
    findings: Sequence[ReportedFinding],
    procedure: Code,
    identity: ResultIdentity,
    replaces: Sequence[Dataset] = (),
    character_set: str = UTF8,
) -> hd.sr.Comprehensive3DSR:
    """The report; ``replaces`` are earlier reports of the same job on an older study revision, which
    the new one lists in its Predecessor Documents Sequence (PS3.3 C.17.2.3). The report on a SEG's
    stand-in is another document in the same series (:func:`report_on_stand_in`)."""
    algorithm = identity.tid4019()
    observer = identity.device_observer()
    present = {int(item.SegmentNumber) for item in segmentation.SegmentSequence}
    segments = {m.segment.label: m.segment for m in measurements if m.segment is not None}
    groups: list[
        hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations | hd.sr.MeasurementsAndQualitativeEvaluations
    ] = [
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
            measurements=[_measurement(m, algorithm) for m in measurements if m.segment == spec],
        )
        for label, spec in sorted(segments.items())
        if label in present
    ]
    whole_series = [m for m in measurements if m.segment is None]
    if whole_series:
        groups.append(
            hd.sr.MeasurementsAndQualitativeEvaluations(
                tracking_identifier=hd.sr.TrackingIdentifier(uid=identity.uid("series-measurements")),
                algorithm_id=algorithm,
                measurements=[_measurement(m, algorithm) for m in whole_series],
            )
        )
    groups += [_finding_group(finding, identity, algorithm) for finding in findings]
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
        specific_character_set=character_set,
    )


def report_on_stand_in(
    report: hd.sr.Comprehensive3DSR,
    segmentation: hd.seg.Segmentation,
    stand_in: hd.seg.Segmentation,
    identity: ResultIdentity,
) -> hd.sr.Comprehensive3DSR:
    """The same report, on the SEG's stand-in: a copy whose references to ``segmentation`` (its SOP
    class, instance and series) name ``stand_in``, under its own UID in the same series. What
    :func:`build_report` gives for the stand-in, without building the content tree again (copied
    through pickle: a third of ``copy.deepcopy``'s time on a report's thousand small elements)."""
    copied: hd.sr.Comprehensive3DSR = pickle.loads(pickle.dumps(report, protocol=pickle.HIGHEST_PROTOCOL))
    swapped = {
        str(segmentation.SOPClassUID): str(stand_in.SOPClassUID),
        str(segmentation.SOPInstanceUID): str(stand_in.SOPInstanceUID),
        str(segmentation.SeriesInstanceUID): str(stand_in.SeriesInstanceUID),
    }

    def swap(dataset: Dataset, element: DataElement) -> None:
        if element.VR == "UI" and str(element.value) in swapped:
            element.value = swapped[str(element.value)]

    copied.walk(swap)
    copied.SOPInstanceUID = UID(identity.uid("sr-stand-in"))
    if "MediaStorageSOPInstanceUID" in getattr(copied, "file_meta", {}):
        copied.file_meta.MediaStorageSOPInstanceUID = copied.SOPInstanceUID
    return copied
