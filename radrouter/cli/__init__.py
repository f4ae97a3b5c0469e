"""The ``radrouter`` command line: one typer app, one ``--config`` option, one config-error path."""

from radrouter.cli.commands import app, main
from radrouter.cli.common import console

__all__ = ["app", "console", "main"]
