"""The `tierlake` command: one entry point for every tier and tool."""

from __future__ import annotations

import dataclasses
import json
import sys
from contextlib import contextmanager
from typing import Annotated, Literal

import structlog
import typer
from pydantic import ValidationError
from rich.console import Console

from tierlake import __version__
from tierlake.config import DEFAULT_ADMIN_PASSWORD, Settings, get_settings
from tierlake.errors import TierlakeError
from tierlake.logging import configure_logging

app = typer.Typer(
    help="tierlake: the classic AWS web + analytics system on one machine or many.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
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

EngineOpt = Annotated[
    Literal["duckdb", "spark"] | None,
    typer.Option(help="Job engine [default: TIERLAKE_ENGINE, duckdb].")]
MasterOpt = Annotated[
    str | None, typer.Option(help="Spark master URL [default: TIERLAKE_SPARK_MASTER, local[*]].")]
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
    return settings


@contextmanager
def _database(settings: Settings):  # type: ignore[no-untyped-def]
    """The store's database; connection failures become one-line errors naming the fix."""
    from tierlake.data.db import Database

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    db = Database(settings.resolved_database_url, settings.database_pool_size)
    try:
        with db.translate_errors():
            yield db
    finally:
        db.dispose()


@app.command()
def up(
    seed: Annotated[
        bool, typer.Option(help="Seed a demo store when the database is empty.")
    ] = True,
) -> None:
    """Run the whole system: migrate, seed if empty, start app and web tiers; Ctrl-C stops it."""
    from tierlake.data import migrate
    from tierlake.fleet.supervisor import Supervisor

    settings = _settings("supervisor")
    with _database(settings) as db:
        migrate.upgrade(db.engine)
        if seed:
            from tierlake.seed import is_empty, seed_store

            if is_empty(db):
                out.print("Empty store: seeding a demo store (takes a few seconds)...")
                seed_store(db, events_dir=settings.resolved_events_dir,
                           admin_email=settings.admin_email,
                           admin_password=settings.admin_password.get_secret_value())
    supervisor = Supervisor(settings)

    def ready() -> None:
        out.print(f"\n[bold green]tierlake is up.[/] Store: [bold]{supervisor.web.url}[/]   "
                  f"API docs: {supervisor.app.url}/api/docs")
        password = settings.admin_password.get_secret_value()
        shown = password if password == DEFAULT_ADMIN_PASSWORD else "TIERLAKE_ADMIN_PASSWORD"
        out.print(f"Admin: {settings.admin_email} / {shown}.  Demo shoppers: "
                  "customer e-mails from the admin page, password demo-password.")
        if settings.pipeline_interval_seconds > 0:
            out.print(f"Analytics pipeline: every {settings.pipeline_interval_seconds:g} s into "
                      f"{settings.resolved_lake_url}; see `tierlake pipeline status`.")
        out.print("Press Ctrl-C to stop.\n")

    supervisor.run(on_ready=ready)
    out.print("tierlake stopped.")


@app.command()
def serve(
    tier: Annotated[Literal["app", "web"], typer.Argument(help="Which tier to serve.")],
    host: Annotated[
        str | None, typer.Option(help="Listen address [default: TIERLAKE_HOST].")
    ] = None,
    port: Annotated[
        int | None, typer.Option(help="Port [default: the tier's configured port].")
    ] = None,
) -> None:
    """Serve one tier in the foreground (one instance; `up` starts them all)."""
    import uvicorn

    settings = _settings(tier)
    if tier == "app":
        from tierlake.app.main import create_app as create_api

        asgi = create_api(settings)
        default_port = settings.app_port
    else:
        from tierlake.web.main import create_app as create_web

        asgi = create_web(settings)
        default_port = settings.web_port
    uvicorn.run(asgi, host=host or settings.host, port=port if port is not None else default_port,
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
        out.print(f"{safe_url(db.url)} is at revision {revision} (head).")


@db_app.command("status")
def db_status() -> None:
    """Show which database is configured and its schema revision."""
    from tierlake.data import migrate
    from tierlake.data.db import safe_url

    with _database(_settings()) as db:
        current, head = migrate.current_revision(db.engine), migrate.head_revision()
        state = "up to date" if current == head else "behind: run `tierlake db migrate`"
        out.print(f"database: {safe_url(db.url)}\n"
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


def _pipeline(*, engine: str | None, master: str | None, extract: bool, jobs: bool,
              progress: bool) -> None:
    from tierlake.pipeline.run import run_pipeline

    settings = _settings("pipeline")
    info = run_pipeline(settings, engine=engine, master=master, extract=extract, jobs=jobs,
                        progress=progress)
    from tierlake.pipeline.report import print_summary

    print_summary(out, info)


@pipeline_app.command("run")
def pipeline_run(engine: EngineOpt = None, master: MasterOpt = None,
                 progress: ProgressOpt = True) -> None:
    """Extract the store into the lake, then run every job into curated tables."""
    _pipeline(engine=engine, master=master, extract=True, jobs=True, progress=progress)


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
    TIERLAKE_EXTRACT_COMPACT_RATIO of a table; this merges them whatever their size.
    """
    from tierlake.lake.store import Lake
    from tierlake.pipeline.report import print_compaction
    from tierlake.pipeline.run import compact_lake

    settings = _settings("pipeline")
    print_compaction(out, compact_lake(Lake(settings.resolved_lake_url)))


@pipeline_app.command("status")
def pipeline_status() -> None:
    """Each lake table's version, rows, changes not merged yet and freshness, and the last
    run's outcome."""
    from tierlake.lake import current
    from tierlake.lake.store import Lake
    from tierlake.pipeline.report import print_status
    from tierlake.pipeline.status import read_status

    settings = _settings()
    lake = Lake(settings.resolved_lake_url)
    tables, pending = [], {}
    for t in lake.list_tables():
        todo = current.pending(lake, t.name) if t.zone == "current" else None
        if todo is not None and todo.paths:  # rows as readers see them, changes applied
            pending[t.name] = todo.rows
            t = dataclasses.replace(t, rows=current.read_keys(
                lake, t.name, todo.key(t.name), versioned=todo.versioned).num_rows)
        tables.append(t)
    print_status(out, tables, read_status(settings), pending)


@app.command()
def version() -> None:
    """Print tierlake's version."""
    out.print(__version__)


def main() -> None:
    try:
        app()
    except TierlakeError as exc:
        err.print(f"[bold red]error:[/] {exc}")
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)



