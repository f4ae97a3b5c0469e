"""The README is the contract for set-up and configuration: keep it equal to the code."""

from __future__ import annotations

import subprocess
from pathlib import Path

from radrouter.config.reference import reference_markdown, reference_rows
from tests.cluster import HAPROXY, NODE_PORT, README_SERVERS, haproxy_config

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


def test_the_readme_haproxy_cfg_is_the_one_the_cluster_tests_run_and_haproxy_accepts_it(
    tmp_path: Path,
) -> None:
    config = haproxy_config(NODE_PORT, README_SERVERS)
    assert config.rstrip("\n") in (PROJECT / "README.md").read_text()
    (tmp_path / "haproxy.cfg").write_text(config)
    checked = subprocess.run(
        [HAPROXY, "-c", "-f", str(tmp_path / "haproxy.cfg")], capture_output=True, text=True
    )
    assert checked.returncode == 0, checked.stderr
