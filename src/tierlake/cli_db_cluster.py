"""`tierlake db cluster`: an RDS Multi-AZ-like MariaDB cluster on this machine.

``up`` runs the cluster in the foreground (two ``mariadbd`` servers under
``<data_dir>/db-cluster/``, the writer and reader endpoints, the failover monitor) until
Ctrl-C; ``status`` and ``failover`` talk to it over its control socket
(:mod:`tierlake.data.cluster.control`). ``cluster_app`` is ``tierlake db cluster``
and ``failover`` is also ``tierlake db failover``. Failures are one
line on stderr and exit code 1, never a traceback.
"""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from tierlake.config import DbClusterConfig, get_settings
from tierlake.data.cluster import CONTROL_SOCKET, DBCluster, DBClusterError, request, serve_control
from tierlake.logging import configure_logging

cluster_app = typer.Typer(
    help="An RDS Multi-AZ-like MariaDB cluster: primary, semi-synchronous standby, writer "
    "and reader endpoints, automatic and planned failover.",
    no_args_is_help=True,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)
CLUSTER_DIR = "db-cluster"
EVENTS_SHOWN = 15

DataDirOpt = Annotated[Path | None, typer.Option(
    "--data-dir", help="Where the cluster lives (<data-dir>/db-cluster) [default: "
    "TIERLAKE_DATA_DIR].")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")]

out = Console()
err = Console(stderr=True)


def _fail(message: str) -> NoReturn:
    err.print(f"[bold red]error:[/] {escape(message)}", soft_wrap=True)
    raise typer.Exit(1)


def _cluster_dir(data_dir: Path | None) -> Path:
    if data_dir is None:
        try:
            data_dir = get_settings().data_dir
        except ValidationError as exc:
            _fail(f"configuration is invalid ({exc.error_count()} problem(s)); run `tierlake "
                  "config show` to see which, or pass --data-dir")
    return data_dir / CLUSTER_DIR


@cluster_app.command("up")
def up(
    data_dir: DataDirOpt = None,
    writer_port: Annotated[int | None, typer.Option(
        help="The writer endpoint's port (the app tier's database URL) [default: "
        "TIERLAKE_DB_CLUSTER__WRITER_PORT, 3316].", show_default=False)] = None,
    reader_port: Annotated[int | None, typer.Option(
        help="The reader endpoint's port (the standby) [default: "
        "TIERLAKE_DB_CLUSTER__READER_PORT, 3317].", show_default=False)] = None,
    check_interval: Annotated[float | None, typer.Option(
        help="Seconds between health checks of each server [default: "
        "TIERLAKE_DB_CLUSTER__CHECK_INTERVAL, 1].", show_default=False)] = None,
    failure_threshold: Annotated[int | None, typer.Option(
        help="Failed checks in a row before a failover (a dead process: at once) [default: "
        "TIERLAKE_DB_CLUSTER__FAILURE_THRESHOLD, 3].", show_default=False)] = None,
) -> None:
    """Start the primary, the standby, the endpoints and the monitor; Ctrl-C stops them."""
    configure_logging("INFO", "console", "db-cluster")
    directory = _cluster_dir(data_dir)
    config = _config()
    overrides = {"writer_port": writer_port, "reader_port": reader_port,
                 "check_interval": check_interval, "failure_threshold": failure_threshold}
    config = config.model_copy(update={k: v for k, v in overrides.items() if v is not None})
    try:
        asyncio.run(_run(directory, config))
    except (DBClusterError, OSError) as exc:
        _fail(str(exc))


def _config() -> DbClusterConfig:
    try:
        return get_settings().db_cluster
    except ValidationError as exc:
        _fail(f"configuration is invalid ({exc.error_count()} problem(s)); run `tierlake "
              "config show` to see which")


async def _run(directory: Path, config: DbClusterConfig) -> None:
    cluster = DBCluster.from_config(directory, config)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stopping.set)
    await cluster.start()
    control = await serve_control(cluster, directory / CONTROL_SOCKET)
    try:
        out.print(f"writer endpoint: {cluster.writer_url}", soft_wrap=True)
        out.print(f"reader endpoint: {cluster.reader_url}", soft_wrap=True)
        out.print(f"primary: {cluster.primary_name}; `tierlake db cluster status` shows more; "
                  "Ctrl-C stops the cluster", soft_wrap=True)
        await stopping.wait()
    finally:
        control.close()
        await control.wait_closed()
        (directory / CONTROL_SOCKET).unlink(missing_ok=True)
        await cluster.stop()


def _ask(data_dir: Path | None, action: str) -> Any:
    try:
        return request(_cluster_dir(data_dir) / CONTROL_SOCKET, action)
    except DBClusterError as exc:
        _fail(str(exc))


@cluster_app.command("status")
def status(data_dir: DataDirOpt = None, as_json: JsonOpt = False) -> None:
    """Roles, GTID positions, ReplicaLag, endpoints and the event history."""
    st: dict[str, Any] = _ask(data_dir, "status")
    if as_json:
        out.print_json(json.dumps(st))
        return
    table = Table(title=f"{st['DBClusterIdentifier']} ({st['Engine']})")
    for column in ("Instance", "Role", "Status", "Port", "GTID position", "ReplicaLag (s)",
                   "Read-only"):
        table.add_column(column)
    for m in st["DBClusterMembers"]:
        lag = m["ReplicaLag"]
        table.add_row(m["DBInstanceIdentifier"], m["Role"], m["DBInstanceStatus"],
                      str(m["Port"]), m["GtidCurrentPos"] or "-",
                      "-" if lag is None else f"{lag:g}",
                      "-" if m["ReadOnly"] is None else ("yes" if m["ReadOnly"] else "no"))
    out.print(table)
    writer, reader = st["Endpoint"], st["ReaderEndpoint"]
    out.print(f"writer endpoint :{writer['port']} -> {writer['target']}"
              f"{' (held)' if writer['held'] else ''}, {writer['connections']} connection(s)")
    out.print(f"reader endpoint :{reader['port']} -> {reader['target']}, "
              f"{reader['connections']} connection(s)")
    out.print("events (latest last):")
    for e in st["Events"][-EVENTS_SHOWN:]:  # one line each: messages stay whole, greppable
        out.print(f"  {e['Date']}  {e['SourceIdentifier']:<12} {escape(e['Message'])}",
                  soft_wrap=True, highlight=False)


@cluster_app.command("failover")
def failover(data_dir: DataDirOpt = None) -> None:
    """Planned failover (reboot with failover): the standby becomes the primary."""
    result: dict[str, Any] = _ask(data_dir, "failover")
    out.print(f"{result['new_primary']} is the primary now ({result['old_primary']} is its "
              f"standby); writes were held for {result['seconds']:.2f} s")


cluster_failover = failover  # `tierlake db failover`, as RDS's reboot with failover


if __name__ == "__main__":
    cluster_app()
