"""``radrouter config check``: a valid file passes; each kind of bad file exits 2 and says why."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import ValidationError
from typer.testing import CliRunner, Result

from radrouter import cli
from radrouter.config.settings import CONFIG_ENV


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Isolate RADROUTER_* variables (the CLI names --config in RADROUTER_CONFIG) and widen rich's console.

    A wide console keeps each message on one line whatever the length of the temporary path.
    """
    for key in list(os.environ):
        if key.startswith("RADROUTER_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv(CONFIG_ENV, "")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(cli.console, "width", 1000)


def check(path: Path) -> Result:
    return CliRunner().invoke(cli.app, ["config", "check", str(path)])


def write_yaml(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_config_check_valid_file_says_ok(tmp_path: Path) -> None:
    config = write_yaml(
        tmp_path / "radrouter.yaml",
        """
node: {ae_title: RADROUTER, port: 11113}
destinations:
  pacs: {host: 127.0.0.1, port: 4242, ae_title: ORTHANC}
rules:
  - name: brain
    match: {Modality: MR, SeriesDescription: {regex: "(?i)mprage"}}
    pipelines: [brain-extraction]
    results_to: [pacs]
""",
    )

    result = check(config)

    assert result.exit_code == 0, result.output
    assert f"{config}: OK" in result.output
    assert "1 rule(s), 1 destination(s)" in result.output


def test_config_check_bad_rule_exits_2_naming_the_rule_and_the_reason(tmp_path: Path) -> None:
    config = write_yaml(
        tmp_path / "radrouter.yaml",
        """
rules:
  - name: my-rule
    match: {SeriesDescriptionn: T1}
    pipelines: [brain-extraction]
""",
    )

    result = check(config)

    assert result.exit_code == 2, result.output
    assert "1 error(s)" in result.output
    assert "rules[0] (my-rule).match" in result.output
    assert "not DICOM keywords" in result.output
    assert "SeriesDescriptionn" in result.output
    assert "OK" not in result.output


def test_config_check_names_the_position_of_the_second_rule(tmp_path: Path) -> None:
    config = write_yaml(
        tmp_path / "radrouter.yaml",
        """
rules:
  - name: fine
    match: {Modality: MR}
    pipelines: [brain-extraction]
  - name: broken-regex
    match: {SeriesDescription: {regex: "(t1"}}
    pipelines: [brain-extraction]
""",
    )

    result = check(config)

    assert result.exit_code == 2, result.output
    assert "rules[1] (broken-regex).match.SeriesDescription" in result.output
    assert "invalid regular expression" in result.output
    assert "(fine)" not in result.output


def test_config_check_unknown_top_level_key_exits_2(tmp_path: Path) -> None:
    config = write_yaml(tmp_path / "radrouter.yaml", "nodes: {port: 11113}\n")

    result = check(config)

    assert result.exit_code == 2, result.output
    assert "nodes: Extra inputs are not permitted" in result.output


def test_config_check_missing_file_exits_2_with_clear_message(tmp_path: Path) -> None:
    missing = tmp_path / "does-not-exist.yaml"

    result = check(missing)

    assert result.exit_code == 2, result.output
    assert "config file not found" in result.output
    assert "does-not-exist.yaml" in result.output


def test_config_check_invalid_yaml_exits_2(tmp_path: Path) -> None:
    config = write_yaml(tmp_path / "radrouter.yaml", "node: {port: 11113\n")

    result = check(config)

    assert result.exit_code == 2, result.output
    assert "is not valid YAML" in result.output


def test_config_check_unknown_pipeline_exits_2(tmp_path: Path) -> None:
    config = write_yaml(
        tmp_path / "radrouter.yaml",
        """
rules:
  - name: lungs
    match: {Modality: CT}
    pipelines: [lung-nodules]
""",
    )

    result = check(config)

    assert result.exit_code == 2, result.output
    assert "unknown pipelines ['lung-nodules']" in result.output
    assert "brain-extraction" in result.output


@pytest.mark.parametrize(
    ("rule", "where", "what"),
    [
        (
            "match: {Modality: CT}\n    pipelines: [brain-extraction]\n    discard: true",
            "rules[0] (r)",
            "discard cannot",
        ),
        ("match: {Modality: CT}", "rules[0] (r)", "a rule needs an action"),
        ("retention: {}", "rules[0] (r).retention", "retention needs keep_images_h or keep_results_h"),
        ("retention: {keep_images_h: -1}", "rules[0] (r).retention.keep_images_h", "greater than or equal"),
        (
            "forward_to: [nowhere]",
            "(top level)",
            "rule 'r': forward_to names unknown destinations ['nowhere']",
        ),
        (
            "match: {orientation: axal}\n    forward_to: [pacs]",
            "rules[0] (r).match",
            "orientation cannot be ['axal']",
        ),
        (
            "match: {any: [{Modality: CT}, {SeriesDescription: {regex: '(x'}}]}\n    forward_to: [pacs]",
            "rules[0] (r).match.any[1].SeriesDescription.regex",
            "invalid regular expression",
        ),
        (
            "pipelines: [{name: brain-extraction, select: best}]",
            "rules[0] (r).pipelines[0] (brain-extraction).select",
            "'each'",
        ),
    ],
)
def test_config_check_explains_bad_rules(tmp_path: Path, rule: str, where: str, what: str) -> None:
    config = write_yaml(tmp_path / "radrouter.yaml", f"rules:\n  - name: r\n    {rule}\n")

    result = check(config)

    assert result.exit_code == 2, result.output
    assert str(config) in result.output
    assert f"{where}: " in result.output and what in result.output


def test_config_check_rejects_two_rules_with_one_name(tmp_path: Path) -> None:
    rule = "  - name: twice\n    forward_to: [pacs]\n"
    result = check(write_yaml(tmp_path / "radrouter.yaml", f"rules:\n{rule}{rule}"))

    assert result.exit_code == 2, result.output
    assert "used more than once: ['twice']" in result.output


@pytest.mark.parametrize(
    "command",
    [
        ["send", "--config", "{config}", "{config}"],
        ["db", "upgrade", "--config", "{config}"],
        ["evaluate", "{folder}", "--pipeline", "brain-extraction", "--config", "{config}"],
        ["deliveries", "list", "--config", "{config}"],
        ["pipelines", "list", "--config", "{config}"],
        ["rules", "test", "{folder}", "--config", "{config}"],
        ["config", "show", "--config", "{config}"],
    ],
    ids=lambda command: " ".join(command[:2]),
)
def test_every_command_explains_a_bad_config_file_instead_of_a_traceback(
    tmp_path: Path, command: list[str]
) -> None:
    config = write_yaml(tmp_path / "radrouter.yaml", "node: {port: not-a-port}\n")
    folder = tmp_path / "cases"
    folder.mkdir()
    arguments = [part.format(config=config, folder=folder) for part in command]

    result = CliRunner().invoke(cli.app, arguments)

    assert result.exit_code == 2, result.output
    assert f"{config}: 1 error(s)" in result.output
    assert "node.port" in result.output
    assert "Traceback" not in result.output and not isinstance(result.exception, ValidationError)
