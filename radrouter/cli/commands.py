"""The ``radrouter`` command: the node's services, plus the tools a PACS admin and an AI team use."""

from __future__ import annotations

import typer

from radrouter.cli.accounts import tokens_app, users_app
from radrouter.cli.config import config_app
from radrouter.cli.db import db_app
from radrouter.cli.deliveries import deliveries_app
from radrouter.cli.evaluate import evaluate_command
from radrouter.cli.pipelines import pipelines_app
from radrouter.cli.rules import rules_app
from radrouter.cli.send import send_files
from radrouter.cli.services import scp, up, web, worker
from radrouter.cli.storage import erase, purge, storage_app

app = typer.Typer(
    help="radrouter: a DICOM node that puts AI into the radiology workflow.", no_args_is_help=True
)
for service in (up, scp, worker, web):
    app.command()(service)
app.add_typer(config_app, name="config")
app.add_typer(rules_app, name="rules")
app.add_typer(pipelines_app, name="pipelines")
app.command("evaluate")(evaluate_command)
app.add_typer(db_app, name="db")
app.command("send")(send_files)
app.add_typer(deliveries_app, name="deliveries")
app.add_typer(storage_app, name="storage")
app.command("purge")(purge)
app.command("erase")(erase)
app.add_typer(users_app, name="users")
app.add_typer(tokens_app, name="tokens")


@app.command("conformance")
def conformance() -> None:
    """Print the DICOM Conformance Statement (PS3.2 layout) as Markdown (docs/conformance.md)."""
    # Imported here: it reads the SCP's tables, and importing the SCP imports prometheus_client, which
    # must come after `radrouter scp` has named the folder its receivers count in.
    from radrouter.cli.conformance import conformance_markdown

    typer.echo(conformance_markdown(), nl=False)


def main() -> None:
    app(prog_name="radrouter")
