"""``radrouter users`` and ``radrouter tokens``: the people who sign in to the pages, and the service
tokens of scripts and remote workers (each shown once, stored hashed, revocable)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from radrouter.cli.common import ConfigOption, console, settings_or_exit
from radrouter.config.access import Role

if TYPE_CHECKING:
    from radrouter.storage.index import Index

users_app = typer.Typer(
    help="Local accounts of the web app (passwords hashed with argon2).", no_args_is_help=True
)
tokens_app = typer.Typer(help="Service tokens for scripts and remote workers.", no_args_is_help=True)

RoleOption = Annotated[Role, typer.Option("--role", "-r", help="What the account may do.")]
PasswordStdin = Annotated[
    bool, typer.Option("--password-stdin", help="Read the password from standard input (scripts).")
]
MIN_PASSWORD = 10
stdout = Console()


def _index(config: ConfigOption) -> Index:
    from radrouter.storage.index import Index

    return Index(settings_or_exit(config).storage.resolved_index_url())


def _password(from_stdin: bool) -> str:
    if from_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    if len(password) < MIN_PASSWORD:
        console.print(f"[red]error:[/red] a password needs at least {MIN_PASSWORD} characters")
        raise typer.Exit(2)
    return password


def _or_exit(action: Callable[[], object]) -> None:
    from radrouter.storage.accounts import AccountError

    try:
        action()
    except AccountError as error:
        console.print(f"[red]error:[/red] {error}")
        raise typer.Exit(1) from error


@users_app.command("add")
def add_user(
    name: Annotated[str, typer.Argument(help="The sign-in name.")],
    role: RoleOption = Role.RADIOLOGIST,
    password_stdin: PasswordStdin = False,
    config: ConfigOption = None,
) -> None:
    """Add a local account; asks for its password."""
    from radrouter.storage.accounts import add_user as add

    index = _index(config)
    password = _password(password_stdin)
    _or_exit(lambda: add(index, name, role, password))
    console.print(f"user {name} added as {role.value}")


@users_app.command("list")
def list_users(config: ConfigOption = None) -> None:
    """Every account: role, local or single sign-on, locked until when."""
    from radrouter.storage.accounts import users

    table = Table("name", "role", "source", "locked until", "created")
    for user in users(_index(config)):
        table.add_row(
            user["name"], user["role"], user["source"], user["locked_until"] or "", user["created_at"]
        )
    stdout.print(table)


@users_app.command("remove")
def remove_user(name: str, config: ConfigOption = None) -> None:
    """Remove an account; its sessions end with their next request."""
    from radrouter.storage.accounts import remove_user as remove

    index = _index(config)
    _or_exit(lambda: remove(index, name))
    console.print(f"user {name} removed")


@users_app.command("passwd")
def change_password(name: str, password_stdin: PasswordStdin = False, config: ConfigOption = None) -> None:
    """Set a new password (this also lifts a lock-out and ends the account's sessions)."""
    from radrouter.storage.accounts import set_password

    index = _index(config)
    password = _password(password_stdin)
    _or_exit(lambda: set_password(index, name, password))
    console.print(f"password of {name} changed")


@tokens_app.command("add")
def add_token(
    name: Annotated[str, typer.Argument(help="What the token is for, e.g. gpu-worker-2.")],
    role: RoleOption = Role.VIEWER,
    config: ConfigOption = None,
) -> None:
    """Make a service token and print it once (send it as ``Authorization: Bearer <token>``)."""
    from radrouter.storage.accounts import add_token as add

    index = _index(config)
    made: list[str] = []
    _or_exit(lambda: made.append(add(index, name, role)))
    console.print(f"token {name} ({role.value}); it is shown only now:")
    print(made[0])


@tokens_app.command("list")
def list_tokens(config: ConfigOption = None) -> None:
    """Every service token (never the secret): role, when made, when revoked."""
    from radrouter.storage.accounts import tokens

    table = Table("name", "role", "created", "revoked")
    for token in tokens(_index(config)):
        table.add_row(token["name"], token["role"], token["created_at"], token["revoked_at"] or "")
    stdout.print(table)


@tokens_app.command("revoke")
def revoke_token(name: str, config: ConfigOption = None) -> None:
    """Revoke a token: the next request with it is refused."""
    from radrouter.storage.accounts import revoke_token as revoke

    index = _index(config)
    _or_exit(lambda: revoke(index, name))
    console.print(f"token {name} revoked")
