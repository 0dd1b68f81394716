"""The BI tier's own users and row rules: the store behind the login, and `tierlake bi`.

Against a real SQLite file (the default ``bi.database_url``), and the CLI as a real process.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from tierlake.bi.users import UserError, UserStore
from tierlake.cli import app
from tierlake.config import reset_settings_cache

ROOT = Path(__file__).resolve().parents[2]
runner = CliRunner()


@pytest.fixture
def store(tmp_path: Path) -> UserStore:
    s = UserStore(f"sqlite:///{tmp_path / 'bi.db'}")
    s.create_tables()
    return s


def test_users_are_added_listed_checked_and_removed(store: UserStore) -> None:
    store.add_user("Ada@Example.com", "correct-horse-1", role="analyst", name="Ada")
    store.add_user("root@example.com", "correct-horse-2", role="admin")
    assert [(u.email, u.role) for u in store.list_users()] == [
        ("ada@example.com", "analyst"), ("root@example.com", "admin")]
    assert store.authenticate("ada@example.com", "correct-horse-1") is not None
    assert store.authenticate("ADA@example.com ", "correct-horse-1") is not None
    assert store.authenticate("ada@example.com", "wrong-horse-1") is None
    assert store.authenticate("nobody@example.com", "correct-horse-1") is None
    store.remove_user("ada@example.com")
    assert store.authenticate("ada@example.com", "correct-horse-1") is None
    assert store.principal("ada@example.com") is None


def test_bad_changes_are_refused_with_what_to_do(store: UserStore) -> None:
    store.add_user("root@example.com", "correct-horse-2", role="admin")
    with pytest.raises(UserError, match="exists already"):
        store.add_user("ROOT@example.com", "another-pass-1", role="analyst")
    with pytest.raises(UserError, match="at least 10 characters"):
        store.add_user("short@example.com", "short", role="analyst")
    with pytest.raises(UserError, match="unknown role 'owner'; use one of admin, analyst"):
        store.add_user("x@example.com", "long-enough-1", role="owner")
    with pytest.raises(UserError, match="not an e-mail address"):
        store.add_user("not-an-address", "long-enough-1")
    with pytest.raises(UserError, match="last admin; add another admin first"):
        store.remove_user("root@example.com")
    with pytest.raises(UserError, match="no BI user ghost@example.com"):
        store.set_rule("category_slug", ["books"], user="ghost@example.com")


def test_rules_add_up_per_column_from_user_and_role_rows(store: UserStore) -> None:
    store.add_user("cat@example.com", "correct-horse-1", role="analyst")
    store.add_user("all@example.com", "correct-horse-1", role="admin")
    store.set_rule("category_slug", ["books", " toys", ""], user="cat@example.com")
    store.set_rule("category_slug", ["garden"], group="analyst")
    store.set_rule("country", ["DE"], user="cat@example.com")
    principal = store.principal("cat@example.com")
    assert principal is not None and principal.role == "analyst"
    assert not principal.sees_identity
    assert principal.rules == {"category_slug": frozenset({"books", "toys", "garden"}),
                               "country": frozenset({"DE"})}
    # A user with no row (and no role row) sees every row.
    admin = store.principal("all@example.com")
    assert admin is not None and admin.rules == {} and admin.sees_identity
    # Setting a rule again replaces it; an empty list means no row at all.
    store.set_rule("category_slug", [], user="cat@example.com")
    store.clear_rules(group="analyst")
    again = store.principal("cat@example.com")
    assert again is not None and again.rules["category_slug"] == frozenset()
    # Removing the user removes their rules.
    store.remove_user("cat@example.com")
    assert all(r.user_name != "cat@example.com" for r in store.list_rules())


def test_the_first_admin_is_made_once(store: UserStore) -> None:
    assert store.ensure_admin("boss@example.com", "first-password-1") is True
    assert store.ensure_admin("other@example.com", "second-password-1") is False
    assert [u.email for u in store.list_users()] == ["boss@example.com"]


def test_a_first_start_on_a_new_data_dir_makes_its_folder(tmp_path: Path) -> None:
    """`tierlake serve bi` before anything else ran: no traceback about the SQLite file."""
    fresh = UserStore(f"sqlite:///{tmp_path / 'new' / 'var' / 'bi.db'}")
    try:
        fresh.create_tables()
        assert fresh.ensure_admin("boss@example.com", "first-password-1") is True
    finally:
        fresh.dispose()
    assert (tmp_path / "new" / "var" / "bi.db").is_file()


def _cli(*args: str, data_dir: Path, stdin: str | None = None) -> Result:
    """In-process (``tierlake bi`` as the main CLI mounts it), with its own data dir."""
    os.environ["TIERLAKE_DATA_DIR"] = str(data_dir)
    reset_settings_cache()
    return runner.invoke(app, ["bi", *args], input=stdin)


@pytest.fixture
def data_dir(tmp_path: Path) -> Iterator[Path]:
    before = os.environ.get("TIERLAKE_DATA_DIR")
    yield tmp_path
    if before is not None:
        os.environ["TIERLAKE_DATA_DIR"] = before
    reset_settings_cache()


def test_the_bi_cli_adds_users_and_rules_and_refuses_mistakes_in_one_line(
        data_dir: Path) -> None:
    added = _cli("user", "add", "cm@example.com", "--role", "analyst", "--name", "Cat Manager",
                 "--password-stdin", data_dir=data_dir, stdin="category-pass-1\n")
    assert added.exit_code == 0, added.output
    assert "added cm@example.com (analyst)" in added.stdout
    made_up = _cli("user", "add", "boss@example.com", "--role", "admin", data_dir=data_dir)
    assert made_up.exit_code == 0 and "password: " in made_up.stdout
    password = made_up.stdout.split("password: ", 1)[1].split()[0]

    rule = _cli("rule", "set", "cm@example.com", "--column", "category_slug",
                "--values", "books,toys", data_dir=data_dir)
    assert rule.exit_code == 0, rule.output
    assert "category_slug in (books, toys)" in rule.stdout
    listed = _cli("rule", "list", data_dir=data_dir)
    assert "cm@example.com" in listed.stdout and "books, toys" in listed.stdout

    store = UserStore(f"sqlite:///{data_dir / 'bi.db'}")
    assert store.authenticate("boss@example.com", password) is not None
    principal = store.principal("cm@example.com")
    assert principal is not None
    assert principal.rules == {"category_slug": frozenset({"books", "toys"})}

    bad = _cli("user", "add", "x@example.com", "--role", "owner", "--password-stdin",
               data_dir=data_dir, stdin="long-enough-1\n")
    assert bad.exit_code == 1
    assert "unknown role 'owner'" in bad.stderr and "Traceback" not in bad.output
    changed = _cli("user", "password", "cm@example.com", "--password-stdin",
                   data_dir=data_dir, stdin="another-pass-2\n")
    assert changed.exit_code == 0, changed.output
    assert store.authenticate("cm@example.com", "another-pass-2") is not None
    assert store.authenticate("cm@example.com", "category-pass-1") is None
    gone = _cli("user", "remove", "cm@example.com", data_dir=data_dir)
    assert gone.exit_code == 0
    assert store.principal("cm@example.com") is None
    store.dispose()

    # The real entry point has the commands too.
    env = {**os.environ, "TIERLAKE_DATA_DIR": str(data_dir), "PYTHONPATH": str(ROOT / "src")}
    users = subprocess.run([sys.executable, "-m", "tierlake", "bi", "user", "list"],
                           capture_output=True, text=True, env=env, timeout=60, check=False)
    assert users.returncode == 0, users.stderr
    assert "boss@example.com" in users.stdout and "cm@example.com" not in users.stdout


@pytest.mark.parametrize("attempt", range(3))
def test_two_instances_starting_at_once_make_one_admin(tmp_path: Path, attempt: int) -> None:
    """Under `tierlake up` two BI instances may start together on one database."""
    from concurrent.futures import ThreadPoolExecutor

    url = f"sqlite:///{tmp_path / f'bi-{attempt}.db'}"
    stores = [UserStore(url) for _ in range(2)]

    def start(store: UserStore) -> bool:
        store.create_tables()
        return store.ensure_admin("boss@example.com", "first-password-1")

    with ThreadPoolExecutor(2) as pool:
        made = list(pool.map(start, stores))
    assert sorted(made) == [False, True]
    assert [u.email for u in stores[0].list_users()] == ["boss@example.com"]
    for store in stores:
        store.dispose()
