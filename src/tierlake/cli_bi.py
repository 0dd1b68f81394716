"""`tierlake bi`: the BI tier's users and row-level rules, edited in the BI database.

QuickSight's ``register-user`` / ``delete-user`` / ``list-users`` and its row-level security
dataset, as commands. They work on ``bi.database_url`` directly (the BI tier need not run);
a running BI tier sees the change on the user's next request. The first admin is made by the
BI tier on its first start from ``admin_email`` / ``admin_password``. Mistakes are one line on
stderr and exit code 1, never a traceback.
"""

from __future__ import annotations

import secrets
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, NoReturn

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from tierlake.bi.users import UserError, UserStore
from tierlake.config import get_settings

bi_app = typer.Typer(
    help="The BI tier (dashboards over the lake): its users, roles and row-level rules.",
    no_args_is_help=True, rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)
user_app = typer.Typer(help="BI users (staff accounts, never the store's customers).",
                       no_args_is_help=True)
rule_app = typer.Typer(help="Row-level rules (QuickSight's RLS dataset): which rows a user "
                       "or a role may see.", no_args_is_help=True)
bi_app.add_typer(user_app, name="user")
bi_app.add_typer(rule_app, name="rule")
out = Console()
err = Console(stderr=True)


def _fail(message: str) -> NoReturn:
    err.print(f"[bold red]error:[/] {escape(message)}", soft_wrap=True)
    raise typer.Exit(1)


@contextmanager
def _store() -> Iterator[UserStore]:
    try:
        settings = get_settings()
    except ValidationError as exc:
        _fail(f"configuration is invalid ({exc.error_count()} problem(s)); run `tierlake "
              "config show` to see it")
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    store = UserStore(settings.resolved_bi_database_url)
    try:
        store.create_tables()
        yield store
    except UserError as exc:
        _fail(str(exc))
    finally:
        store.dispose()


@user_app.command("add")
def user_add(
    email: Annotated[str, typer.Argument(help="The user's e-mail (their login).")],
    role: Annotated[str, typer.Option(help="admin (sees everything) or analyst (no customer "
                                           "identity).")] = "analyst",
    name: Annotated[str, typer.Option(help="Display name.")] = "",
    password_stdin: Annotated[bool, typer.Option(
        "--password-stdin", help="Read the password from standard input (else one is made up "
        "and printed once).")] = False,
) -> None:
    """Add a BI user."""
    password = sys.stdin.readline().rstrip("\r\n") if password_stdin else secrets.token_urlsafe(12)
    with _store() as store:
        user = store.add_user(email, password, role=role, name=name)
    out.print(f"added {user.email} ({user.role})", soft_wrap=True)
    if not password_stdin:
        out.print(f"password: {password}  (shown once; give it to the user)", soft_wrap=True)


@user_app.command("password")
def user_password(
    email: Annotated[str, typer.Argument(help="The user's e-mail.")],
    password_stdin: Annotated[bool, typer.Option(
        "--password-stdin", help="Read the new password from standard input (else one is "
        "made up and printed once).")] = False,
) -> None:
    """Set a BI user's password (the first admin's too, once it was changed from the default)."""
    password = sys.stdin.readline().rstrip("\r\n") if password_stdin else secrets.token_urlsafe(12)
    with _store() as store:
        store.set_password(email, password)
    out.print(f"password of {email.strip().lower()} changed", soft_wrap=True)
    if not password_stdin:
        out.print(f"password: {password}  (shown once; give it to the user)", soft_wrap=True)


@user_app.command("list")
def user_list() -> None:
    """List BI users."""
    with _store() as store:
        users = store.list_users()
    table = Table("e-mail", "name", "role", "since")
    for u in users:
        table.add_row(u.email, u.name, u.role, u.created_at.strftime("%Y-%m-%d %H:%M"))
    out.print(table)


@user_app.command("remove")
def user_remove(email: Annotated[str, typer.Argument(help="The user's e-mail.")]) -> None:
    """Remove a BI user and their rules (their session ends at their next request)."""
    with _store() as store:
        store.remove_user(email)
    out.print(f"removed {email.strip().lower()}")


@rule_app.command("set")
def rule_set(
    who: Annotated[str, typer.Argument(help="A user's e-mail, or a role with --group.")],
    column: Annotated[str, typer.Option(help="The column the rule reads, e.g. category_slug.")],
    values: Annotated[str, typer.Option(help="Allowed values, comma-separated (empty: no "
                                             "row).")],
    group: Annotated[bool, typer.Option("--group", help="WHO is a role (admin or analyst): "
                                        "the rule applies to every user of it.")] = False,
) -> None:
    """Let a user (or a role) see only rows whose COLUMN holds one of VALUES."""
    with _store() as store:
        rule = (store.set_rule(column, values.split(","), group=who) if group
                else store.set_rule(column, values.split(","), user=who))
    target = f"group {rule.group_name}" if rule.group_name else rule.user_name
    out.print(f"{target}: {rule.column} in ({', '.join(rule.values) or 'nothing'})",
              soft_wrap=True)


@rule_app.command("clear")
def rule_clear(
    who: Annotated[str, typer.Argument(help="A user's e-mail, or a role with --group.")],
    group: Annotated[bool, typer.Option("--group", help="WHO is a role.")] = False,
) -> None:
    """Remove every rule of a user (or a role): they see every row again."""
    with _store() as store:
        removed = store.clear_rules(group=who) if group else store.clear_rules(user=who)
    out.print(f"removed {removed} rule(s)")


@rule_app.command("list")
def rule_list() -> None:
    """List the row-level rules."""
    with _store() as store:
        rules = store.list_rules()
    table = Table("user", "group", "column", "allowed values")
    for r in rules:
        table.add_row(r.user_name or "", r.group_name or "", r.column,
                      ", ".join(r.values) or "(none)")
    out.print(table)
