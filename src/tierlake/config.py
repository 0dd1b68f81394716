"""One settings object for every tier.

Precedence: environment (``TIERLAKE_*``, nested keys joined with ``__``) over
``tierlake.toml`` (in the working directory, or the file named by
``TIERLAKE_CONFIG``) over the defaults declared here. Every setting is declared
once, with its default and help; ``docs/configuration.md`` is generated from
these declarations and a test checks it is current.
"""

from __future__ import annotations

import os
from contextlib import suppress
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

DEFAULT_SECRET = "tierlake-local-development-secret"  # noqa: S105 - refused outside local mode
DEFAULT_ADMIN_PASSWORD = "admin-password"  # noqa: S105 - refused outside local mode


def _config_file() -> Path:
    return Path(os.environ.get("TIERLAKE_CONFIG", "tierlake.toml"))


class Settings(BaseSettings):
    """tierlake's configuration. See docs/configuration.md for every key."""

    model_config = SettingsConfigDict(
        env_prefix="TIERLAKE_",
        env_nested_delimiter="__",
        extra="forbid",
        validate_default=True,
    )

    environment: Literal["local", "production"] = Field(
        "local",
        description="`local` allows the built-in development secrets; `production` refuses them.",
    )
    data_dir: Path = Field(
        Path("var"),
        description="Where embedded defaults keep their files (SQLite database, event log).",
    )
    database_url: str = Field(
        "",
        description=(
            "SQLAlchemy URL of the store's database. Empty means SQLite at "
            "`<data_dir>/tierlake.db`. Examples: `mysql+pymysql://user:pw@host/db`, "
            "`postgresql+psycopg://user:pw@host/db`."
        ),
        repr=False,  # it may hold a password
    )
    database_pool_size: int = Field(10, ge=1, description="Connections kept per app-tier process.")
    secret_key: SecretStr = Field(
        SecretStr(DEFAULT_SECRET),
        description="Signs the web tier's cookies and CSRF tokens. Must be set in production.",
    )
    admin_email: str = Field(
        "admin@tierlake.local", description="The administrator account created by `seed`."
    )
    admin_password: SecretStr = Field(
        SecretStr(DEFAULT_ADMIN_PASSWORD),
        description="Password of the administrator account created by `seed`.",
    )
    session_ttl_hours: int = Field(
        72, ge=1, description="How long a customer's login session stays valid."
    )
    host: str = Field("127.0.0.1", description="Address the tiers listen on.")
    web_port: int = Field(8000, ge=0, le=65535, description="Port of the web tier (store front).")
    app_port: int = Field(8001, ge=0, le=65535, description="Port of the app tier (JSON API).")
    app_url: str = Field(
        "",
        description=(
            "Base URL the web tier uses to reach the app tier. Empty means "
            "`http://<host>:<app_port>`."
        ),
    )
    app_timeout_seconds: float = Field(
        10.0, gt=0, description="Web tier's timeout for one call to the app tier."
    )
    events_dir: Path | None = Field(
        None,
        description="Directory of the clickstream event log. Empty means `<data_dir>/events`.",
    )
    events_flush_seconds: float = Field(
        60.0,
        gt=0,
        description="Buffer interval: the web tier delivers buffered events at least this often.",
    )
    events_flush_records: int = Field(
        500, ge=1, description="Buffer size: deliver as soon as this many events are buffered."
    )
    lake_url: str = Field(
        "",
        description=(
            "Where the lake lives: a local directory, or `s3://bucket/prefix` (endpoint and "
            "credentials from the usual AWS_* variables, e.g. AWS_ENDPOINT_URL). Empty means "
            "`<data_dir>/lake`."
        ),
    )
    engine: Literal["duckdb", "spark"] = Field(
        "duckdb", description="Engine of the analytics jobs: `duckdb` (embedded) or `spark`."
    )
    spark_master: str = Field(
        "local[*]", description="Spark master URL when `engine` is `spark`."
    )
    spark_driver_memory: str = Field(
        "4g",
        pattern=r"^[0-9]+[kmgt]?$",
        description=(
            "Heap of the Spark driver (`spark.driver.memory`; with a `local` master also the "
            "executors'). Raise it if Spark runs out of memory on a large store."
        ),
    )
    pipeline_interval_seconds: float = Field(
        300.0,
        ge=0,
        description="`tierlake up` runs the pipeline this often; 0 turns the scheduler off.",
    )
    extract_lookback_seconds: float = Field(
        300.0,
        ge=0,
        description=(
            "Incremental extracts re-read changes this far behind the last watermark, so a "
            "transaction that committed late (with an older `updated_at`) is not missed."
        ),
    )
    extract_compact_ratio: float = Field(
        0.1,
        ge=0,
        description=(
            "Changes are merged into a `current/` table once they reach this share of its "
            "rows (or 32 extracts have logged some); until then readers apply them "
            "(merge-on-read). 0 merges on every extract."
        ),
    )
    extract_batch_rows: int = Field(
        100_000, ge=1000, description="Rows per batch read from the database (bounds memory)."
    )
    extract_parallel_reads: int = Field(
        2,
        ge=1,
        le=64,
        description=(
            "Full loads of a table with an integer primary key read this many key ranges at "
            "once (one database connection each); 1 reads with one query."
        ),
    )
    extract_exclude: list[str] = Field(
        ["auth_sessions", "deleted_rows", "alembic_version", "customers.password_hash"],
        description=(
            "Tables (`table`) and columns (`table.column`) never copied to the lake: secrets "
            "and bookkeeping."
        ),
    )
    log_level: str = Field("INFO", description="Log level: DEBUG, INFO, WARNING, ERROR.")
    log_format: Literal["console", "json"] = Field(
        "console", description="`json` writes one JSON object per log line."
    )

    # -- helper api: request limits and checkout idempotency ------------------------------------
    app_max_body_bytes: int = Field(
        64 * 1024, ge=1024, le=64 * 1024 * 1024,
        description=(
            "Largest request body the app tier (JSON API) accepts; a larger one is answered "
            "413 without being read."
        ),
    )
    web_max_body_bytes: int = Field(
        1024 * 1024, ge=1024, le=64 * 1024 * 1024,
        description=(
            "Largest request body (a form) the web tier accepts; a larger one gets a 413 page "
            "without being read."
        ),
    )
    app_idempotency_lease_seconds: float = Field(
        60, gt=0, le=3600,
        description=(
            "How long a checkout in progress holds its Idempotency-Key: a twin request meanwhile "
            "gets 409. A hold left by a process that died lapses after this, and the key can "
            "be used again."
        ),
    )

    @model_validator(mode="after")
    def _refuse_default_secrets(self) -> Settings:
        if self.environment == "production":
            if self.secret_key.get_secret_value() == DEFAULT_SECRET:
                raise ValueError(
                    "TIERLAKE_SECRET_KEY is the built-in development secret; "
                    "set a random one (e.g. `python -c 'import secrets; "
                    "print(secrets.token_urlsafe(32))'`) for production"
                )
            if self.admin_password.get_secret_value() == DEFAULT_ADMIN_PASSWORD:
                raise ValueError(
                    "TIERLAKE_ADMIN_PASSWORD is the built-in default; set your own for production"
                )
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (
            init_settings,
            env_settings,
            TomlConfigSettingsSource(settings_cls, toml_file=_config_file()),
        )

    # -- derived values -------------------------------------------------------------------------

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'tierlake.db').resolve()}"

    @property
    def resolved_app_url(self) -> str:
        return (self.app_url or f"http://{self.host}:{self.app_port}").rstrip("/")

    @property
    def resolved_lake_url(self) -> str:
        return self.lake_url or str((self.data_dir / "lake").resolve())

    @property
    def resolved_events_dir(self) -> Path:
        return self.events_dir if self.events_dir is not None else self.data_dir / "events"

    def public_dict(self) -> dict[str, Any]:
        """Settings as shown to a user: secrets and database passwords masked."""
        from sqlalchemy.engine import make_url

        data = self.model_dump(mode="json")
        if self.database_url:
            # An unparseable URL is shown as given: it has no password part to hide.
            with suppress(Exception):
                data["database_url"] = make_url(self.database_url).render_as_string(
                    hide_password=True)
        return data


def settings_reference() -> str:
    """docs/configuration.md: every setting with its variable, default and help."""
    lines = [
        "# Configuration",
        "",
        "<!-- Generated by `tierlake config docs`; a test checks it is current. -->",
        "",
        "Every setting can be given as an environment variable or as a key in `tierlake.toml`",
        "(in the working directory, or the file named by `TIERLAKE_CONFIG`). The environment",
        "wins over the file, the file over the defaults. `tierlake config show` prints the",
        "effective values, secrets masked.",
        "",
        "| variable | `tierlake.toml` key | default | what it does |",
        "|---|---|---|---|",
    ]
    for name, field in Settings.model_fields.items():
        default = field.default
        if isinstance(default, SecretStr):
            shown = f"`{default.get_secret_value()}` (local only; refused in production)"
        elif default in ("", None):
            shown = "(empty)"
        else:
            shown = f"`{default}`"
        lines.append(f"| `TIERLAKE_{name.upper()}` | `{name}` | {shown} | {field.description} |")
    return "\n".join(lines) + "\n"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()


def reset_settings_cache() -> None:
    get_settings.cache_clear()
