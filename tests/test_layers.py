"""The import-linter contract holds, and it would catch the router reaching into inference."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint_imports(tree: Path) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "PYTHONPATH": str(tree)}
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", str(ROOT / "pyproject.toml")],
        cwd=tree,
        env=environment,
        capture_output=True,
        text=True,
        check=False,
    )


def test_the_layers_hold_in_the_tree_as_it_is(tmp_path: Path) -> None:
    shutil.copytree(ROOT / "radrouter", tmp_path / "radrouter")
    result = lint_imports(tmp_path)
    assert result.returncode == 0, result.stdout


def test_routing_that_imports_inference_breaks_the_contract(tmp_path: Path) -> None:
    shutil.copytree(ROOT / "radrouter", tmp_path / "radrouter")
    rules = tmp_path / "radrouter" / "router" / "route" / "rules.py"
    rules.write_text(rules.read_text() + "\nfrom radrouter.inference.run import JobRunner  # noqa\n")

    result = lint_imports(tmp_path)

    assert result.returncode != 0
    assert "radrouter.router.route.rules -> radrouter.inference.run" in result.stdout
