"""The Alembic migrations build exactly the models' schema, on SQLite and on a real PostgreSQL server.

A model change without its migration fails here: run `radrouter db revision -m "what changed"`.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Enum, create_engine, inspect, text
from typer.testing import CliRunner

from radrouter.cli import app
from radrouter.config.rules import Priority
from radrouter.config.settings import CONFIG_ENV
from radrouter.storage.index import Base, Index, Study, Verdict, WorklistItem
from radrouter.storage.migrate import IndexNotMigrated, alembic_config, current_revision, head_revision
from tests.services import PostgreSQL


def _differences(url: str) -> list[object]:
    engine = create_engine(url)
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return list(compare_metadata(context, Base.metadata))


def test_sqlite_migrations_match_the_models(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/index.sqlite3"
    index = Index(url)  # an embedded index upgrades itself
    assert current_revision(create_engine(url)) == head_revision()
    assert _differences(url) == []
    # The connection that migrated goes back to the pool: it must enforce foreign keys again.
    with index.engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1


def test_postgresql_migrations_match_the_models(postgres: PostgreSQL) -> None:
    url = postgres.create_database()
    Index(url, migrate=True)
    assert current_revision(create_engine(url)) == head_revision()
    assert _differences(url) == []


def test_a_shared_index_is_only_checked_not_migrated(postgres: PostgreSQL) -> None:
    url = postgres.create_database()
    with pytest.raises(IndexNotMigrated, match="radrouter db upgrade"):
        Index(url)
    assert inspect(create_engine(url)).get_table_names() == []


def test_db_upgrade_command_then_downgrade_leaves_nothing(
    postgres: PostgreSQL, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = postgres.create_database()
    config = tmp_path / "radrouter.yaml"
    config.write_text(f"storage: {{root: {tmp_path}, index_url: '{url}'}}\n")
    monkeypatch.setenv(CONFIG_ENV, str(config))
    for _ in range(2):  # a second run finds the index current and changes nothing
        result = CliRunner().invoke(app, ["db", "upgrade"])
        assert result.exit_code == 0, result.output
    index = Index(url)
    with index.session() as session:
        session.add(Study(uid="1.2.3"))
    with index.session() as session:
        assert session.get(Study, "1.2.3") is not None
    index.engine.dispose()

    engine = create_engine(url)
    with engine.begin() as connection:
        connection.execute(text("DELETE FROM studies"))
        settings = alembic_config()
        settings.attributes["connection"] = connection
        command.downgrade(settings, "base")
    with engine.connect() as connection:
        tables = set(inspect(connection).get_table_names()) - {"alembic_version"}
        types = connection.execute(text("SELECT typname FROM pg_type WHERE typtype = 'e'")).scalars().all()
    assert tables == set() and types == []


def test_an_index_made_before_migrations_is_refused_with_a_reason(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/old.sqlite3"
    Base.metadata.create_all(create_engine(url))  # how the index was made before Alembic
    with pytest.raises(IndexNotMigrated, match="predates migrations"):
        Index(url)


def test_postgresql_enum_types_hold_every_value_of_the_models(postgres: PostgreSQL) -> None:
    """compare_metadata does not see a value added to a Python enum: a migration must add it."""
    url = postgres.create_database()
    Index(url, migrate=True)
    expected = {
        column.type.name: set(column.type.enums)
        for table in Base.metadata.tables.values()
        for column in table.columns
        if isinstance(column.type, Enum)
    }
    query = text("SELECT t.typname, e.enumlabel FROM pg_enum e JOIN pg_type t ON e.enumtypid = t.oid")
    found: dict[str, set[str]] = {}
    with create_engine(url).connect() as connection:
        for type_name, label in connection.execute(query):
            found.setdefault(type_name, set()).add(label)
    assert found == expected


def _index_url(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    if backend == "sqlite":
        return f"sqlite:///{tmp_path}/index.sqlite3"
    server: PostgreSQL = request.getfixturevalue("postgres")
    return server.create_database()


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_coded_text_written_before_the_enum_columns_reads_back_as_enums(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """Rows an older node wrote (priorities, kinds and verdicts as text) survive the move to enums."""
    url = _index_url(backend, tmp_path, request)
    engine = create_engine(url)
    with engine.begin() as connection:
        settings = alembic_config()
        settings.attributes["connection"] = connection
        command.upgrade(settings, "c0a3f84fc7b6")  # the revision before coded values became enums
        connection.execute(
            text(
                "INSERT INTO studies (uid, state, revision, first_received_at, last_received_at,"
                " sent_as_high_priority) VALUES ('1.2', 'DONE', 1, :at, :at, false)"
            ),
            {"at": datetime(2026, 1, 1)},
        )
        connection.execute(
            text(
                "INSERT INTO worklist_items (study_uid, priority, base_priority, arrived_at, changed_at,"
                " verdict) VALUES ('1.2', 'stat', 'routine', :at, :at, 'agree')"
            ),
            {"at": datetime(2026, 1, 1)},
        )
        connection.execute(
            text(
                "INSERT INTO priority_changes (study_uid, old_priority, new_priority, source, reason, at)"
                " VALUES ('1.2', NULL, 'stat', 'rule', 'ED head CT', :at)"
            ),
            {"at": datetime(2026, 1, 1)},
        )
    engine.dispose()

    index = Index(url, migrate=True)
    with index.session() as session:
        item = session.get(WorklistItem, "1.2")
        assert item is not None
        assert (item.priority, item.base_priority, item.verdict) == (
            Priority.STAT,
            Priority.ROUTINE,
            Verdict.AGREE,
        )
        (change,) = item.changes
        assert (change.old_priority, change.new_priority) == (None, Priority.STAT)
    index.engine.dispose()
