"""`tierlake fleet`: the operator's commands, spoken to the running control plane over HTTP.

The control plane of `tierlake up` serves its API on ``fleet.control_port``; these commands
are its client (``aws autoscaling describe-auto-scaling-groups`` / ``set-desired-capacity``
/ ``start-instance-refresh`` and ``elbv2 describe-target-health`` in one place). They hold no
state of their own: every answer is the control plane's. Failures are one line on stderr
and exit code 1, never a traceback.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, NoReturn
from urllib.parse import quote

import httpx
import typer
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from tierlake.config import get_settings
from tierlake.fleet.view import CSRF_HEADER, FleetStatus, GroupView

fleet_app = typer.Typer(
    help="The control plane of `tierlake up`: Auto Scaling groups and their instances, "
    "target groups, alarms and scaling activities; scale, kill, refresh.",
    no_args_is_help=True,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)
UrlOpt = Annotated[str | None, typer.Option(
    "--url", help="The control plane's URL [default: http://HOST:FLEET__CONTROL_PORT from the "
    "settings, http://127.0.0.1:8002].")]
TIMEOUT_SECONDS = 10.0
ACTIVITIES_SHOWN = 10
_STYLES = {"ok": "green", "bad": "bold red", "warn": "yellow", "pending": "cyan",
           "muted": "dim"}
_TONES = {"InService": "ok", "Healthy": "ok", "healthy": "ok", "OK": "ok", "Successful": "ok",
          "Unhealthy": "bad", "unhealthy": "bad", "ALARM": "bad", "Failed": "bad",
          "draining": "warn", "INSUFFICIENT_DATA": "muted", "unused": "muted",
          "unavailable": "muted", "Cancelled": "muted"}

out = Console()
err = Console(stderr=True)


def _fail(message: str) -> NoReturn:
    err.print(f"[bold red]error:[/] {escape(message)}", soft_wrap=True)
    raise typer.Exit(1)


def _base_url(url: str | None) -> str:
    if url:
        return url.rstrip("/")
    try:
        settings = get_settings()
    except ValidationError as exc:
        _fail(f"configuration is invalid ({exc.error_count()} problem(s)); run `tierlake "
              "config show` to see which, or pass --url")
    host = settings.host if settings.host not in ("0.0.0.0", "::", "") else "127.0.0.1"
    host = f"[{host}]" if ":" in host else host
    return f"http://{host}:{settings.fleet.control_port}"


class _Control:
    """The control plane's API; every transport problem becomes one line naming the fix."""

    def __init__(self, url: str | None) -> None:
        self.url = _base_url(url)

    def _send(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            with httpx.Client(base_url=self.url, timeout=TIMEOUT_SECONDS) as client:
                response = client.request(method, path, **kwargs)
        except httpx.ConnectError:
            _fail(f"no control plane at {self.url}: start it with `tierlake up`")
        except httpx.TimeoutException:
            _fail(f"the control plane at {self.url} did not answer within "
                  f"{TIMEOUT_SECONDS:g} s; is `tierlake up` stuck? Its log says more")
        except httpx.HTTPError as exc:
            _fail(f"cannot talk to the control plane at {self.url}: {exc}")
        try:
            body = response.json()
        except ValueError:
            body = None
        if response.is_success and body is not None:
            return body
        if isinstance(body, dict) and isinstance(body.get("error"), dict):
            _fail(str(body["error"].get("message") or f"HTTP {response.status_code}"))
        _fail(f"{self.url} answered HTTP {response.status_code} to {method} {path}: is it "
              "tierlake's control plane? Check --url")

    def get(self, path: str) -> Any:
        return self._send("GET", path)

    def post(self, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        token = self.get("/api/csrf-token")["token"]
        answer: dict[str, Any] = self._send("POST", path, json=body,
                                            headers={CSRF_HEADER: token})
        return answer


def _styled(state: str) -> str:
    tone = _TONES.get(state) or ("warn" if state.startswith("Terminat") else "pending")
    return f"[{_STYLES[tone]}]{escape(state)}[/]"


def _age(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def _group_table(group: GroupView) -> Table:
    title = (f"{group.auto_scaling_group_name}: min {group.min_size}, desired "
             f"{group.desired_capacity}, max {group.max_size} (health check "
             f"{group.health_check_type})")
    table = Table(title=escape(title), title_justify="left")
    table.add_column("Instance", no_wrap=True)
    for column in ("State", "Health", "Port", "PID", "Age", "Protected", "Template"):
        table.add_column(column)
    for i in group.instances:
        template = f"v{i.launch_template.version}" if i.launch_template else "-"
        table.add_row(i.instance_id, _styled(i.lifecycle_state), _styled(i.health_status),
                      str(i.port or "-"), str(i.pid or "-"), _age(i.age_seconds),
                      "yes" if i.protected_from_scale_in else "", template)
    return table


def _print_status(status: FleetStatus) -> None:
    for group in status.auto_scaling_groups:
        out.print(_group_table(group))
        if (refresh := group.instance_refresh) is not None:
            out.print(f"  instance refresh {escape(refresh.instance_refresh_id)}: "
                      f"{_styled(refresh.status)} {refresh.percentage_complete}% complete, "
                      f"min healthy {refresh.min_healthy_percentage}%")
    if status.load_balancers:
        table = Table(title="Load balancers", title_justify="left")
        for column in ("Name", "Scheme", "DNS name", "Listeners", "Target groups"):
            table.add_column(column)
        for lb in status.load_balancers:
            table.add_row(lb.load_balancer_name, lb.scheme, lb.dns_name,
                          ", ".join(f"{x.protocol} {x.host}:{x.port}" for x in lb.listeners),
                          ", ".join(lb.target_group_names))
        out.print(table)
    table = Table(title="Target groups", title_justify="left")
    table.add_column("Target group")
    table.add_column("Target", no_wrap=True)
    for column in ("Port", "State", "Reason", "In flight"):
        table.add_column(column)
    for tg in status.target_groups:
        for t in tg.targets:
            health = t.target_health
            table.add_row(tg.target_group_name, t.target.id, str(t.target.port),
                          _styled(health.state.value),
                          escape(health.reason.value if health.reason else ""),
                          str(t.in_flight))
    out.print(table)
    table = Table(title="Alarms", title_justify="left")
    for column in ("Alarm", "State", "Metric", "Condition", "Reason"):
        table.add_column(column)
    for a in status.alarms:
        table.add_row(escape(a.alarm_name), _styled(a.state_value),
                      escape(f"{a.namespace} {a.metric_name}"),
                      escape(f"{a.statistic} {a.comparison_operator} {a.threshold:g}"),
                      escape(a.state_reason))
    out.print(table)
    table = Table(title=f"Last {ACTIVITIES_SHOWN} activities (newest first)",
                  title_justify="left")
    for column in ("Group", "Status", "Start", "Description", "Cause"):
        table.add_column(column)
    for act in status.activities[:ACTIVITIES_SHOWN]:
        table.add_row(act.auto_scaling_group_name, _styled(act.status_code),
                      act.start_time.strftime("%H:%M:%S"), escape(act.description),
                      escape(act.cause))
    out.print(table)
    if status.dns is not None:
        dns = status.dns
        out.print(f"DNS: zone {escape(dns.hosted_zone)} on {dns.host}:{dns.port}, "
                  f"{len(dns.records)} record set(s)")


@fleet_app.command()
def status(
    as_json: Annotated[bool, typer.Option("--json", help="Print the API's JSON instead.")] = False,
    url: UrlOpt = None,
) -> None:
    """Groups and instances (state, health, port, age), target groups with target health,
    alarms and the last scaling activities."""
    answer = _Control(url).get("/api/fleet")
    if as_json:
        typer.echo(json.dumps(answer, indent=2))  # plain, for jq and scripts
        return
    try:
        parsed = FleetStatus.model_validate(answer)
    except ValidationError as exc:
        _fail(f"the control plane's status is not what this tierlake expects ({exc.error_count()}"
              " field(s) differ); use --json to see it as it is")
    _print_status(parsed)


@fleet_app.command()
def scale(
    group: Annotated[str, typer.Argument(help="The Auto Scaling group, e.g. web or app.")],
    desired: Annotated[int, typer.Argument(min=0, help="The new desired capacity.")],
    url: UrlOpt = None,
) -> None:
    """Set a group's desired capacity (SetDesiredCapacity); it must lie within min..max."""
    answer = _Control(url).post(f"/api/groups/{quote(group, safe='')}/desired-capacity",
                                {"desired_capacity": desired})
    out.print(escape(f"Desired capacity of {group}: {answer['PreviousDesiredCapacity']} -> "
                     f"{answer['DesiredCapacity']}. {answer['Message']}"), soft_wrap=True)


@fleet_app.command()
def kill(
    instance: Annotated[str, typer.Argument(help="The instance id (i-...), as `status` shows.")],
    url: UrlOpt = None,
) -> None:
    """Chaos: SIGKILL one instance's process; its group replaces it."""
    answer = _Control(url).post(f"/api/instances/{quote(instance, safe='')}/kill")
    out.print(escape(answer["Message"]), soft_wrap=True)


@fleet_app.command()
def refresh(
    group: Annotated[str, typer.Argument(help="The Auto Scaling group to roll, e.g. app.")],
    min_healthy_percentage: Annotated[int, typer.Option(
        min=0, max=100, help="Share of the desired capacity kept in service and healthy "
        "while instances are replaced (AWS's MinHealthyPercentage).")] = 90,
    url: UrlOpt = None,
) -> None:
    """Replace every instance of a group, a batch at a time (StartInstanceRefresh)."""
    answer = _Control(url).post(f"/api/groups/{quote(group, safe='')}/instance-refresh",
                                {"min_healthy_percentage": min_healthy_percentage})
    out.print(escape(f"{answer['Message']} (id {answer['InstanceRefreshId']}; follow it with "
                     "`tierlake fleet status`)"), soft_wrap=True)
