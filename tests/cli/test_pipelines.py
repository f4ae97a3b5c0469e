"""``radrouter pipelines list`` and the config check of pipelines and pools."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from radrouter.cli import app
from radrouter.config.settings import CONFIG_ENV
from tests.user_models import TORCHSCRIPT_VERSION, user_pipelines_yaml

DESTINATIONS = "destinations: {pacs: {host: 127.0.0.1, port: 4242, ae_title: PACS}}\n"


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "radrouter.yaml"
    path.write_text(DESTINATIONS + user_pipelines_yaml(tmp_path / "models"))
    monkeypatch.setenv(CONFIG_ENV, str(path))  # the CLI sets it too; monkeypatch restores it after the test
    return path


def test_list_shows_name_version_queue_and_source(config: Path) -> None:
    result = CliRunner().invoke(app, ["pipelines", "list", "--config", str(config)])
    assert result.exit_code == 0, result.output
    rows = {line.split("│")[1].strip(): line for line in result.output.splitlines() if line.count("│") > 4}
    assert "deepbet 1.0.2" in rows["brain-extraction"] and "built-in" in rows["brain-extraction"]
    assert "pool.cpu" in rows["ct-lung"]
    assert TORCHSCRIPT_VERSION in rows["threshold-ts"] and "torchscript" in rows["threshold-ts"]
    assert "monai-bundle" in rows["threshold-bundle"]


def test_check_rejects_a_pool_naming_an_unknown_pipeline(config: Path) -> None:
    config.write_text(config.read_text().replace("broken-model]}", "broken-model, no-such-model]}"))
    result = CliRunner().invoke(app, ["config", "check", str(config)])
    assert result.exit_code == 2
    assert "unknown pipelines ['no-such-model']" in result.output


def test_check_rejects_a_torchscript_pipeline_without_a_version(config: Path) -> None:
    config.write_text(config.read_text().replace(f'version: "{TORCHSCRIPT_VERSION}"', "", 1))
    result = CliRunner().invoke(app, ["config", "check", str(config)])
    assert result.exit_code == 2
    assert "pipelines.threshold-ts: Value error, a TorchScript pipeline needs a version" in result.output


def test_the_readme_example_is_a_valid_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The "bring your own model" example passes `config check` and names a loadable model file."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme[readme.index("### Bring your own model") :]
    example = section[section.index("```yaml\n") + 8 : section.index("```\n", section.index("```yaml"))]
    path = tmp_path / "radrouter.yaml"
    path.write_text(example)
    monkeypatch.setenv(CONFIG_ENV, str(path))  # the CLI sets it too; monkeypatch restores it after the test
    result = CliRunner().invoke(app, ["config", "check", str(path)])
    assert result.exit_code == 0, result.output
    listed = CliRunner().invoke(app, ["pipelines", "list", "--config", str(path)])
    assert "pool.gpu" in listed.output and "3.0.1" in listed.output
