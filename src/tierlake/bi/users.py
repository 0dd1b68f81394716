"""The BI tier's own users and their row-level rules, in the BI tier's own database.

QuickSight keeps its users apart from the data they look at, and restricts rows with a
*permissions dataset* (row-level security): each row names a ``UserName`` or a
``GroupName`` and, per field, the values that user or group may see
(https://docs.aws.amazon.com/quicksight/latest/user/restrict-access-to-a-data-set-using-row-level-security.html;
the dataset's ``FormatVersion`` ``VERSION_1`` with ``UserName``/``GroupName`` and the
``GRANT_ACCESS`` policy of
https://docs.aws.amazon.com/quicksight/latest/APIReference/API_RowLevelPermissionDataSet.html).
``bi_row_permissions`` is that dataset, one field per row: ``user_name`` (an e-mail) or
``group_name`` (a role: ``admin`` or ``analyst``), ``column_name`` and ``allowed_values``
(comma-separated). Rows for the same user and column add up (QuickSight grants the union of
its rows). Where QuickSight hides everything from a user with no row, we show every row: a
user without rules sees all rows (the issue's choice), and rules apply whatever the role.

The store's shoppers never log in here: this is a separate table in a separate database
(``bi.database_url``, SQLite at ``<data_dir>/bi.db`` by default). Passwords are argon2id.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import structlog
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import (
    Column,
    DateTime,
    Engine,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    delete,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError

from tierlake.bi.model import Principal, Role

log = structlog.get_logger(__name__)
ROLES: tuple[Role, ...] = ("admin", "analyst")
MIN_PASSWORD = 10
_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]{1,190}$")
_COLUMN = re.compile(r"^[a-z][a-z0-9_]{0,62}$")

metadata = MetaData()
bi_users = Table(
    "bi_users", metadata,
    Column("id", Integer, primary_key=True),
    Column("email", String(254), nullable=False, unique=True),
    Column("name", String(200), nullable=False, default=""),
    Column("role", String(16), nullable=False),
    Column("password_hash", String(255), nullable=False),
    Column("created_at", DateTime, nullable=False),
)
bi_row_permissions = Table(
    "bi_row_permissions", metadata,
    Column("id", Integer, primary_key=True),
    Column("user_name", String(254), nullable=True, index=True),  # QuickSight's UserName
    Column("group_name", String(64), nullable=True),  # QuickSight's GroupName (a role)
    Column("column_name", String(64), nullable=False),
    Column("allowed_values", Text, nullable=False),  # comma-separated
)

_hasher = PasswordHasher()


class UserError(ValueError):
    """A user or rule change the store refuses; the message says what to do instead."""


@dataclass(frozen=True)
class User:
    email: str
    name: str
    role: Role
    created_at: datetime


@dataclass(frozen=True)
class Rule:
    user_name: str | None
    group_name: str | None
    column: str
    values: tuple[str, ...]


def normalise_email(email: str) -> str:
    value = email.strip().lower()
    if not _EMAIL.match(value):
        raise UserError(f"{email!r} is not an e-mail address; use the form name@example.com")
    return value


def check_role(role: str) -> Role:
    for known in ROLES:
        if role == known:
            return known
    raise UserError(f"unknown role {role!r}; use one of {', '.join(ROLES)}")


class UserStore:
    """Users, password checks and row rules over the BI database (thread-safe: SQLAlchemy's
    pool hands each call its own connection)."""

    def __init__(self, url: str) -> None:
        args = {"check_same_thread": False} if url.startswith("sqlite") else {}
        database = make_url(url).database if url.startswith("sqlite") else None
        if database and database != ":memory:":  # a first start on a new data_dir
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        self.engine: Engine = create_engine(url, connect_args=args, pool_pre_ping=True)

    def create_tables(self) -> None:
        """Make the tables if missing. Two instances starting at once may both try: the
        loser's CREATE fails because the winner's exists, so it looks again."""
        try:
            metadata.create_all(self.engine)
        except (OperationalError, ProgrammingError):
            metadata.create_all(self.engine)

    def dispose(self) -> None:
        self.engine.dispose()

    # -- users ---------------------------------------------------------------------------------

    def add_user(self, email: str, password: str, *, role: str = "analyst",
                 name: str = "") -> User:
        email, checked = normalise_email(email), check_role(role)
        if len(password) < MIN_PASSWORD:
            raise UserError(f"the password is too short: use at least {MIN_PASSWORD} characters")
        now = datetime.now(UTC).replace(tzinfo=None)
        try:
            with self.engine.begin() as con:
                con.execute(insert(bi_users).values(
                    email=email, name=name.strip(), role=checked,
                    password_hash=_hasher.hash(password), created_at=now))
        except IntegrityError as exc:
            raise UserError(f"a BI user {email} exists already; remove it first, or pick "
                            "another address") from exc
        log.info("bi.user_added", email=email, role=checked)
        return User(email, name.strip(), checked, now)

    def ensure_admin(self, email: str, password: str) -> bool:
        """The first admin, made on first start when no admin exists; True if made now."""
        with self.engine.connect() as con:
            admins = con.execute(select(func.count()).select_from(bi_users)
                                 .where(bi_users.c.role == "admin")).scalar_one()
        if admins:
            return False
        try:
            self.add_user(email, password, role="admin", name="Administrator")
        except UserError as exc:  # another instance made it at the same moment
            log.info("bi.first_admin_exists", reason=str(exc))
            return False
        return True

    def list_users(self) -> list[User]:
        with self.engine.connect() as con:
            rows = con.execute(select(bi_users).order_by(bi_users.c.email)).all()
        return [User(r.email, r.name, check_role(r.role), r.created_at) for r in rows]

    def get_user(self, email: str) -> User | None:
        with self.engine.connect() as con:
            r = con.execute(select(bi_users).where(
                bi_users.c.email == email.strip().lower())).first()
        return None if r is None else User(r.email, r.name, check_role(r.role), r.created_at)

    def remove_user(self, email: str) -> None:
        email = normalise_email(email)
        with self.engine.begin() as con:
            user = con.execute(select(bi_users.c.role).where(bi_users.c.email == email)).first()
            if user is None:
                raise UserError(f"no BI user {email}; `tierlake bi user list` shows them")
            if user.role == "admin":
                others = con.execute(select(func.count()).select_from(bi_users).where(
                    bi_users.c.role == "admin", bi_users.c.email != email)).scalar_one()
                if not others:
                    raise UserError(f"{email} is the last admin; add another admin first")
            con.execute(delete(bi_row_permissions).where(bi_row_permissions.c.user_name == email))
            con.execute(delete(bi_users).where(bi_users.c.email == email))
        log.info("bi.user_removed", email=email)

    def set_password(self, email: str, password: str) -> None:
        if len(password) < MIN_PASSWORD:
            raise UserError(f"the password is too short: use at least {MIN_PASSWORD} characters")
        with self.engine.begin() as con:
            done = con.execute(update(bi_users).where(bi_users.c.email == normalise_email(email))
                               .values(password_hash=_hasher.hash(password))).rowcount
        if not done:
            raise UserError(f"no BI user {email}; `tierlake bi user list` shows them")

    def authenticate(self, email: str, password: str) -> User | None:
        """The user if the password is right; None otherwise (a missing user costs a hash
        too, so the answer takes as long either way)."""
        with self.engine.connect() as con:
            r = con.execute(select(bi_users).where(
                bi_users.c.email == email.strip().lower())).first()
        stored = r.password_hash if r is not None else _DUMMY_HASH
        ok: bool
        try:
            ok = _hasher.verify(stored, password)
        except (VerificationError, InvalidHashError):
            ok = False
        if r is None or not ok:
            return None
        return User(r.email, r.name, check_role(r.role), r.created_at)

    # -- row rules -----------------------------------------------------------------------------

    def set_rule(self, column: str, values: list[str], *, user: str | None = None,
                 group: str | None = None) -> Rule:
        """Replace the rule of ``user`` (or ``group``) on ``column`` with ``values``."""
        if (user is None) == (group is None):
            raise UserError("give either a user's e-mail or a group (a role), not both")
        if not _COLUMN.match(column):
            raise UserError(f"bad column name {column!r}: lower-case letters, digits and _")
        clean = tuple(sorted({v.strip() for v in values if v.strip()}))
        if any("," in v for v in clean):
            raise UserError("a value cannot hold a comma (commas separate the values)")
        user_name = normalise_email(user) if user is not None else None
        group_name = check_role(group) if group is not None else None
        if user_name is not None and self.get_user(user_name) is None:
            raise UserError(f"no BI user {user_name}; add it first with `tierlake bi user add`")
        who = (bi_row_permissions.c.user_name == user_name if user_name is not None
               else bi_row_permissions.c.group_name == group_name)
        with self.engine.begin() as con:
            con.execute(delete(bi_row_permissions).where(
                who, bi_row_permissions.c.column_name == column))
            con.execute(insert(bi_row_permissions).values(
                user_name=user_name, group_name=group_name, column_name=column,
                allowed_values=",".join(clean)))
        log.info("bi.rule_set", user=user_name, group=group_name, column=column,
                 values=len(clean))
        return Rule(user_name, group_name, column, clean)

    def clear_rules(self, *, user: str | None = None, group: str | None = None) -> int:
        who = (bi_row_permissions.c.user_name == normalise_email(user) if user is not None
               else bi_row_permissions.c.group_name == check_role(group or ""))
        with self.engine.begin() as con:
            return int(con.execute(delete(bi_row_permissions).where(who)).rowcount)

    def list_rules(self) -> list[Rule]:
        with self.engine.connect() as con:
            rows = con.execute(select(bi_row_permissions).order_by(
                bi_row_permissions.c.user_name, bi_row_permissions.c.group_name,
                bi_row_permissions.c.column_name)).all()
        return [Rule(r.user_name, r.group_name, r.column_name,
                     tuple(v for v in r.allowed_values.split(",") if v)) for r in rows]

    def principal(self, email: str) -> Principal | None:
        """Who ``email`` is for the engine: role and the union of their rows' values."""
        user = self.get_user(email)
        if user is None:
            return None
        with self.engine.connect() as con:
            rows = con.execute(select(bi_row_permissions).where(or_(
                bi_row_permissions.c.user_name == user.email,
                bi_row_permissions.c.group_name == user.role))).all()
        rules: dict[str, set[str]] = {}
        for r in rows:
            rules.setdefault(r.column_name, set()).update(
                v for v in r.allowed_values.split(",") if v)
        return Principal(email=user.email, name=user.name, role=user.role,
                         rules={k: frozenset(v) for k, v in rules.items()})


_DUMMY_HASH = _hasher.hash("not a password of anyone's")
