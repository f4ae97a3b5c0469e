"""``radrouter conformance`` writes docs/conformance.md, and the SCP accepts exactly what it lists."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from radrouter.cli import app
from radrouter.config.settings import Settings
from radrouter.router.assemble import StudyAssembler
from radrouter.router.receive.scp import SCP_ABSTRACT_SYNTAXES, StorageSCP
from radrouter.storage.index import Index
from radrouter.storage.store import InstanceStore

DOCUMENT = Path(__file__).parents[2] / "docs" / "conformance.md"


def test_the_conformance_statement_in_docs_is_the_generated_one() -> None:
    result = CliRunner().invoke(app, ["conformance"])
    assert result.exit_code == 0, result.output
    assert result.output == DOCUMENT.read_text(), "run `radrouter conformance > docs/conformance.md`"


def test_the_statement_lists_every_sop_class_the_scp_accepts(tmp_path: Path) -> None:
    settings = Settings(storage={"root": tmp_path})
    index = Index(settings.storage.resolved_index_url(), migrate=True)
    scp = StorageSCP(settings, InstanceStore(tmp_path), index, StudyAssembler(settings.completion, print))
    accepted = [str(context.abstract_syntax) for context in scp.ae.supported_contexts]
    assert sorted(accepted) == sorted(SCP_ABSTRACT_SYNTAXES)
    statement = DOCUMENT.read_text()
    assert all(f"`{uid}`" in statement for uid in accepted)
    index.engine.dispose()
