"""What a radiologist sees: a chest CT through the node, read in the OHIF viewer in a real browser.

The session node's `viewer` destination (the test Orthanc 1.10, which refuses Label Map SEG) receives
the forwarded CT, ct-lung's SEG (its BINARY stand-in) with the SR on it, and the key images. OHIF's
built app reads it over Orthanc's DICOMweb in headless Chromium; the screenshots are kept in
artefacts/ohif/ (README shows one).
"""

from __future__ import annotations

from collections.abc import Iterator
from io import BytesIO
from typing import Any

import numpy as np
import pydicom
import pytest
from PIL import Image
from playwright.sync_api import Page, expect, sync_playwright

from radrouter.inference.models.ct_lung import CTLung
from tests.browser import ARTEFACTS as BROWSER_ARTEFACTS
from tests.browser import CHROMIUM
from tests.ohif import OhifServer, ohif_dist
from tests.services import CT_CHEST, Node, Orthanc, as_new_study, storescu, wait_until
from tests.user_models import VIEWER_TESTER

expect.set_options(timeout=60_000)  # the shared test machine is slow at times
ARTEFACTS = BROWSER_ARTEFACTS / "ohif"
SEG, SR, KEY_IMAGES = CTLung.series_number, CTLung.series_number + 1, CTLung.series_number + 2
#: Software WebGL: the test machine has no GPU, and OHIF draws with WebGL.
SOFTWARE_WEBGL = ["--use-gl=angle", "--use-angle=swiftshader", "--enable-unsafe-swiftshader"]


@pytest.fixture(scope="module")
def study(node: Node, orthanc: Orthanc, tmp_path_factory: pytest.TempPathFactory) -> str:
    files = as_new_study(
        sorted(p for p in CT_CHEST.iterdir() if p.is_file() and not p.name.endswith(".txt")),
        tmp_path_factory.mktemp("viewer"),
    )
    study_uid = str(pydicom.dcmread(files[0], stop_before_pixels=True).StudyInstanceUID)
    sent = storescu(node.port, files, calling_ae=VIEWER_TESTER)
    assert sent.returncode == 0, sent.stderr
    settled = wait_until(
        lambda: (s := node.study(study_uid)).get("state") in ("DONE", "FAILED") and s, 300, "study settled"
    )
    assert settled["state"] == "DONE", settled
    assert {d["state"] for d in settled["deliveries"] + settled["forwards"]} == {"DELIVERED"}
    # `viewer` lists key images: the Secondary Captures and their Key Object Selection went too.
    assert {d["kind"] for d in settled["deliveries"]} == {"SEG", "SR", "SC", "KO"}
    return study_uid


@pytest.fixture(scope="module")
def viewer(orthanc: Orthanc) -> Iterator[OhifServer]:
    server = OhifServer(ohif_dist(), orthanc.url)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def page() -> Iterator[Page]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--disable-dev-shm-usage", *SOFTWARE_WEBGL]
        )
        try:
            opened = browser.new_page(viewport={"width": 1600, "height": 900})
            opened.set_default_timeout(60_000)
            yield opened
        finally:
            browser.close()


def _thumbnail(page: Page, series_number: int) -> Any:
    return page.locator(f'[data-cy^="study-browser-thumbnail"][data-series="{series_number}"]')


#: As for a radiologist who has seen them before: OHIF's first-visit tour and its investigational-use
#: notice (both stored in the browser) would cover the viewport.
SEEN_BEFORE = """
localStorage.setItem('shownTours', JSON.stringify(['basicViewerTour']));
sessionStorage.setItem('investigationalUseDialog', 'confirmed');
"""


def _pixels_near(png: bytes, colour: tuple[int, int, int], tolerance: int = 40) -> int:
    pixels = np.asarray(Image.open(BytesIO(png)).convert("RGB"), dtype=np.int16)
    return int((np.abs(pixels - np.array(colour)).max(axis=-1) <= tolerance).sum())


def _shows_every_segment_colour(page: Page) -> bool:
    viewport = page.locator('[data-cy="viewport-pane"]').first.screenshot()
    return all(_pixels_near(viewport, segment.color_rgb) > 50 for segment in CTLung.segments)


def test_the_study_opens_in_ohif_with_seg_sr_and_key_images(
    study: str, orthanc: Orthanc, viewer: OhifServer, page: Page
) -> None:
    key_image_files = orthanc.instance_files(orthanc.find_series(study, "OT")[0])
    assert key_image_files and pydicom.dcmread(BytesIO(key_image_files[0])).SeriesNumber == KEY_IMAGES
    ARTEFACTS.mkdir(parents=True, exist_ok=True)

    page.add_init_script(SEEN_BEFORE)
    try:
        _read_in_ohif(page, viewer, study)
    finally:
        page.screenshot(path=str(ARTEFACTS / "ohif-last.png"))


def _read_in_ohif(page: Page, viewer: OhifServer, study: str) -> None:
    page.goto(f"{viewer.url}/viewer?StudyInstanceUIDs={study}")
    descriptions = {
        SEG: "AI ct-lung SEG",
        SR: "AI ct-lung report",
        KEY_IMAGES: "AI ct-lung key images",
    }
    for number, description in descriptions.items():
        label = _thumbnail(page, number).locator('[data-cy="series-description-label"]')
        expect(label).to_have_text(description)

    _thumbnail(page, SEG).dblclick()
    page.get_by_role("button", name="Yes", exact=True).click()  # "Do you want to open this Segmentation?"
    try:  # OHIF opens its segmentation panel once the SEG is loaded; or else a click does
        expect(page.get_by_text(CTLung.segments[0].name, exact=True).first).to_be_visible(timeout=20_000)
    except AssertionError:
        page.locator('[data-cy="panelSegmentation-btn"]').click()
    for segment in CTLung.segments:  # named in the segmentation panel
        expect(page.get_by_text(segment.name, exact=True).first).to_be_visible()
    wait_until(lambda: _shows_every_segment_colour(page), 60, "the SEG drawn over the CT", interval_s=1)
    page.screenshot(path=str(ARTEFACTS / "ohif-seg.png"))

    _thumbnail(page, KEY_IMAGES).dblclick()
    overlay = page.locator('[data-cy="viewport-overlay-top-left"]').first
    expect(overlay).to_contain_text(descriptions[KEY_IMAGES])
    # The burned-in outlines and legend swatches, in each lung's colour (the SEG is not shown here).
    wait_until(lambda: _shows_every_segment_colour(page), 60, "the key image drawn", interval_s=1)
    page.screenshot(path=str(ARTEFACTS / "ohif-key-images.png"))
