"""The README is the contract for set-up and configuration: keep it equal to the code."""

from __future__ import annotations

from pathlib import Path

from radrouter.config.reference import reference_markdown, reference_rows

PROJECT = Path(__file__).resolve().parents[1]


def test_readme_documents_every_option_as_the_schema_defines_it() -> None:
    readme = (PROJECT / "README.md").read_text()
    assert reference_markdown() in readme, "regenerate the table with `radrouter config reference`"
    keys = [key for key, _, _ in reference_rows()]
    for contract_key in ("node.ae_title", "node.port", "web.host", "web.port", "storage.root", "broker.url"):
        assert contract_key in keys
    assert "destinations.<name>.host" in keys and "destinations.<name>.ae_title" in keys


def test_ci_runs_the_readme_test_command() -> None:
    readme = (PROJECT / "README.md").read_text()
    assert "make test" in readme and "make run" in readme
    assert (PROJECT / ".ci" / "run").read_text().strip().splitlines()[-1] == "make test"
