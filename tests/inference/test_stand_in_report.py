"""The report on the SEG's stand-in is the report built on the stand-in: copied from the LABELMAP
job's report with its references swapped, it equals what highdicom builds on the BINARY SEG, but for
its own UID and the times of building."""

from __future__ import annotations

import torch
from pydicom.uid import generate_uid

from radrouter.inference.models.ct_lung import CTLung
from radrouter.inference.results.build import build_results
from radrouter.inference.results.characters import carry_character_set
from radrouter.inference.results.content import ResultIdentity, drop_empty_inherited_sequences
from radrouter.inference.results.measurements import reported_findings, reported_measurements
from radrouter.inference.results.sr import build_report
from radrouter.inference.stored_series import load_series, read_stored_series
from tests.inference.variants import comparable
from tests.services import CT_CHEST


def test_the_stand_ins_report_is_the_report_built_on_the_stand_in() -> None:
    datasets, volume = load_series(read_stored_series(sorted(CT_CHEST.glob("*.dcm"))))
    pipeline = CTLung()
    pipeline.load(torch.device("cpu"))
    prediction = pipeline.predict(volume)
    identity = ResultIdentity(str(generate_uid()), pipeline.name, pipeline.version, pipeline.series_number)
    built = build_results(datasets, prediction, pipeline, identity)
    assert built.stand_in is not None and built.stand_in_report is not None  # ct-lung: a LABELMAP SEG

    rebuilt = build_report(
        datasets,
        built.stand_in,
        reported_measurements(pipeline, prediction),
        reported_findings(pipeline, prediction),
        pipeline.procedure,
        identity,
    )
    # What build_results does to each result after highdicom: the source's character set, no empty
    # inherited sequences.
    drop_empty_inherited_sequences(rebuilt)
    carry_character_set(rebuilt, datasets[0])
    copied = built.stand_in_report
    assert copied.SOPInstanceUID == identity.uid("sr-stand-in") != rebuilt.SOPInstanceUID
    assert copied.SeriesInstanceUID == built.report.SeriesInstanceUID  # one series, two documents
    rebuilt.SOPInstanceUID = copied.SOPInstanceUID
    assert comparable(copied) == comparable(rebuilt)
    assert str(built.segmentation.SOPInstanceUID) not in str(copied.to_json_dict())  # nothing left over
    assert str(built.stand_in.SOPInstanceUID) in str(copied.to_json_dict())
