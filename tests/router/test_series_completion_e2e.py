"""Series completion over the network: a rule with ``completion: series`` forwards a series that is
done while another association still sends the rest of its study, and the study's completion later
does not forward it twice."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pydicom
from pydicom.uid import generate_uid
from pynetdicom import AE, AllStoragePresentationContexts

from tests.services import CT_HEAD, Node, Orthanc, storescu, wait_until
from tests.user_models import SERIES_TESTER

TIMEOUT_S = 120


def _two_series(folder: Path) -> tuple[str, list[Path], list[pydicom.Dataset]]:
    """The head CT as a new study: its first 4 slices are series A (files), the rest series B."""
    study_uid, series_a, series_b = generate_uid(), generate_uid(), generate_uid()
    files: list[Path] = []
    datasets: list[pydicom.Dataset] = []
    for number, source in enumerate(sorted(CT_HEAD.glob("I*"))):
        dataset = pydicom.dcmread(source)
        dataset.StudyInstanceUID = study_uid
        dataset.SeriesInstanceUID = series_a if number < 4 else series_b
        dataset.SOPInstanceUID = dataset.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        if number < 4:
            files.append(folder / f"a{number:03}.dcm")
            dataset.save_as(files[-1])
        else:
            datasets.append(dataset)
    return study_uid, files, datasets


def test_a_series_rule_forwards_a_series_while_its_study_is_still_arriving(
    node: Node, orthanc: Orthanc, tmp_path: Path
) -> None:
    study_uid, series_a_files, series_b = _two_series(tmp_path)
    series_a = str(pydicom.dcmread(series_a_files[0], stop_before_pixels=True).SeriesInstanceUID)
    ae = AE(ae_title=SERIES_TESTER)
    ae.requested_contexts = AllStoragePresentationContexts[:120]
    held = ae.associate("127.0.0.1", node.port, ae_title="RADROUTER")
    assert held.is_established
    try:
        assert held.send_c_store(series_b[0]).Status == 0x0000
        sent = storescu(node.port, series_a_files, calling_ae=SERIES_TESTER)  # and releases
        assert sent.returncode == 0, sent.stderr

        seen: dict[str, Any] = {}

        def series_a_forwarded() -> bool:
            # Series B keeps arriving over the held association, so the study cannot complete.
            assert held.send_c_store(series_b[1 + len(seen) % (len(series_b) - 1)]).Status == 0x0000
            seen.update(node.study(study_uid))
            return any(forward["series_uid"] == series_a for forward in seen["forwards"])

        wait_until(series_a_forwarded, TIMEOUT_S, "series A forwarded", interval_s=0.3)
        assert seen["state"] == "RECEIVING"  # read in the same transaction as the forward
        for dataset in series_b[1:]:
            assert held.send_c_store(dataset).Status == 0x0000
    finally:
        held.release()

    def settled() -> dict[str, Any] | None:
        study = node.study(study_uid)
        return study if study["state"] in ("DONE", "FAILED") else None

    study = wait_until(settled, TIMEOUT_S, "study settled")
    assert study["state"] == "DONE", study["reason"]
    series_b_uid = str(series_b[0].SeriesInstanceUID)
    assert sorted((f["series_uid"], f["rule"], f["state"]) for f in study["forwards"]) == sorted(
        [(series_a, "series-forward", "DELIVERED"), (series_b_uid, "series-forward", "DELIVERED")]
    )
    assert [event["hop"] for event in study["events"]].count("complete") == 1
    assert orthanc.count_instances(study_uid, "CT") == 4 + len(series_b)
