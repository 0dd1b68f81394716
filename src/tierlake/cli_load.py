"""`tierlake load`: realistic shoppers against the system's entry point (Locust).

The lead registers the command in ``cli.py`` with ``app.command("load")(load)``; until then
(and for tests) ``python -m tierlake.cli_load`` runs the same function.
"""

from __future__ import annotations

import random
import sys
from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape

from tierlake.config import get_settings
from tierlake.errors import TierlakeError
from tierlake.load.entry import EntryPoint, check_target, resolve_entry_point
from tierlake.load.runner import (
    MAX_DURATION_S,
    MAX_USERS,
    LoadPlan,
    print_summary,
    run_load,
    write_summary,
)
from tierlake.logging import configure_logging

__all__ = ["load", "main"]


def load(
    users: Annotated[int, typer.Option(
        min=1, max=MAX_USERS, help=f"Concurrent shoppers (at most {MAX_USERS}).")] = 10,
    duration: Annotated[int, typer.Option(
        min=1, max=MAX_DURATION_S, help=f"Seconds to run (at most {MAX_DURATION_S}).")] = 60,
    host: Annotated[str | None, typer.Option(
        help="Base URL to load instead of the DNS-resolved shop, e.g. http://127.0.0.1:8000."
    )] = None,
    allow_remote: Annotated[bool, typer.Option(
        "--allow-remote", help="Allow a target that is not on this machine.")] = False,
    spawn_rate: Annotated[float, typer.Option(
        min=0.1, max=1000, help="Shoppers started per second.")] = 10.0,
    think_scale: Annotated[float, typer.Option(
        min=0, max=10, help="Multiplies the shoppers' think times (1: a person, 0: none).")
    ] = 1.0,
    seed: Annotated[int | None, typer.Option(
        help="Seed of the shoppers' choices [default: a random one, printed].")] = None,
    web_ui: Annotated[bool, typer.Option(
        "--web-ui", help="Run Locust's own web UI (on --web-port) instead of headless.")
    ] = False,
    web_port: Annotated[int, typer.Option(min=1, max=65535, help="Port of Locust's web UI.")
    ] = 8089,
    json_out: Annotated[Path | None, typer.Option(
        "--json-out", help="Also write the summary as JSON to this file.")] = None,
) -> None:
    """Run realistic shopper sessions (browse, search, cart, checkout) against the store.

    By default the store is found as shop.<zone> through the system's DNS server (A record,
    SRV _http._tcp for the port) and requests carry that Host header; without a DNS server
    the web tier's address is used. Only loopback targets unless --allow-remote. Ctrl-C
    stops early and still prints the summary.
    """
    try:
        settings = get_settings()
    except ValidationError as exc:
        raise TierlakeError(f"configuration is invalid ({exc.error_count()} problem(s)); run "
                            "`tierlake config show` to see which") from exc
    configure_logging(settings.log_level, settings.log_format, "load")
    if host:
        target = EntryPoint(host.rstrip("/"), "", "--host")
    else:
        target = resolve_entry_point(settings.dns.zone, settings.dns.port,
                                     fallback_host=settings.host,
                                     fallback_port=settings.web_port)
    check_target(target.url, allow_remote=allow_remote)
    console = Console()
    run_seed = seed if seed is not None else random.SystemRandom().randrange(1, 10**6)
    console.print(f"{users} shoppers for {duration} s against {escape(target.url)}: "
                  f"{escape(target.note)}; seed {run_seed}", soft_wrap=True)
    plan = LoadPlan(users=users, duration_s=duration, target=target, spawn_rate=spawn_rate,
                    think_scale=think_scale, seed=run_seed, web_ui=web_ui, web_port=web_port,
                    fleet_url=f"http://{settings.host}:{settings.fleet.control_port}/api/fleet")
    summary = run_load(plan, console)
    print_summary(summary, console)
    if json_out is not None:
        write_summary(summary, json_out)
        console.print(f"Summary written to {escape(str(json_out))}", soft_wrap=True)
    if summary.requests == 0:
        raise TierlakeError(f"no request was made against {target.url}; is the store up "
                            "(`tierlake up`)?")


def main() -> None:
    """``python -m tierlake.cli_load``: the command alone, with tierlake's one-line errors."""
    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False,
                      rich_markup_mode=None)
    app.command("load")(load)
    try:
        app()
    except TierlakeError as exc:
        Console(stderr=True).print(f"[bold red]error:[/] {escape(str(exc))}", soft_wrap=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
