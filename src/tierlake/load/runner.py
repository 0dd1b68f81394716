"""``tierlake load``: Locust as a child process, a live table, a summary.

Locust runs on gevent and monkey-patches the standard library when imported, which must
never happen inside tierlake's own (asyncio) processes; so it runs as
``python -m locust -f <the shipped locustfile> --headless ...`` in a process of its own,
and this side reads what it writes (CSV stats every second, a JSON file at the end; see
``stats.py``). The child is bounded twice: Locust's ``--run-time`` and our own deadline
after which it is killed; it dies with us (``PR_SET_PDEATHSIG``) and, being in its own
session, does not get the terminal's Ctrl-C: we catch it, stop Locust with SIGTERM (which
makes it write its final figures) and still print the summary.

While it runs, the control plane's ``/api/fleet`` (when one answers) is asked each second
how many instances of each Auto Scaling group are InService, so the summary shows the
fleet's size over time next to the load that moved it.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import structlog
from rich.console import Console, Group
from rich.live import Live
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from tierlake.fleet.lifeline import die_with_parent
from tierlake.load.entry import EntryPoint
from tierlake.load.stats import (
    FleetSample,
    LiveFigures,
    LoadSummary,
    in_service_counts,
    read_live,
    summarize,
)

log = structlog.get_logger(__name__)
LOCUSTFILE = Path(__file__).with_name("locustfile.py")
MAX_USERS = 1000
MAX_DURATION_S = 3600
STOP_GRACE_S = 15.0  # Locust's own --stop-timeout plus writing its files

__all__ = ["LOCUSTFILE", "MAX_DURATION_S", "MAX_USERS", "LoadPlan", "locust_command",
           "print_summary", "run_load"]


@dataclass(frozen=True)
class LoadPlan:
    users: int
    duration_s: int
    target: EntryPoint
    spawn_rate: float = 10.0
    think_scale: float = 1.0
    seed: int = 1
    web_ui: bool = False
    web_port: int = 8089
    fleet_url: str = ""  # the control plane's /api/fleet; "" to not ask


def locust_command(plan: LoadPlan, prefix: Path) -> list[str]:
    """The Locust command line for ``plan``, its files under ``prefix``."""
    cmd = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--host", plan.target.url,
           "--users", str(plan.users), "--spawn-rate", f"{plan.spawn_rate:g}",
           "--run-time", f"{plan.duration_s}s", "--stop-timeout", "5",
           "--csv", str(prefix), "--csv-full-history", "--json-file", str(prefix),
           "--think-scale", f"{plan.think_scale:g}", "--session-seed", str(plan.seed),
           "--exit-code-on-error", "0", "--loglevel", "WARNING"]
    if plan.target.host_header:
        cmd += ["--shop-host", plan.target.host_header]
    if plan.web_ui:
        # Locust's page, started at once and bounded all the same; it quits after the run.
        cmd += ["--web-host", "127.0.0.1", "--web-port", str(plan.web_port), "--autostart",
                "--autoquit", "5"]
    else:
        cmd += ["--headless", "--only-summary"]
    return cmd


def run_load(plan: LoadPlan, console: Console) -> LoadSummary:
    """Run the plan with a live view; Ctrl-C stops it early. Returns the summary."""
    with tempfile.TemporaryDirectory(prefix="tierlake-load-") as tmp:
        prefix = Path(tmp) / "locust"
        log_path = Path(tmp) / "locust.log"
        cmd = locust_command(plan, prefix)
        log.debug("load.start", users=plan.users, duration_s=plan.duration_s,
                 target=plan.target.url, host_header=plan.target.host_header)
        with log_path.open("wb") as out:
            # LOCUST_* variables would change the plan behind the user's back; the working
            # directory is ours, so no locust.conf or pyproject.toml of the user's applies.
            env = {k: v for k, v in os.environ.items() if not k.startswith("LOCUST_")}
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=subprocess.STDOUT, start_new_session=True,
                                    preexec_fn=die_with_parent, cwd=tmp, env=env)
        if plan.web_ui:
            console.print(f"Locust's web UI: http://127.0.0.1:{plan.web_port}/", soft_wrap=True)
        samples: list[FleetSample] = []
        interrupted = False
        started = time.monotonic()
        deadline = started + plan.duration_s + 60
        try:
            with httpx.Client(timeout=0.5) as client, \
                    Live(console=console, refresh_per_second=2, transient=False) as live:
                while proc.poll() is None:
                    if time.monotonic() > deadline:
                        log.warning("load.locust_overran", pid=proc.pid)
                        _stop(proc)
                        break
                    sample = _fleet_sample(client, plan.fleet_url, time.monotonic() - started)
                    if sample is not None:
                        samples.append(sample)
                    live.update(_live_view(plan, read_live(prefix), samples,
                                           time.monotonic() - started))
                    _sleep_until_exit(proc, 1.0)
        except KeyboardInterrupt:
            interrupted = True
            console.print("Stopping Locust (Ctrl-C)...")
            _stop(proc)
        if not console.is_terminal:
            console.print()  # off a terminal, Live's last frame ends without a newline
        code = proc.poll()
        if code not in (0, None) and not interrupted and not Path(f"{prefix}.json").exists():
            tail = log_path.read_text(errors="replace")[-3000:]
            console.print(f"[red]Locust exited with {code}:[/]\n{escape(tail)}")
        log.debug("load.done", exit_code=code, interrupted=interrupted)
        return summarize(prefix, target=plan.target.url, note=plan.target.note,
                         users=plan.users, instances=samples, exit_code=code,
                         interrupted=interrupted)


def _sleep_until_exit(proc: subprocess.Popen[bytes], seconds: float) -> None:
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(seconds)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM (Locust writes its final files), then SIGKILL if it does not go."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(STOP_GRACE_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _fleet_sample(client: httpx.Client, url: str, t: float) -> FleetSample | None:
    if not url:
        return None
    try:
        answer = client.get(url)
        counts = in_service_counts(answer.json()) if answer.status_code == 200 else {}
    except (httpx.HTTPError, ValueError):
        return None  # no control plane (yet): the view says so
    return FleetSample(round(t, 1), counts) if counts else None


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def _live_view(plan: LoadPlan, figures: LiveFigures, samples: list[FleetSample],
               elapsed: float) -> Group:
    table = Table(title=escape(f"tierlake load -> {plan.target.url}" + (
                  f" (Host: {plan.target.host_header})" if plan.target.host_header else "")),
                  title_justify="left")
    for column in ("elapsed", "users", "req/s", "p50 ms", "p95 ms", "p99 ms", "requests",
                   "failures"):
        table.add_column(column, justify="right")
    table.add_row(f"{min(elapsed, plan.duration_s):.0f} / {plan.duration_s} s",
                  str(figures.users), f"{figures.rps:.1f}", _ms(figures.p50_ms),
                  _ms(figures.p95_ms), _ms(figures.p99_ms), str(figures.requests),
                  str(figures.failures))
    parts: list[Table | Text] = [table]
    if figures.failures_by_kind:
        parts.append(Text("failures: " + ", ".join(
            f"{kind} x{n}" for kind, n in figures.failures_by_kind.items()), style="red"))
    if samples:
        parts.append(Text("in service: " + ", ".join(
            f"{group} {n}" for group, n in samples[-1].in_service.items())))
    elif plan.fleet_url:
        parts.append(Text(f"no control plane answers at {plan.fleet_url}", style="dim"))
    return Group(*parts)


def print_summary(summary: LoadSummary, console: Console) -> None:
    """The summary a person reads after the run."""
    console.print(escape(f"Target: {summary.target} ({summary.note})"), soft_wrap=True)
    if summary.interrupted:
        console.print("Stopped early by Ctrl-C.")
    table = Table(title="Summary", title_justify="left")
    for column in ("users", "seconds", "requests", "req/s", "p50 ms", "p95 ms", "p99 ms",
                   "failures"):
        table.add_column(column, justify="right")
    table.add_row(str(summary.users), f"{summary.duration_s:.1f}", str(summary.requests),
                  f"{summary.rps:.1f}", _ms(summary.p50_ms), _ms(summary.p95_ms),
                  _ms(summary.p99_ms), str(summary.failures))
    console.print(table)
    pages = Table(title="Pages", title_justify="left")
    for column, justify in (("request", "left"), ("count", "right"), ("failures", "right"),
                            ("p50 ms", "right"), ("p95 ms", "right")):
        pages.add_column(column, justify=justify)  # type: ignore[arg-type]
    for name, row in summary.pages.items():
        pages.add_row(escape(name), str(row["requests"]), str(row["failures"]), _ms(row["p50_ms"]),
                      _ms(row["p95_ms"]))
    console.print(pages)
    if summary.failures_by_kind:
        console.print("Failures by kind: " + escape(", ".join(
            f"{kind}: {n}" for kind, n in summary.failures_by_kind.items())), soft_wrap=True)
    if summary.instances:
        console.print("Instances in service over time: " + _timeline(summary.instances),
                      soft_wrap=True)


def _timeline(samples: list[FleetSample]) -> str:
    """Each change of the fleet's size, e.g. ``0 s web 2 app 2; 14 s web 2 app 3``."""
    changes: list[str] = []
    last: dict[str, int] | None = None
    for sample in samples:
        if sample.in_service != last:
            changes.append(f"{sample.t:.0f} s " + " ".join(
                f"{group} {n}" for group, n in sample.in_service.items()))
            last = sample.in_service
    return "; ".join(changes)


def write_summary(summary: LoadSummary, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(summary.to_json(), indent=2) + "\n")
