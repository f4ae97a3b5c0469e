"""The README's rule examples are valid configuration and do on real data what the README says."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from radrouter.config.settings import CONFIG_ENV, Settings, load_settings
from radrouter.inference.registry import available
from radrouter.router.route.header import headers_from_folder
from radrouter.router.route.rules import RouteDecision, decide
from tests.services import CT_HEAD, DATA, MPRAGE

README = Path(__file__).resolve().parents[2] / "README.md"


def examples() -> dict[str, str]:
    section = README.read_text().split("## Routing rules", 1)[1].split("\n## ", 1)[0]
    found = {}
    for block in re.finditer(r"```yaml\n(.*?)```", section, re.DOTALL):
        paragraph = section[: block.start()].rstrip().rsplit("\n\n", 1)[-1]
        found[paragraph.split(":", 1)[0]] = block.group(1)  # "CT: forward every series ..." -> CT
    return found


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Settings]:
    loaded = {}
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(CONFIG_ENV, "")
        for name, text in examples().items():
            path = tmp_path_factory.mktemp("readme") / f"{name}.yaml"
            path.write_text(text)
            loaded[name] = load_settings(path)
    return loaded


def route(settings: Settings, folder: Path, calling_ae: str) -> RouteDecision:
    headers = headers_from_folder(folder, calling_ae, "RADROUTER")
    return decide(settings.rules, headers, settings.routing.orientation_tolerance_deg)


def test_there_is_an_example_for_ct_mr_and_x_ray(settings: dict[str, Settings]) -> None:
    assert set(settings) == {"CT", "MR", "X-ray"}
    for example in settings.values():
        assert {p.name for rule in example.rules for p in rule.pipelines} <= set(available(example))


def test_ct_example_forwards_everything_and_skips_a_chest_ct_with_too_few_slices(
    settings: dict[str, Settings],
) -> None:
    lidc = route(settings["CT"], DATA / "ct-chest-lidc0001-partial", "CT_ROOM1")
    assert [f.destination for f in lidc.forwards] == ["pacs"]
    assert lidc.runs == []
    assert "slices = '16' is outside [50, inf]" in lidc.series[0].notes[0]
    head = route(settings["CT"], CT_HEAD, "CT_ROOM1")
    assert head.matched == {head.series[0].series_uid: ["ct-scanner-to-pacs"]}


def test_mr_example_runs_brain_extraction_and_drops_the_qa_scanner(settings: dict[str, Settings]) -> None:
    decision = route(settings["MR"], MPRAGE, "MR_ROOM1")
    assert [(run.pipeline, run.results_to) for run in decision.runs] == [("brain-extraction", ["pacs"])]
    qa = route(settings["MR"], MPRAGE, "MR_QA")
    assert qa.runs == [] and len(qa.discarded) == 1


def test_x_ray_example_sends_chest_radiographs_to_the_archive_and_the_rest_to_pacs(
    settings: dict[str, Settings],
) -> None:
    decision = route(settings["X-ray"], DATA / "cxr", "DR_ROOM")
    destinations = {f.series_uid: f.destination for f in decision.forwards}
    by_kind = {trace.kind: destinations[trace.series_uid] for trace in decision.series}
    # The NIH image (a secondary capture) has neither BodyPartExamined nor ViewPosition: the default rule.
    assert by_kind == {"image": "archive", "secondary_capture": "pacs"}
