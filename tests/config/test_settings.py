"""Settings: defaults, the YAML file, the environment, and what validation refuses."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import ValidationError

from radrouter.config.rules import Priority
from radrouter.config.settings import (
    CONFIG_ENV,
    BrokerSettings,
    CompletionSettings,
    DeliverySettings,
    Destination,
    InferenceSettings,
    NodeSettings,
    Settings,
    StorageSettings,
    WebSettings,
    load_settings,
)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No RADROUTER_* variable from the caller's shell, and whatever a test sets is undone afterwards.

    ``RADROUTER_CONFIG`` is set empty (no file), so a developer's own variable does not leak in.
    """
    for key in list(os.environ):
        if key.startswith("RADROUTER_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv(CONFIG_ENV, "")
    monkeypatch.chdir(tmp_path)


def write_yaml(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_defaults() -> None:
    settings = load_settings()

    assert settings.node.ae_title == "RADROUTER"
    assert settings.node.port == 11112
    assert (settings.web.host, settings.web.port) == ("127.0.0.1", 8080)
    assert settings.broker.url == ""
    assert settings.broker.resolved_url() == f"redis://127.0.0.1:{settings.broker.embedded_port}/0"
    assert settings.destinations == {"pacs": Destination(host="127.0.0.1", port=4242, ae_title="ORTHANC")}
    assert settings.default_priority is Priority.ROUTINE


def test_broker_url_when_given_is_used_as_is() -> None:
    broker = BrokerSettings(url="redis://broker.example:6379/2", embedded_port=7000)

    assert broker.resolved_url() == "redis://broker.example:6379/2"
    assert BrokerSettings(embedded_port=7000).resolved_url() == "redis://127.0.0.1:7000/0"


def test_default_rule_sends_brain_extraction_results_to_pacs() -> None:
    settings = load_settings()

    assert len(settings.rules) == 1
    rule = settings.rules[0]
    assert [request.name for request in rule.pipelines] == ["brain-extraction"]
    assert rule.results_to == ["pacs"]
    assert set(rule.results_to) <= set(settings.destinations)


def test_yaml_from_env_sets_one_key_and_keeps_every_other_default(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    defaults = load_settings()
    config = write_yaml(tmp_path / "radrouter.yaml", "node: {port: 11113}\n")
    monkeypatch.setenv(CONFIG_ENV, str(config))

    settings = load_settings()

    assert settings.node.port == 11113
    assert settings.node.ae_title == "RADROUTER"
    assert settings.node.model_dump(exclude={"port"}) == NodeSettings().model_dump(exclude={"port"})
    assert settings.model_dump(exclude={"node"}) == defaults.model_dump(exclude={"node"})
    assert settings.web == WebSettings()
    assert settings.storage == StorageSettings()
    assert settings.broker == BrokerSettings()
    assert settings.completion == CompletionSettings()
    assert settings.delivery == DeliverySettings()
    assert settings.inference == InferenceSettings()


def test_load_settings_with_path_reads_that_file_and_wins_over_env(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from_env = write_yaml(tmp_path / "env.yaml", "node: {port: 11114}\n")
    given = write_yaml(tmp_path / "given.yaml", "node: {port: 11113, ae_title: GIVEN}\n")
    monkeypatch.setenv(CONFIG_ENV, str(from_env))

    settings = load_settings(given)

    assert settings.node.port == 11113
    assert settings.node.ae_title == "GIVEN"
    assert os.environ[CONFIG_ENV] == str(from_env), "reading settings must not rewrite the environment"


def test_load_settings_with_missing_path_raises(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"missing\.yaml"):
        load_settings(tmp_path / "missing.yaml")


def test_config_env_naming_missing_file_raises(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(CONFIG_ENV, str(tmp_path / "gone.yaml"))

    with pytest.raises(FileNotFoundError, match=CONFIG_ENV):
        load_settings()


def test_env_override_wins_over_yaml_and_keeps_the_rest_of_the_section(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    config = write_yaml(tmp_path / "radrouter.yaml", "node: {port: 11113, ae_title: FROMYAML}\n")
    monkeypatch.setenv("RADROUTER_NODE__PORT", "12000")

    settings = load_settings(config)

    assert settings.node.port == 12000
    assert settings.node.ae_title == "FROMYAML"


def test_keyword_override_wins_over_env_and_yaml(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    config = write_yaml(tmp_path / "radrouter.yaml", "node: {port: 11113, ae_title: FROMYAML}\n")
    monkeypatch.setenv("RADROUTER_NODE__PORT", "12000")

    settings = load_settings(config, node={"port": 13000})

    assert settings.node.port == 13000
    assert settings.node.ae_title == "FROMYAML"


def test_yaml_destinations_and_rules_replace_the_defaults(tmp_path: Path) -> None:
    config = write_yaml(
        tmp_path / "radrouter.yaml",
        """
destinations:
  archive: {host: 10.0.0.5, port: 104, ae_title: ARCHIVE}
rules:
  - name: ct-to-archive
    match: {Modality: CT}
    pipelines: [brain-extraction]
    results_to: [archive]
""",
    )

    settings = load_settings(config)

    assert list(settings.destinations) == ["archive"]
    assert [rule.name for rule in settings.rules] == ["ct-to-archive"]


def test_rule_naming_unknown_destination_is_rejected(tmp_path: Path) -> None:
    config = write_yaml(
        tmp_path / "radrouter.yaml",
        """
rules:
  - name: to-nowhere
    match: {Modality: MR}
    pipelines: [brain-extraction]
    results_to: [pacs, nowhere]
""",
    )

    with pytest.raises(ValidationError) as caught:
        load_settings(config)

    message = str(caught.value)
    assert "to-nowhere" in message
    assert "unknown destinations" in message
    assert "nowhere" in message


def test_rule_with_non_dicom_keyword_is_rejected_naming_it(tmp_path: Path) -> None:
    config = write_yaml(
        tmp_path / "radrouter.yaml",
        """
rules:
  - name: typo
    match: {SeriesDescriptionn: T1}
    pipelines: [brain-extraction]
""",
    )

    with pytest.raises(ValidationError) as caught:
        load_settings(config)

    errors = caught.value.errors()
    assert len(errors) == 1
    assert errors[0]["loc"] == ("rules", 0, "match")
    assert "SeriesDescriptionn" in errors[0]["msg"]
    assert "not DICOM keywords" in errors[0]["msg"]


def test_association_keys_are_accepted_in_match(tmp_path: Path) -> None:
    config = write_yaml(
        tmp_path / "radrouter.yaml",
        """
rules:
  - name: from-scanner
    match: {calling_ae: SCANNER1, called_ae: RADROUTER, Modality: MR}
    pipelines: [brain-extraction]
""",
    )

    settings = load_settings(config)

    assert set(settings.rules[0].match.conditions) == {"calling_ae", "called_ae", "Modality"}


def test_invalid_regex_is_rejected(tmp_path: Path) -> None:
    config = write_yaml(
        tmp_path / "radrouter.yaml",
        """
rules:
  - name: bad-regex
    match: {SeriesDescription: {regex: "(t1|mprage"}}
    pipelines: [brain-extraction]
""",
    )

    with pytest.raises(ValidationError, match="invalid regular expression") as caught:
        load_settings(config)

    assert caught.value.errors()[0]["loc"][:3] == ("rules", 0, "match")


def test_condition_with_two_tests_is_rejected(tmp_path: Path) -> None:
    config = write_yaml(
        tmp_path / "radrouter.yaml",
        """
rules:
  - name: two-tests
    match: {Modality: {equals: MR, regex: "M."}}
""",
    )

    with pytest.raises(ValidationError, match="exactly one of"):
        load_settings(config)


def test_unknown_top_level_key_is_rejected(tmp_path: Path) -> None:
    config = write_yaml(tmp_path / "radrouter.yaml", "node: {port: 11113}\nnodes: {port: 11114}\n")

    with pytest.raises(ValidationError) as caught:
        load_settings(config)

    errors = caught.value.errors()
    assert [(error["type"], error["loc"]) for error in errors] == [("extra_forbidden", ("nodes",))]


def test_unknown_key_inside_a_rule_is_rejected(tmp_path: Path) -> None:
    config = write_yaml(
        tmp_path / "radrouter.yaml",
        """
rules:
  - name: misspelt
    pipelines: [brain-extraction]
    result_to: [pacs]
""",
    )

    with pytest.raises(ValidationError) as caught:
        load_settings(config)

    assert caught.value.errors()[0]["loc"] == ("rules", 0, "result_to")


def test_out_of_range_port_from_env_is_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RADROUTER_NODE__PORT", "70000")

    with pytest.raises(ValidationError) as caught:
        Settings()

    assert caught.value.errors()[0]["loc"] == ("node", "port")


def test_a_bare_yes_or_no_condition_is_rejected_not_read_as_a_number(tmp_path: Path) -> None:
    path = write_yaml(
        tmp_path / "c.yaml",
        """
rules:
  - name: ambiguous
    match: {ContrastBolusAgent: no}
""",
    )
    with pytest.raises(ValidationError, match="ambiguous"):
        load_settings(path)


def test_a_destination_given_the_sr_without_its_seg_is_rejected() -> None:
    """The SR references the SEG: sent alone, its references would resolve nowhere at that PACS."""
    with pytest.raises(ValidationError, match="`sr` needs `seg`"):
        Destination(host="pacs", port=104, ae_title="PACS", results=["sr"])
    assert Destination(host="pacs", port=104, ae_title="PACS", results=["seg", "key_images"]).results


def test_the_viewer_url_must_name_the_study_and_nothing_else() -> None:
    good = "https://ohif.example/viewer?StudyInstanceUIDs={study_uid}"
    assert Settings(viewer={"url_template": good}).viewer.url_template == good
    assert Settings().viewer.url_template == ""
    with pytest.raises(ValidationError, match="must contain"):
        Settings(viewer={"url_template": "https://ohif.example/viewer"})
    with pytest.raises(ValidationError, match="only"):
        Settings(viewer={"url_template": "https://ohif.example/{patient_id}/{study_uid}"})


def test_a_cluster_needs_a_shared_postgresql_index() -> None:
    with pytest.raises(ValidationError, match=r"cluster\.enabled needs a PostgreSQL storage\.index_url"):
        Settings(cluster={"enabled": True})
    shared = Settings(cluster={"enabled": True}, storage={"index_url": "postgresql+psycopg://db/radrouter"})
    assert shared.cluster.enabled
    with pytest.raises(
        ValidationError, match=r"flush_interval_s must be shorter than completion\.quiet_period_s"
    ):
        Settings(
            cluster={"enabled": True, "flush_interval_s": 0.5},
            completion={"quiet_period_s": 0.5},
            storage={"index_url": "postgresql+psycopg://db/radrouter"},
        )
