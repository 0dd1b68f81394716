"""One settings object for every tier.

Precedence: environment (``TIERLAKE_*``, nested keys joined with ``__``) over
``tierlake.toml`` (in the working directory, or the file named by
``TIERLAKE_CONFIG``) over the defaults declared here. Every setting is declared
once, with its default and help; ``docs/configuration.md`` is generated from
these declarations and a test checks it is current.
"""

from __future__ import annotations

import difflib
import ipaddress
import os
import re
from collections.abc import Mapping
from contextlib import suppress
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

DEFAULT_SECRET = "tierlake-local-development-secret"  # refused outside local mode
DEFAULT_ADMIN_PASSWORD = "admin-password"  # refused outside local mode


def _config_file() -> Path:
    return Path(os.environ.get("TIERLAKE_CONFIG", "tierlake.toml"))


class Section(BaseModel):
    """A group of settings: a table in tierlake.toml, ``TIERLAKE_<SECTION>__<KEY>`` in the
    environment."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


class EventsConfig(Section):
    """The clickstream event log the web tier delivers (Kinesis Data Firehose's buffering)."""

    dir: Path | None = Field(
        None,
        description="Directory of the clickstream event log. Empty means `<data_dir>/events`.",
    )
    flush_seconds: float = Field(
        60.0,
        gt=0,
        description="Buffer interval: the web tier delivers buffered events at least this often.",
    )
    flush_records: int = Field(
        500, ge=1, description="Buffer size: deliver as soon as this many events are buffered."
    )


class ExtractConfig(Section):
    """The extract from the store's database (and the event log) into the lake."""

    lookback_seconds: float = Field(
        300.0,
        ge=0,
        description=(
            "Incremental extracts re-read changes this far behind the last watermark, so a "
            "transaction that committed late (with an older `updated_at`) is not missed."
        ),
    )
    compact_ratio: float = Field(
        0.1,
        ge=0,
        description=(
            "Changes are merged into a `current/` table once they reach this share of its "
            "rows (or 32 extracts have logged some); until then readers apply them "
            "(merge-on-read). 0 merges on every extract."
        ),
    )
    max_pending_commits: int = Field(
        32,
        ge=1,
        description=(
            "Changes are merged into a `current/` table once this many extracts have logged "
            "some, whatever their size (readers open one small file per logged extract)."
        ),
    )
    max_staleness_seconds: float | None = Field(
        900.0,
        ge=0,
        description=(
            "A change that has waited this long in `raw/` is merged into its `current/` table "
            "by the next extract, however small: a plain Delta reader of `current/` is at most "
            "this plus one pipeline interval behind. 0 merges on every extract; `null` (in "
            "the environment) leaves the bound to volume and `max_pending_commits` alone."
        ),
    )
    batch_rows: int = Field(
        100_000, ge=1, description="Rows per batch read from the database (bounds memory)."
    )
    parallel_reads: int = Field(
        2,
        ge=1,
        le=64,
        description=(
            "Full loads of a table with an integer primary key read this many key ranges at "
            "once (one database connection each); 1 reads with one query."
        ),
    )
    exclude: list[str] = Field(
        ["auth_sessions", "deleted_rows", "alembic_version", "customers.password_hash",
         "rate_limit_counters"],
        description=(
            "Tables (`table`) and columns (`table.column`) never copied to the lake: secrets "
            "and bookkeeping."
        ),
    )


class VacuumConfig(Section):
    """Retention of the lake: old data files and log entries (Delta's VACUUM and checkpoints)."""

    retention_hours: int = Field(
        168,
        ge=0,
        description=(
            "Vacuum deletes data files no version newer than this age needs (Delta's default, "
            "7 days): time travel within it keeps working. 0 keeps only the latest version."
        ),
    )
    interval_hours: float = Field(
        24.0,
        ge=0,
        description=(
            "The pipeline run vacuums every lake table (and cleans up its log) when the last "
            "vacuum is this old; 0 turns it off (`tierlake pipeline vacuum` still works)."
        ),
    )
    checkpoint_interval: int = Field(
        100,
        ge=1,
        description=(
            "A table gets a log checkpoint every this many commits, after which log entries "
            "older than the table's log retention (`delta.logRetentionDuration`, 30 days) "
            "are removed."
        ),
    )


class SparkConfig(Section):
    """The Spark engine of the analytics jobs (EMR)."""

    master: str = Field(
        "local[*]", description="Spark master URL when `engine` is `spark`."
    )
    driver_memory: str = Field(
        "4g",
        pattern=r"^[0-9]+[kmgt]?$",
        description=(
            "Heap of the Spark driver (`spark.driver.memory`; with a `local` master also the "
            "executors'). Raise it if Spark runs out of memory on a large store."
        ),
    )


class PipelineConfig(Section):
    """The analytics pipeline's schedule inside `tierlake up`."""

    interval_seconds: float = Field(
        300.0,
        ge=0,
        description="`tierlake up` runs the whole pipeline (extract of every source, every "
                    "job, compaction and vacuum when due) this often; 0 turns the scheduler "
                    "off (micro-batches included).",
    )
    micro_batch_seconds: float = Field(
        2.0,
        ge=0,
        description=(
            "Between full runs, `tierlake up` checks the store this often and, when a table "
            "changed, extracts the store's changes and re-runs only the jobs that read the "
            "changed tables (a micro-batch: an order reaches the dashboards in seconds). "
            "Clickstream, access logs and vacuum wait for the full run. 0 turns "
            "micro-batches off."
        ),
    )
    timeout_seconds: float = Field(
        default=3600.0,
        gt=0,
        description=(
            "A scheduled pipeline run still going after this long is stopped (terminated, "
            "then killed) and recorded as failed."
        ),
    )


class ControlConfig(Section):
    """The control plane behind `tierlake up`."""

    start_timeout_seconds: float = Field(
        default=60.0,
        gt=0,
        description="How long an instance may take to answer `/health` when it starts.",
    )


class LbConfig(Section):
    """The load balancers (ALB model): the internet-facing one on `web_port`, the internal one
    on `app_port`."""

    profile: Literal["fast", "alb"] = Field(
        "fast",
        description=(
            "Health-check profile of the target groups: `fast` (1 s interval, 2 checks to "
            "change state, 5 s deregistration delay: a dead target leaves rotation in under "
            "3 s) or `alb` (AWS's defaults: 30 s, 5 s timeout, 5 healthy / 2 unhealthy, "
            "300 s deregistration delay)."
        ),
    )
    algorithm: Literal["round_robin", "least_outstanding_requests", "weighted_random"] = Field(
        "least_outstanding_requests", description="How a target group picks a target."
    )
    slow_start_seconds: float = Field(
        0.0, ge=0, le=900,
        description="A new target's share of requests ramps up over this long (0: off).",
    )
    idle_timeout_seconds: float = Field(
        60.0, gt=0, le=4000,
        description="A connection idle this long is closed; a target silent this long is a 504.",
    )
    access_logs: bool = Field(True, description="Write ALB-format access logs.")
    access_logs_dir: Path | None = Field(
        None,
        description="Where access-log files are delivered. Empty means `<data_dir>/lb-logs`.",
    )
    access_logs_rotate_seconds: float = Field(
        60.0, gt=0,
        description="An access-log file is closed and delivered at least this often (ALB: 5 min).",
    )


class DnsConfig(Section):
    """The authoritative DNS server (Route 53 model) for the store's zone."""

    enabled: bool = Field(True, description="Run the DNS server under `tierlake up`.")
    port: int = Field(8053, ge=0, le=65535, description="UDP and TCP port of the DNS server.")
    zone: str = Field("tierlake.test", description="The hosted zone (a name under `.test`).")
    ttl_seconds: int = Field(5, ge=0, description="TTL of the zone's A records.")


class FleetConfig(Section):
    """The Auto Scaling groups of the web, app and BI tiers, and the alarms that scale them."""

    web_min: int = Field(2, ge=1, le=16, description="Minimum web instances.")
    web_max: int = Field(4, ge=1, le=16, description="Maximum web instances.")
    app_min: int = Field(2, ge=1, le=16, description="Minimum app instances.")
    app_max: int = Field(4, ge=1, le=16, description="Maximum app instances.")
    bi_min: int = Field(1, ge=1, le=16, description="Minimum BI instances.")
    bi_max: int = Field(2, ge=1, le=16, description="Maximum BI instances.")
    health_check_type: Literal["ELB", "EC2"] = Field(
        "ELB",
        description="Replace instances the load balancer finds unhealthy (ELB) or only dead "
        "processes (EC2).",
    )
    health_check_grace_seconds: float = Field(
        30.0, ge=0, description="A new instance's failed health checks count only after this."
    )
    instance_warmup_seconds: float = Field(
        10.0, ge=0,
        description="A new instance's metrics count towards the group's after this long.",
    )
    cooldown_seconds: float = Field(
        30.0, ge=0, description="After a simple or step scaling activity, wait this long."
    )
    period_seconds: float = Field(
        10.0, gt=0,
        description="Period of the scaling alarms' metrics (CloudWatch: 60 s; shorter on one "
        "machine so scaling is seen in seconds).",
    )
    target_requests_per_target: float = Field(
        50.0, gt=0,
        description="Target tracking: the app group's RequestCountPerTarget per period.",
    )
    target_cpu_percent: float = Field(
        70.0, gt=0, le=100, description="Target tracking: the groups' average CPUUtilization."
    )
    control_port: int = Field(
        8002, ge=0, le=65535,
        description="Port of the control plane's API and operator page (`tierlake fleet`).",
    )

    @model_validator(mode="after")
    def _min_not_above_max(self) -> FleetConfig:
        for tier in ("web", "app", "bi"):
            low, high = getattr(self, f"{tier}_min"), getattr(self, f"{tier}_max")
            if low > high:
                raise ValueError(f"{tier}_min ({low}) is above {tier}_max ({high}); raise "
                                 f"TIERLAKE_FLEET__{tier.upper()}_MAX or lower the minimum")
        return self


class DbClusterConfig(Section):
    """The database cluster under `tierlake up` (RDS Multi-AZ's role): a MariaDB primary and a
    semi-synchronous standby under `<data_dir>/db-cluster/`, writer and reader endpoints, and
    automatic failover. `tierlake db cluster up` reads the same settings."""

    enabled: bool = Field(
        False,
        description=(
            "Run the cluster under `tierlake up`, before the app tier, whose database URL "
            "becomes the writer endpoint (and its replica URL the reader endpoint)."
        ),
    )
    writer_port: int = Field(
        3316, ge=0, le=65535,
        description="The writer endpoint's port (RDS Proxy-like; follows the primary).")
    reader_port: int = Field(
        3317, ge=0, le=65535,
        description="The reader endpoint's port (the standby; the primary when there is none).")
    check_interval: float = Field(
        1.0, gt=0, le=60, description="Seconds between the monitor's checks of each server.")
    failure_threshold: int = Field(
        3, ge=1, le=100,
        description="Failed checks in a row before a failover (a dead process: at once).")
    semi_sync_timeout_ms: int = Field(
        10_000, ge=1,
        description=(
            "How long the primary waits for the standby's acknowledgement of a commit before "
            "committing alone (`rpl_semi_sync_master_timeout`)."
        ),
    )
    drain_timeout: float = Field(
        5.0, ge=0,
        description="A planned failover: how long connections may finish before being closed.")
    hold_timeout: float = Field(
        30.0, gt=0,
        description=(
            "How long an endpoint holds a new connection while it has no server (a failover "
            "in progress) before refusing it."
        ),
    )
    auto_recover: bool = Field(
        True, description="Restart a failed server and make it rejoin as the standby.")


class BiConfig(Section):
    """The BI tier (QuickSight's role): dashboards over the lake's curated zone."""

    database_url: str = Field(
        "",
        description=(
            "The BI tier's own state (its users, roles and row-level permissions; never the "
            "store's customers): a SQLAlchemy URL. Empty: SQLite at `<data_dir>/bi.db`."
        ),
        repr=False,  # it may hold a password
    )
    dashboards_dir: Path | None = Field(
        None,
        description=(
            "A folder of extra dashboard files (`*.toml`), shown beside the built-in ones; a "
            "file with a built-in dashboard's id replaces it."
        ),
    )
    cache_entries: int = Field(
        512, ge=0,
        description="Visual results kept in memory, keyed by the lake tables' versions; 0 "
                    "turns the cache off.",
    )
    sql_row_limit: int = Field(
        10_000, ge=1, le=1_000_000,
        description="Rows the SQL page returns at most (the rest is cut, and the page says so).",
    )
    sql_timeout_seconds: float = Field(
        10.0, gt=0,
        description="A query on the SQL page running longer than this is stopped.",
    )
    session_hours: int = Field(12, ge=1, description="How long a BI login lasts.")
    smtp_host: str = Field("127.0.0.1", description="SMTP server for reports and alerts.")
    smtp_port: int = Field(
        8025, ge=0, le=65535,
        description="SMTP port; `tierlake up` runs a mail catcher there (see `mail_catcher`).",
    )
    mail_from: str = Field("tierlake-bi@tierlake.test", description="Sender of reports and alerts.")
    mail_catcher: bool = Field(
        True,
        description="Under `tierlake up`, run an embedded SMTP server on `smtp_port` that keeps "
                    "what it receives and lists it on the BI tier's Mail page, instead of "
                    "sending anything out.",
    )
    mail_keep: int = Field(
        500, ge=1,
        description="The mail catcher keeps the newest this many messages and deletes older "
                    "ones as new ones arrive (as Mailpit's `--max`).",
    )
    alert_check_seconds: float = Field(
        60.0, gt=0, description="How often the BI tier evaluates alerts and due reports.",
    )
    alerts_file: Path | None = Field(
        None,
        description=(
            "Alerts and scheduled reports, declared as data in a TOML file (see "
            "`docs/bi-alerts.example.toml`). Empty: `<data_dir>/bi-alerts.toml`; no file there "
            "means no alerts and no reports."
        ),
    )


class AuthConfig(Section):
    """Customers' log-in sessions and the login limiter (password guessing)."""

    session_ttl_hours: int = Field(
        72, ge=1, description="How long a customer's login session stays valid."
    )
    login_failures_per_account: int = Field(
        10, ge=1,
        description=(
            "Failed log-ins allowed for one e-mail address per window; more get a 429 with "
            "`Retry-After` (even with the right password) until the window ends."
        ),
    )
    login_failures_per_address: int = Field(
        50, ge=1,
        description="Failed log-ins allowed from one client address per window (any accounts).",
    )
    login_window_seconds: int = Field(
        900, ge=1,
        description=(
            "The login limiter's window: it opens with a key's first failure and lasts this "
            "long. Successful log-ins do not count."
        ),
    )
    trusted_proxies: list[str] = Field(
        ["127.0.0.1/32", "::1/128"],
        description=(
            "Addresses or networks (CIDR) of the proxies in front of the app tier (the web "
            "tier, load balancers) whose `X-Forwarded-For` is believed for the client's "
            "address; anything else is counted under its own address."
        ),
    )

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        for item in value:
            try:
                ipaddress.ip_network(item.strip(), strict=False)
            except ValueError as exc:
                raise ValueError(f"{item!r} is not an IP address or network (e.g. 10.0.0.0/8)"
                                 ) from exc
        return value

class LimitsConfig(Section):
    """What one request may ask of the tiers: body sizes, and how long a checkout holds its
    Idempotency-Key."""

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
    idempotency_lease_seconds: float = Field(
        60, gt=0, le=3600,
        description=(
            "How long a checkout in progress holds its Idempotency-Key: a twin request meanwhile "
            "gets 409. A hold left by a process that died lapses after this, and the key can "
            "be used again."
        ),
    )


class CacheConfig(Section):
    """The app tier's cache-aside layer (ElastiCache's role, "lazy loading" in AWS's words):
    catalogue pages, category pages, product detail and the session lookup. In process by
    default; shared by every app instance in Redis when `cache_url` is set."""

    enabled: bool = Field(
        True, description="Cache catalogue answers and session lookups; false reads the "
                          "database on every request.",
    )
    ttl_seconds: float = Field(
        300, gt=0, le=86_400,
        description=(
            "How long an answer may stay in the shared (Redis) cache. Writes through the app "
            "tier invalidate it at once on every instance; the TTL bounds writes made "
            "elsewhere (the seed, SQL by hand)."
        ),
    )
    local_ttl_seconds: float = Field(
        5, gt=0, le=3600,
        description=(
            "How long an answer may stay in an instance's own cache (no `cache_url`). A write "
            "invalidates the instance that made it at once; other instances cannot be told, "
            "so they may show the old answer this long."
        ),
    )
    session_ttl_seconds: float = Field(
        60, gt=0, le=3600,
        description=(
            "How long a bearer token's lookup is cached (never past the session's expiry; "
            "log-out and account deletion invalidate it)."
        ),
    )
    max_entries: int = Field(
        10_000, ge=16, le=10_000_000,
        description="Entries an instance's own cache keeps; the least recently used go first. "
                    "(Redis bounds its memory itself: `maxmemory`.)",
    )
    lock_ms: int = Field(
        2000, ge=10, le=60_000,
        description=(
            "Stampede protection in Redis: the instance that misses a hot key first loads it "
            "under a lock of this many milliseconds while the others wait for its answer "
            "(at most this long, then they read the database themselves)."
        ),
    )
    retry_seconds: float = Field(
        2, gt=0, le=300,
        description="After Redis failed, how long the app serves from the database before "
                    "trying Redis again.",
    )


class Settings(BaseSettings):
    """tierlake's configuration. See docs/configuration.md for every key."""

    model_config = SettingsConfigDict(
        env_prefix="TIERLAKE_",
        env_nested_delimiter="__",
        env_parse_none_str="null",
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
    database_pool_size: int = Field(
        10, ge=1, description="Connections kept per app-tier process, and its worker threads: "
        "the requests it runs on the database at once.")
    database_replica_urls: list[str] = Field(
        [],
        description=(
            "Read replicas of the store's database (MySQL/MariaDB URLs, a JSON list). Reads "
            "that may be slightly stale (catalogue, search, product pages, order history) go "
            "to one; a customer still sees their own writes; logins and checkout stay on the "
            "primary. A replica that is down or lags too much is skipped."
        ),
        repr=False,  # they may hold passwords
    )
    database_replica_max_lag_seconds: float = Field(
        5.0, gt=0,
        description="A replica further behind the primary than this is skipped (reads go to "
        "the primary).",
    )
    database_replica_wait_seconds: float = Field(
        0.5, ge=0, le=30,
        description=(
            "Read-your-writes: how long a customer's own read waits for the replica to apply "
            "the primary's position (`MASTER_GTID_WAIT`) before going to the primary."
        ),
    )
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
    host: str = Field("127.0.0.1", description="Address the tiers listen on.")
    web_port: int = Field(8000, ge=0, le=65535, description="Port of the web tier (store front).")
    app_port: int = Field(8001, ge=0, le=65535, description="Port of the app tier (JSON API).")
    bi_port: int = Field(
        8003, ge=0, le=65535,
        description="Port of the BI tier (`tierlake serve bi`); under `tierlake up` it is also "
                    "behind the internet-facing load balancer at `/bi`.",
    )
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
    log_level: str = Field("INFO", description="Log level: DEBUG, INFO, WARNING, ERROR.")
    log_format: Literal["console", "json"] = Field(
        "console", description="`json` writes one JSON object per log line."
    )
    events: EventsConfig = Field(default_factory=EventsConfig)
    extract: ExtractConfig = Field(default_factory=ExtractConfig)
    vacuum: VacuumConfig = Field(default_factory=VacuumConfig)
    spark: SparkConfig = Field(default_factory=SparkConfig)
    pipeline: PipelineConfig = Field(default_factory=PipelineConfig)
    control: ControlConfig = Field(default_factory=ControlConfig)
    auth: AuthConfig = Field(default_factory=AuthConfig)
    limits: LimitsConfig = Field(default_factory=LimitsConfig)
    lb: LbConfig = Field(default_factory=LbConfig)
    dns: DnsConfig = Field(default_factory=DnsConfig)
    fleet: FleetConfig = Field(default_factory=FleetConfig)
    bi: BiConfig = Field(default_factory=BiConfig)
    db_cluster: DbClusterConfig = Field(default_factory=DbClusterConfig)
    cache: CacheConfig = Field(default_factory=CacheConfig)
    cache_url: str = Field(
        "",
        description=(
            "The cache (ElastiCache's role): a Redis URL, e.g. `redis://127.0.0.1:6379/0`. "
            "Holds the login limiter's counters and the app tier's cache (`[cache]`), shared "
            "by every app instance. Empty keeps the counters in the store's database (also "
            "shared) and each app instance's cache in its own memory."
        ),
        repr=False,  # it may hold a password
    )

    @field_validator("database_replica_urls")
    @classmethod
    def _replica_urls(cls, value: list[str]) -> list[str]:
        for url in value:
            if not re.match(r"^(mysql|mariadb)(\+\w+)?://.+", url.strip()):
                raise ValueError(
                    f"{url.split('@')[-1]!r} is not a MySQL/MariaDB URL; replicas are "
                    "supported on MariaDB (e.g. mysql+pymysql://user:pw@host:3317/db); give "
                    "a JSON list, or [] for none")
        return [u.strip() for u in value]

    @field_validator("cache_url")
    @classmethod
    def _redis_url(cls, value: str) -> str:
        if value and not re.match(r"^(rediss?|redis\+unix)://.+", value):
            raise ValueError("must be a Redis URL such as redis://127.0.0.1:6379/0 "
                             "(rediss:// for TLS), or empty to keep counters in the database")
        return value

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
        return self.events.dir if self.events.dir is not None else self.data_dir / "events"

    @property
    def resolved_bi_database_url(self) -> str:
        if self.bi.database_url:
            return self.bi.database_url
        return f"sqlite:///{(self.data_dir / 'bi.db').resolve()}"

    @property
    def resolved_access_logs_dir(self) -> Path:
        d = self.lb.access_logs_dir
        return d if d is not None else self.data_dir / "lb-logs"

    def public_dict(self) -> dict[str, Any]:
        """Settings as shown to a user: secrets and database passwords masked."""
        from sqlalchemy.engine import make_url

        data = self.model_dump(mode="json")
        if self.database_url:
            # An unparseable URL is shown as given: it has no password part to hide.
            with suppress(Exception):
                data["database_url"] = make_url(self.database_url).render_as_string(
                    hide_password=True)
        if self.database_replica_urls:
            with suppress(Exception):
                data["database_replica_urls"] = [
                    make_url(u).render_as_string(hide_password=True)
                    for u in self.database_replica_urls]
        if self.bi.database_url:
            with suppress(Exception):
                data["bi"]["database_url"] = make_url(self.bi.database_url).render_as_string(
                    hide_password=True)
        if self.cache_url:
            data["cache_url"] = re.sub(r"//[^@/]*@", "//***@", self.cache_url)
        return data


def _shown_default(default: Any) -> str:
    if isinstance(default, SecretStr):
        return f"`{default.get_secret_value()}` (local only; refused in production)"
    if default in ("", None, (), []):
        return "(empty)"
    if isinstance(default, tuple | list):
        return "`" + ", ".join(default) + "`"
    return f"`{default}`"


def setting_names() -> dict[str, str]:
    """Every setting's environment variable -> its tierlake.toml key (``section.key``)."""
    names = {}
    for name, field in Settings.model_fields.items():
        section = field.annotation
        if isinstance(section, type) and issubclass(section, Section):
            for key in section.model_fields:
                names[f"TIERLAKE_{name.upper()}__{key.upper()}"] = f"{name}.{key}"
        else:
            names[f"TIERLAKE_{name.upper()}"] = name
    return names


# Variables read by tierlake outside the settings object (TIERLAKE_CONFIG names the file).
OTHER_VARIABLES = frozenset({"TIERLAKE_CONFIG"})


def unknown_variables(environ: Mapping[str, str] | None = None) -> list[str]:
    """``TIERLAKE_*`` variables that name no setting, each with the likely intended one.

    pydantic-settings ignores them, so a typo (or a name from before settings had sections,
    e.g. ``TIERLAKE_EXTRACT__COMPACT_RATIO``) would silently have no effect.
    """
    environ = os.environ if environ is None else environ
    known = setting_names()
    problems = []
    for var in sorted(environ):
        if not var.startswith("TIERLAKE_") or var in known or var in OTHER_VARIABLES:
            continue
        if var.startswith(("TIERLAKE_TEST_", "TIERLAKE_REQUIRE_", "TIERLAKE_PG_")):
            continue  # the test suite's own controls
        close = difflib.get_close_matches(var, known, n=1, cutoff=0.8)
        problems.append(f"{var} is not a setting" + (f" (did you mean {close[0]}?)" if close
                                                    else ""))
    return problems


def settings_reference() -> str:
    """docs/configuration.md: every setting with its variable, key, default and help."""
    lines = [
        "# Configuration",
        "",
        "<!-- Generated by `tierlake config docs`; a test checks it is current. -->",
        "",
        "Every setting can be given as an environment variable or as a key in `tierlake.toml`",
        "(in the working directory, or the file named by `TIERLAKE_CONFIG`). The environment",
        "wins over the file, the file over the defaults. `tierlake config show` prints the",
        "effective values, secrets masked. Settings of one part of the system form a section:",
        "a table in `tierlake.toml` (`[extract]` then `compact_ratio = 0.2`) and a variable",
        "with the section and the key joined by a double underscore",
        "(`TIERLAKE_EXTRACT__COMPACT_RATIO=0.2`). A `TIERLAKE_*` variable that names no",
        "setting is reported when a command starts.",
        "",
        "| variable | `tierlake.toml` key | default | what it does |",
        "|---|---|---|---|",
    ]
    sections = []
    for name, field in Settings.model_fields.items():
        section = field.annotation
        if isinstance(section, type) and issubclass(section, Section):
            sections.append((name, section))
            continue
        lines.append(f"| `TIERLAKE_{name.upper()}` | `{name}` | {_shown_default(field.default)} "
                     f"| {field.description} |")
    for name, section in sections:
        lines += ["", f"## `[{name}]`", "", " ".join((section.__doc__ or "").split()), "",
                  "| variable | `tierlake.toml` key | default | what it does |",
                  "|---|---|---|---|"]
        for key, field in section.model_fields.items():
            lines.append(f"| `TIERLAKE_{name.upper()}__{key.upper()}` | `{name}.{key}` | "
                         f"{_shown_default(field.default)} | {field.description} |")
    return "\n".join(lines) + "\n"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()


def reset_settings_cache() -> None:
    get_settings.cache_clear()
