"""The `tierlake` command: one entry point for every tier and tool."""

from __future__ import annotations

import json
import sys
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated, Literal

import structlog
import typer
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape

from tierlake import __version__
from tierlake.config import DEFAULT_ADMIN_PASSWORD, Settings, get_settings, unknown_variables
from tierlake.errors import TierlakeError
from tierlake.logging import configure_logging

if TYPE_CHECKING:
    from tierlake.data.db import Database

app = typer.Typer(
    help="tierlake: the classic AWS web + analytics system on one machine or many.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # help texts are plain text: "[default: X]" stays as written
    context_settings={"help_option_names": ["-h", "--help"]},
)
db_app = typer.Typer(help="The store's database: migrations and status.", no_args_is_help=True)
app.add_typer(db_app, name="db")
config_app = typer.Typer(help="Inspect the configuration.", no_args_is_help=True)
app.add_typer(config_app, name="config")
pipeline_app = typer.Typer(
    help="The analytics pipeline: extract the store into the lake, run the jobs.",
    no_args_is_help=True)
app.add_typer(pipeline_app, name="pipeline")
from tierlake.cli_db_cluster import cluster_app, cluster_failover  # noqa: E402
from tierlake.cli_fleet import fleet_app  # noqa: E402 - its commands join the app here

db_app.add_typer(cluster_app, name="cluster")
db_app.command("failover")(cluster_failover)

app.add_typer(fleet_app, name="fleet")
from tierlake.cli_bi import bi_app  # noqa: E402 - its commands join the app here
from tierlake.cli_bi_reports import bi_reports_app, mail_app  # noqa: E402

bi_app.add_typer(bi_reports_app)  # `bi report`, `bi alerts ...` beside `bi user`, `bi rule`
app.add_typer(bi_app, name="bi")
app.add_typer(mail_app, name="mail")

EngineOpt = Annotated[
    Literal["duckdb", "spark"] | None,
    typer.Option(help="Job engine [default: TIERLAKE_ENGINE, duckdb].")]
MasterOpt = Annotated[
    str | None, typer.Option(help="Spark master URL [default: TIERLAKE_SPARK__MASTER, local[*]].")]
ProgressOpt = Annotated[bool, typer.Option(help="Show progress bars.")]

err = Console(stderr=True)
out = Console()
log = structlog.get_logger("tierlake.cli")


def _settings(component: str = "cli") -> Settings:
    try:
        settings = get_settings()
    except ValidationError as exc:
        problems = "; ".join(
            (f"TIERLAKE_{'__'.join(str(p) for p in e['loc']).upper()}: " if e["loc"] else "")
            + e["msg"] for e in exc.errors())
        raise TierlakeError(
            f"configuration is invalid: {problems}. Fix the environment variable (or the same "
            "key in tierlake.toml); docs/configuration.md lists every setting.") from exc
    configure_logging(settings.log_level, settings.log_format, component)
    for problem in unknown_variables():
        err.print(f"[yellow]warning:[/] {escape(problem)}; it has no effect "
                  "(docs/configuration.md lists every setting)", soft_wrap=True)
    return settings


@contextmanager
def _database(settings: Settings):
    """The store's database; connection failures become one-line errors naming the fix."""
    from tierlake.data.db import Database

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    db = Database(settings.resolved_database_url, settings.database_pool_size)
    try:
        with db.translate_errors():
            yield db
    finally:
        db.dispose()


def _demo_shoppers(db: Database, count: int = 2) -> list[str]:
    """E-mails of ``count`` seeded customers whose password is the demo password."""
    from sqlalchemy import select

    from tierlake.app.security import verify_password
    from tierlake.data.schema import Customer
    from tierlake.seed import DEMO_PASSWORD

    with db.engine.connect() as conn:
        rows = conn.execute(
            select(Customer.email, Customer.password_hash)
            .where(Customer.is_admin.is_(False), Customer.email.is_not(None))
            .order_by(Customer.id).limit(10)).all()
    return [r.email for r in rows if verify_password(r.password_hash, DEMO_PASSWORD)][:count]


def _banner(settings: Settings, store: str, api: str, shoppers: list[str],
            extra: list[str] | None = None) -> list[str]:
    """The lines `up` prints once every tier is ready (markup escaped, one line each)."""
    from tierlake.seed import DEMO_PASSWORD

    password = settings.admin_password.get_secret_value()
    shown = password if password == DEFAULT_ADMIN_PASSWORD else "TIERLAKE_ADMIN_PASSWORD"
    lines = ["", f"[bold green]tierlake is up.[/] Store: [bold]{escape(store)}[/]",
             f"API docs: {escape(api)}/api/docs",
             f"Admin login: {escape(settings.admin_email)} / {escape(shown)}"]
    if shoppers:
        lines.append("Demo shopper logins: " + ", ".join(
            f"{escape(e)} / {DEMO_PASSWORD}" for e in shoppers))
    fleet = settings.fleet
    lines.append(f"Fleet: web {fleet.web_min}-{fleet.web_max} and app {fleet.app_min}-"
                 f"{fleet.app_max} instances behind load balancers on ports {settings.web_port} "
                 f"and {settings.app_port}; operator page: "
                 f"http://{escape(settings.host)}:{fleet.control_port}/ (`tierlake fleet status`)")
    if settings.dns.enabled:
        lines.append(f"DNS: dig @{escape(settings.host)} -p {settings.dns.port} "
                     f"shop.{escape(settings.dns.zone)}")
    if settings.pipeline.interval_seconds > 0:
        batches = settings.pipeline.micro_batch_seconds
        what = f", what changed every {batches:g} s" if batches > 0 else ""
        lines.append(f"Analytics pipeline: every {settings.pipeline.interval_seconds:g} s{what}, "
                     f"into {escape(settings.resolved_lake_url)}; see `tierlake pipeline status`.")
    lines += [escape(line) for line in extra or []]
    return [*lines, "Press Ctrl-C to stop.", ""]


@app.command()
def up(
    seed: Annotated[
        bool, typer.Option(help="Seed a demo store when the database is empty.")
    ] = True,
) -> None:
    """Run the whole system: migrate, seed if empty, start app and web tiers; Ctrl-C stops it."""
    from tierlake.data import migrate
    from tierlake.fleet.supervisor import Supervisor

    supervisor = Supervisor(_settings("supervisor"))
    settings = supervisor.settings  # with db_cluster.enabled: on the cluster's endpoints
    shoppers: list[str] = []

    def prepare() -> None:
        with _database(settings) as db:
            migrate.upgrade(db.engine)
            if seed:
                from tierlake.seed import is_empty, seed_store

                if is_empty(db):
                    out.print("Empty store: seeding a demo store (takes a few seconds)...")
                    seed_store(db, events_dir=settings.resolved_events_dir,
                               admin_email=settings.admin_email,
                               admin_password=settings.admin_password.get_secret_value())
            shoppers.extend(_demo_shoppers(db))

    if supervisor.db_cluster:  # the database exists once the cluster has started
        supervisor.db_cluster.on_started = prepare
    else:
        prepare()

    def ready() -> None:
        for line in _banner(settings, supervisor.url("web"), supervisor.url("app"), shoppers,
                            supervisor.banner_lines()):
            out.print(line, soft_wrap=True)  # a URL is never broken onto a line of its own

    supervisor.run(on_ready=ready)
    out.print("tierlake stopped.")


def _serve_help() -> str:
    from tierlake.fleet.tiers import TIERS

    return "Which tier to serve: " + "; ".join(f"{t.name}: {t.summary}" for t in TIERS.values())


@app.command()
def serve(
    tier: Annotated[str, typer.Argument(help=_serve_help(), show_default=False)],
    host: Annotated[
        str | None, typer.Option(help="Listen address [default: TIERLAKE_HOST].")
    ] = None,
    port: Annotated[
        int | None, typer.Option(help="Port [default: the tier's configured port].")
    ] = None,
) -> None:
    """Serve one tier in the foreground (one instance; `up` starts them all)."""
    import uvicorn

    from tierlake.fleet.tiers import TIERS

    if tier not in TIERS:
        raise typer.BadParameter(f"{tier!r} is not a tier; choose one of: {', '.join(TIERS)}",
                                 param_hint="TIER")
    spec = TIERS[tier]
    settings = _settings(tier)
    asgi = spec.build(settings)
    uvicorn.run(asgi, host=host or settings.host,
                port=port if port is not None else spec.listener_port(settings),
                log_config=None, access_log=False, timeout_graceful_shutdown=10,
                server_header=False)


@app.command()
def seed(
    products: Annotated[int, typer.Option(min=1, help="Products in the catalogue.")] = 240,
    customers: Annotated[int, typer.Option(min=1, help="Customer accounts.")] = 1000,
    orders: Annotated[int, typer.Option(min=0, help="Orders over the history.")] = 20000,
    months: Annotated[int, typer.Option(min=1, max=120, help="Months of history.")] = 12,
    clickstream: Annotated[bool, typer.Option(help="Also write the matching clickstream.")] = True,
    random_seed: Annotated[int, typer.Option("--random-seed", help="Seed of the generator.")] = 42,
) -> None:
    """Fill an empty store with realistic demo data (catalogue, customers, orders, clicks)."""
    from tierlake.data import migrate
    from tierlake.seed import is_empty, seed_store

    settings = _settings()
    with _database(settings) as db:
        migrate.upgrade(db.engine)
        if not is_empty(db):
            raise TierlakeError(
                "the store already has data; seed only an empty database (point "
                "TIERLAKE_DATABASE_URL at a new one, or delete the SQLite file)")
        info = seed_store(
            db, products=products, customers=customers, orders=orders, months=months,
            events_dir=settings.resolved_events_dir if clickstream else None, seed=random_seed,
            admin_email=settings.admin_email,
            admin_password=settings.admin_password.get_secret_value(), progress=True)
    if settings.cache_url:  # app instances sharing Redis must not serve pages from before
        from tierlake.app.cache import cache_for

        cache = cache_for(settings)
        try:
            cache.invalidate_all()
        finally:
            cache.close()
    out.print(
        f"Seeded {info.categories} categories, {info.products:,} products, "
        f"{info.customers:,} customers, {info.orders:,} orders ({info.order_lines:,} lines) "
        f"from {info.start:%Y-%m-%d} to {info.end:%Y-%m-%d}, and {info.events:,} clickstream "
        f"events in {info.event_files:,} files, in {info.elapsed_seconds:.1f} s.")


@db_app.command("migrate")
def db_migrate() -> None:
    """Apply the schema migrations the database is missing."""
    from tierlake.data import migrate
    from tierlake.data.db import safe_url

    with _database(_settings()) as db:
        revision = migrate.upgrade(db.engine)
        out.print(f"{escape(safe_url(db.url))} is at revision {revision} (head).")


@db_app.command("status")
def db_status() -> None:
    """Show which database is configured and its schema revision."""
    from tierlake.data import migrate
    from tierlake.data.db import safe_url

    with _database(_settings()) as db:
        current, head = migrate.current_revision(db.engine), migrate.head_revision()
        state = "up to date" if current == head else "behind: run `tierlake db migrate`"
        out.print(f"database: {escape(safe_url(db.url))}\n"
                  f"revision: {current or 'none'} (head {head}, {state})")


@config_app.command("show")
def config_show() -> None:
    """Print the effective configuration as JSON (secrets masked)."""
    out.print_json(json.dumps(_settings().public_dict()))


@config_app.command("docs")
def config_docs() -> None:
    """Print the configuration reference (docs/configuration.md) as Markdown."""
    from tierlake.config import settings_reference

    sys.stdout.write(settings_reference())


SupervisedOpt = Annotated[
    int | None, typer.Option(hidden=True, help="Pid of the `tierlake up` that started this "
                             "run: the run and its children die with it.")]


def _pipeline(*, engine: str | None, master: str | None, extract: bool, jobs: bool,
              progress: bool, supervised_by: int | None = None) -> None:
    from tierlake.pipeline.lock import pipeline_lock
    from tierlake.pipeline.report import print_summary
    from tierlake.pipeline.run import run_pipeline

    if supervised_by is not None:
        from tierlake.fleet.lifeline import guard_process_group

        guard_process_group(supervised_by)
    settings = _settings("pipeline")
    command = "tierlake up's scheduled run" if supervised_by else None
    with pipeline_lock(settings, command):
        info = run_pipeline(settings, engine=engine, master=master, extract=extract, jobs=jobs,
                            progress=progress)
    print_summary(out, info)


@pipeline_app.command("run")
def pipeline_run(engine: EngineOpt = None, master: MasterOpt = None,
                 progress: ProgressOpt = True, supervised_by: SupervisedOpt = None) -> None:
    """Extract the store into the lake, then run every job into curated tables."""
    _pipeline(engine=engine, master=master, extract=True, jobs=True, progress=progress,
              supervised_by=supervised_by)


@pipeline_app.command("extract")
def pipeline_extract(progress: ProgressOpt = True) -> None:
    """Only the extract: new and changed rows, deletes and new clickstream files to the lake."""
    _pipeline(engine=None, master=None, extract=True, jobs=False, progress=progress)


@pipeline_app.command("jobs")
def pipeline_jobs(engine: EngineOpt = None, master: MasterOpt = None,
                  progress: ProgressOpt = True) -> None:
    """Only the jobs, on the lake as it is."""
    _pipeline(engine=engine, master=master, extract=False, jobs=True, progress=progress)


@pipeline_app.command("compact")
def pipeline_compact() -> None:
    """Merge every change waiting in the lake's log into its current/ table now.

    Extracts leave small changes in raw/ (readers apply them) and merge once they reach
    TIERLAKE_EXTRACT__COMPACT_RATIO of a table; this merges them whatever their size.
    """
    from tierlake.lake.store import Lake
    from tierlake.pipeline.lock import pipeline_lock
    from tierlake.pipeline.report import print_compaction
    from tierlake.pipeline.run import compact_lake

    settings = _settings("pipeline")
    with pipeline_lock(settings):
        done = compact_lake(Lake(settings.resolved_lake_url))
    print_compaction(out, done)


@pipeline_app.command("status")
def pipeline_status() -> None:
    """Each lake table's version and rows (as the Delta table holds them, and for current/
    tables with the changes waiting in raw/ applied), how long changes have waited, and the
    last run's and vacuum's outcome."""
    from tierlake.lake.store import Lake
    from tierlake.pipeline.report import print_status
    from tierlake.pipeline.status import lake_status, read_status

    settings = _settings()
    print_status(out, lake_status(Lake(settings.resolved_lake_url)), read_status(settings))


@pipeline_app.command("vacuum")
def pipeline_vacuum(
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="List what would be removed; remove nothing.")] = False,
    retention_hours: Annotated[int | None, typer.Option(
        min=0, help="Keep files versions of this many hours need "
        "[default: TIERLAKE_VACUUM__RETENTION_HOURS, 168].")] = None,
) -> None:
    """Remove the lake's old data files and log entries (retention).

    Every table of every zone: data files no version of the retention period references are
    deleted (time travel within it keeps working), and logs get a checkpoint every
    TIERLAKE_VACUUM__CHECKPOINT_INTERVAL commits, older entries removed. `pipeline run` does
    this by itself every TIERLAKE_VACUUM__INTERVAL_HOURS.
    """
    from tierlake.lake.store import Lake
    from tierlake.pipeline.lock import pipeline_lock
    from tierlake.pipeline.report import print_vacuum
    from tierlake.pipeline.run import vacuum

    settings = _settings("pipeline")
    hours = settings.vacuum.retention_hours if retention_hours is None else retention_hours
    with pipeline_lock(settings):  # a run in progress may still read the files vacuum removes
        done = vacuum(settings, Lake(settings.resolved_lake_url), dry_run=dry_run,
                      retention_hours=hours)
    print_vacuum(out, done, dry_run=dry_run, retention_hours=hours)


@app.command()
def version() -> None:
    """Print tierlake's version."""
    out.print(__version__)


from tierlake.cli_load import load  # noqa: E402 - after the commands above, in --help's order

app.command("load")(load)


def main() -> None:
    from tierlake.pipeline.lock import EXIT_LOCKED, PipelineLockedError

    try:
        app()
    except TierlakeError as exc:
        err.print(f"[bold red]error:[/] {escape(str(exc))}", soft_wrap=True)
        sys.exit(EXIT_LOCKED if isinstance(exc, PipelineLockedError) else 1)
    except KeyboardInterrupt:
        sys.exit(130)
