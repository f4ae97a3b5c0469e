"""The configuration page in Chromium: every section of the settings in use, no secret readable."""

from __future__ import annotations

from pathlib import Path

from playwright.sync_api import Page, expect

from radrouter.config.settings import Settings
from radrouter.storage.index import Index
from tests.browser import screenshot
from tests.services import free_port
from tests.web.served import serving

SECRETS = ("t0ken-s3cret", "db-s3cret", "hunter2", "hl7-s3cret")


def test_the_configuration_page_masks_every_secret(tmp_path: Path, browser_page: Page) -> None:
    # The secrets are set for this test: a token (so the page is opened with it), passwords in the
    # index and broker URLs (the index object given to the app is SQLite, so nothing dials them).
    settings = Settings(
        storage={"root": tmp_path, "index_url": "postgresql+psycopg://radrouter:db-s3cret@db:5432/rr"},
        broker={"url": "redis://:hunter2@redis:6379/0"},
        web={"api_token": "t0ken-s3cret"},
        viewer={
            "url_template": "https://viewer:hl7-s3cret@ohif.example/viewer?StudyInstanceUIDs={study_uid}"
        },
    )
    index = Index(f"sqlite:///{tmp_path / 'index.sqlite3'}")
    with serving(settings, index, free_port()) as url:
        browser_page.set_extra_http_headers({"Authorization": "Bearer t0ken-s3cret"})
        browser_page.goto(f"{url}/config")
        config = browser_page.locator("#config")
        expect(config.locator('[data-section="storage"]')).to_contain_text(
            "postgresql+psycopg://radrouter:***@db:5432/rr"
        )
        expect(config.locator('[data-section="broker"]')).to_contain_text("redis://:***@redis:6379/0")
        expect(config.locator('[data-section="destinations"]')).to_be_attached()
        html = browser_page.content()
        assert not [secret for secret in SECRETS if secret in html]
        screenshot(browser_page, "configuration-masked")
    index.engine.dispose()
