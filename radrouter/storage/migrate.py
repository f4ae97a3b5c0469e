"""Schema migrations of the index (Alembic): one step at start-up, not a race between processes.

The supervisor (`radrouter up`) or `radrouter db upgrade` brings the database to the newest revision
before the SCP, workers and web app open it. An embedded SQLite index is brought up to date by
whichever process opens it (one machine, one file, SQLite's write lock serialises them), so that
existing installations get new columns without a separate step; a PostgreSQL index shared by several
machines is only checked, and a process refuses to start on an index at an older revision.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, inspect
from sqlalchemy.engine import Engine

SCRIPT_LOCATION = "radrouter.storage:migrations"


class IndexNotMigrated(RuntimeError):
    """The index is at another revision than this code's models: run ``radrouter db upgrade``."""


def alembic_config(url: str = "") -> Config:
    """Alembic's configuration, built in code: no alembic.ini to ship or to find."""
    config = Config()
    config.set_main_option("script_location", SCRIPT_LOCATION)
    if url:
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def upgrade(engine: Engine) -> None:
    """Bring the database to the newest revision (a no-op when it is there already)."""
    if current_revision(engine) is None and inspect(engine).has_table("studies"):
        raise IndexNotMigrated(
            f"the index at {engine.url.render_as_string(hide_password=True)} has tables but no schema "
            "revision: it predates migrations (radrouter 0.1 development builds); move it aside to start "
            "a new one"
        )
    config = alembic_config()
    with engine.connect() as connection:
        sqlite = connection.dialect.name == "sqlite"
        if sqlite:
            # Batch mode recreates a table by copy, drop and rename, and SQLite refuses to drop a table
            # other rows refer to (a worklist item's priority changes) while it enforces foreign keys:
            # they are checked once, before the migration commits. The pragma only takes effect outside
            # a transaction, hence on the connection, around it.
            connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
            connection.commit()  # ends SQLAlchemy's autobegun transaction (SQLite itself began none)
        try:
            with connection.begin():
                config.attributes["connection"] = connection
                command.upgrade(config, "head")
                broken = connection.exec_driver_sql("PRAGMA foreign_key_check").all() if sqlite else []
                if broken:
                    raise RuntimeError(f"the migration left rows referring to missing ones: {broken[:5]}")
        finally:
            if sqlite:
                connection.rollback()  # a failed upgrade leaves its transaction for the pragma to wait on
                connection.exec_driver_sql("PRAGMA foreign_keys=ON")
                connection.commit()


def ensure_current(engine: Engine) -> None:
    """Upgrade an embedded SQLite index; require a shared (PostgreSQL) one to be at the newest revision."""
    current, head = current_revision(engine), head_revision()
    if current == head:
        return
    if engine.dialect.name == "sqlite":
        upgrade(engine)
        return
    raise IndexNotMigrated(
        f"the index at {engine.url.render_as_string(hide_password=True)} is at revision {current}, "
        f"this radrouter needs {head}: run `radrouter db upgrade` once (compose: the migrate service)"
    )


def autogenerate(message: str) -> list[Path]:
    """Write a new revision with the difference between the migrations and the models.

    The migrations are applied to an empty scratch SQLite database and compared with the models, so no
    server is needed; the operations are rendered in batch mode, which both SQLite and PostgreSQL run.
    """
    with tempfile.TemporaryDirectory(prefix="radrouter-autogenerate-") as scratch:
        url = f"sqlite:///{scratch}/index.sqlite3"
        engine = create_engine(url)
        upgrade(engine)
        engine.dispose()
        config = alembic_config(url)
        ruff = Path(sys.executable).with_name("ruff")
        if ruff.is_file():  # the revision then passes `make lint` as written
            config.set_section_option("post_write_hooks", "hooks", "format, fix")
            for hook, options in (("fix", "check --fix --quiet"), ("format", "format --quiet")):
                config.set_section_option("post_write_hooks", f"{hook}.type", "exec")
                config.set_section_option("post_write_hooks", f"{hook}.executable", str(ruff))
                config.set_section_option(
                    "post_write_hooks", f"{hook}.options", f"{options} REVISION_SCRIPT_FILENAME"
                )
        scripts = command.revision(config, message=message, autogenerate=True)
    written = scripts if isinstance(scripts, list) else [scripts]
    return [Path(script.path) for script in written if script is not None]
