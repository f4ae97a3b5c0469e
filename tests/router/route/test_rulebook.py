"""Rules reload when the config file changes; an invalid edit keeps the last valid rules."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from radrouter.config.settings import CONFIG_ENV, load_settings
from radrouter.router.route.rulebook import RuleBook

RULE = """
rules:
  - name: {name}
    match: {{Modality: MR}}
    pipelines: [brain-extraction]
"""


@pytest.fixture(autouse=True)
def own_config_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CONFIG_ENV, "")  # load_settings sets it; keep it from leaking into other tests


def edit(path: Path, text: str) -> None:
    """Write and move the modification time on, as an editor saving a second later would."""
    path.write_text(text)
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))


def test_an_edited_file_is_read_at_the_next_call(tmp_path: Path) -> None:
    config = tmp_path / "radrouter.yaml"
    config.write_text(RULE.format(name="first"))
    book = RuleBook(load_settings(config), config)
    assert [r.name for r in book.current().rules] == ["first"]
    assert book.current().generation == 0

    edit(config, RULE.format(name="second"))

    assert [r.name for r in book.current().rules] == ["second"]
    assert book.current().generation == 1  # read once, not at every call


def test_an_invalid_edit_keeps_the_previous_rules_and_says_why(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = tmp_path / "radrouter.yaml"
    config.write_text(RULE.format(name="good"))
    book = RuleBook(load_settings(config), config)

    with caplog.at_level(logging.ERROR):
        edit(config, RULE.format(name="bad").replace("Modality", "Modalty"))
        assert [r.name for r in book.current().rules] == ["good"]
    assert "keeping the previous rules" in caplog.text and "Modalty" in caplog.text

    edit(config, RULE.format(name="fixed"))
    assert [r.name for r in book.current().rules] == ["fixed"]


def test_a_deleted_file_keeps_the_rules(tmp_path: Path) -> None:
    config = tmp_path / "radrouter.yaml"
    config.write_text(RULE.format(name="kept"))
    book = RuleBook(load_settings(config), config)
    config.unlink()
    assert [r.name for r in book.current().rules] == ["kept"]


def test_reload_can_be_switched_off(tmp_path: Path) -> None:
    config = tmp_path / "radrouter.yaml"
    config.write_text("routing: {reload: false}\n" + RULE.format(name="fixed-at-start"))
    book = RuleBook(load_settings(config), config)
    edit(config, RULE.format(name="ignored"))
    assert [r.name for r in book.current().rules] == ["fixed-at-start"]
