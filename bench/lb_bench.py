"""Load balancer: tierlake's ``LoadBalancer`` against HAProxy and the direct path, same run.

Backends (the same for every path): a bench store on SQLite (``benchdata.build_store``: 240
products in 12 categories), two ``tierlake serve web`` and two ``tierlake serve app``
instances (the production command, each its own process on a free port). Three paths:

* direct: wrk to ONE backend (web 1 / app 1);
* HAProxy (Debian's 2.6): a config generated into a temporary directory, ``nbthread 1``
  (tierlake's balancer is one event loop: one core each), two frontends (web, app),
  ``balance roundrobin``, ``option http-keep-alive``, health checks ``GET /health`` every
  1 s (fall 2, rise 2: the ``fast`` profile's numbers);
* tierlake: ``LoadBalancer`` with two listeners forwarding to two ``TargetGroup`` s (profile
  ``fast``, ``round_robin`` like HAProxy, health path ``/health``), on uvloop, in a child
  process (``python bench/lb_bench.py --serve-tierlake ...``), no access-log observer.

Measured, for a static file of the web tier (``/static/style.css``) and the catalogue API
(``GET /api/v1/products?page=P&page_size=24``, P rotating; ``bench/lua/lb_get.lua``):

1. peak: wrk unpaced (``-c`` connections) for ``--duration`` s after a warm-up: req/s and
   p50/p99, and the CPU the balancer process used per request;
2. at half of peak: the same requests offered at 0.5 x the lowest peak of the three paths
   (so no path is saturated), as many rounds, medians of p50 and p99, paced by
   ``lb_get.lua``'s ``delay()`` (exponential pauses per connection: Poisson arrivals; wrk
   has no rate limit of its own and wrk2 is not packaged here); the latency a balancer
   adds is its p50/p99 minus the direct path's;
3. a killed target: for profiles ``fast`` and ``alb``, with passive detection off (active
   health checks only) and on, a third app instance is registered next to app 1, traffic
   flows (about 20 req/s), the instance is SIGKILLed and the time until the target group
   takes it out of rotation (its state leaves ``healthy``) is measured, with the requests
   that failed meanwhile. The four cases run at once; the ``alb`` ones use ALB's interval
   (30 s), timeout (5 s) and unhealthy threshold (2), with the healthy threshold lowered
   from 5 to 2 (ALB's minimum) only to get the target healthy in one minute, not 2.5.

Prints a table with ratios (tierlake / HAProxy req/s; latency added over direct) and writes
``bench/results/lb.json``. Only 127.0.0.1 is contacted; every process dies with the bench.

    .venv/bin/python bench/lb_bench.py              # about 4 minutes (the alb cases ~2)
    .venv/bin/python bench/lb_bench.py --quick --no-kill   # smoke run
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack, contextmanager, suppress
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from benchdata import build_store  # noqa: E402
from http_bench import _die_with_parent, free_port, http, machine, run_wrk  # noqa: E402

HOST = "127.0.0.1"
VENV_BIN = Path(sys.executable).parent
PATHS = ("direct", "haproxy", "tierlake")
AIMS = {"static": 0.30, "catalogue": 0.80}  # tierlake / HAProxy req/s (issue 9)
ENDPOINTS = {  # name -> (tier, path, pages)
    "static": ("web", "/static/style.css", 0),
    "catalogue": ("app", "/api/v1/products?page_size=24", 10),
}


# -- processes ----------------------------------------------------------------------------------


@contextmanager
def _process(name: str, cmd: list[str], env: dict[str, str], logdir: Path, ready_url: str,
             timeout: float = 60.0):  # type: ignore[no-untyped-def]
    log = logdir / f"{name}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, env=env, preexec_fn=_die_with_parent)
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited {proc.returncode} while starting:\n"
                                   f"{log.read_text(errors='replace')[-2000:]}")
            with suppress(OSError):
                if http("GET", ready_url, timeout=2)[0] == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name} not ready after {timeout:.0f} s; see {log}")
            time.sleep(0.1)
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT if name != "haproxy" else signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _tierlake_cmd() -> list[str]:
    script = VENV_BIN / "tierlake"
    return [str(script)] if script.exists() else [sys.executable, "-m", "tierlake"]


def _tier_env(db_url: str, workdir: Path, app_url: str = "") -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TIERLAKE_")}
    env.update(TIERLAKE_DATABASE_URL=db_url, TIERLAKE_DATA_DIR=str(workdir),
               TIERLAKE_CONFIG=str(workdir / "absent.toml"), TIERLAKE_LOG_LEVEL="WARNING")
    if app_url:
        env["TIERLAKE_APP_URL"] = app_url
    return env


def start_tier(stack: ExitStack, tier: str, n: int, db_url: str, workdir: Path, logdir: Path,
               app_url: str = "") -> tuple[int, subprocess.Popen[bytes]]:
    port = free_port()
    proc = stack.enter_context(_process(
        f"{tier}{n}-{port}", [*_tierlake_cmd(), "serve", tier, "--host", HOST, "--port",
                              str(port)],
        _tier_env(db_url, workdir, app_url), logdir, f"http://{HOST}:{port}/health"))
    return port, proc


HAPROXY_CFG = """\
global
    maxconn 4096
    nbthread 1

defaults
    mode http
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    option http-keep-alive
    balance roundrobin
    default-server check inter 1s fall 2 rise 2

frontend web
    bind {host}:{web_port}
    default_backend webs

frontend app
    bind {host}:{app_port}
    default_backend apps

backend webs
    option httpchk GET /health
{web_servers}

backend apps
    option httpchk GET /health
{app_servers}
"""


def haproxy_config(web_port: int, app_port: int, webs: list[int], apps: list[int]) -> str:
    def servers(prefix: str, ports: list[int]) -> str:
        return "\n".join(f"    server {prefix}{i + 1} {HOST}:{p}" for i, p in enumerate(ports))

    return HAPROXY_CFG.format(host=HOST, web_port=web_port, app_port=app_port,
                              web_servers=servers("web", webs), app_servers=servers("app", apps))


def _wait_all_in_rotation(url: str, n: int, timeout: float = 30.0) -> None:
    """A balancer's health checks take a moment: wait until ``n`` answers in a row are 200."""
    deadline = time.monotonic() + timeout
    good = 0
    while good < n:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{url} did not answer 200 {n} times in a row in {timeout:.0f} s")
        try:
            good = good + 1 if http("GET", url, timeout=2)[0] == 200 else 0
        except OSError:
            good = 0
        time.sleep(0.05)


# -- tierlake's balancer, in a child process ----------------------------------------------------


def _group(name: str, ports: list[int], *, profile: str = "fast", passive: bool = True,
           healthy_threshold: int | None = None) -> Any:
    from tierlake.edge.lb.model import PROFILES
    from tierlake.edge.lb.targets import TargetGroup

    base = PROFILES[profile]
    check = dataclasses.replace(base.health_check, path="/health", **(
        {"healthy_threshold": healthy_threshold} if healthy_threshold else {}))
    settings = dataclasses.replace(base, health_check=check, algorithm="round_robin",
                                   passive_detection=passive)
    group = TargetGroup(name, settings, seed=1)
    for i, port in enumerate(ports):
        group.register(f"{name}-{i + 1}", HOST, port)
    return group


def serve_tierlake(args: argparse.Namespace) -> int:
    """``--serve-tierlake``: run the balancer until SIGTERM/SIGINT."""
    from tierlake.edge.lb.balancer import Listener, LoadBalancer
    from tierlake.edge.lb.rules import Forward

    webs = _group("webs", [int(p) for p in args.web_targets.split(",")])
    apps = _group("apps", [int(p) for p in args.app_targets.split(",")])
    lb = LoadBalancer("bench", scheme="internet-facing", host=HOST, listeners=[
        Listener(args.web_port, [], Forward.to(webs)),
        Listener(args.app_port, [], Forward.to(apps))])

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await lb.start()
        print("listening", flush=True)
        await stop.wait()
        await lb.stop(1.0)

    try:
        import uvloop

        uvloop.run(main())
    except ImportError:
        asyncio.run(main())
    return 0


# -- measurements -------------------------------------------------------------------------------


def _wrk(url: str, endpoint: str, seconds: float, connections: int, *, mean_delay_ms: float = 0,
         pids: dict[str, int] | None = None) -> dict[str, Any]:
    _, path, pages = ENDPOINTS[endpoint]
    res = run_wrk(url, "lb_get.lua", [path, str(pages), f"{mean_delay_ms:.3f}"], seconds,
                  threads=1, connections=connections, pids=pids)
    return {"rps": round(res["rps"], 1), "p50_ms": res["latency_us"]["p50"] / 1000,
            "p99_ms": res["latency_us"]["p99"] / 1000, "requests": res["requests"],
            "non2xx": res["non2xx"], "socket_errors": sum(
                res["errors"][k] for k in ("connect", "read", "write", "timeout")),
            "cpu_ms_per_request": res["cpu_ms_per_request"],
            "loadavg_1m_at_start": res["loadavg_1m_at_start"]}


def bench_paths(urls: dict[str, dict[str, str]], lb_pids: dict[str, int], o: argparse.Namespace,
                say) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    out: dict[str, Any] = {}
    for endpoint, (tier, _, _) in ENDPOINTS.items():
        runs: dict[str, list[dict[str, Any]]] = {path: [] for path in PATHS}
        for rnd in range(o.rounds):
            for path in PATHS if rnd % 2 == 0 else PATHS[::-1]:
                url = urls[path][tier]
                pids = {"balancer": lb_pids[path]} if path in lb_pids else None
                if rnd == 0 and o.warmup > 0:
                    _wrk(url, endpoint, o.warmup, o.connections)
                runs[path].append(_wrk(url, endpoint, o.duration, o.connections, pids=pids))
                p = runs[path][-1]
                say(f"{endpoint:9s} peak     {path:8s} {p['rps']:8.1f} req/s  p50 "
                    f"{p['p50_ms']:6.2f} ms  p99 {p['p99_ms']:6.2f} ms  non-2xx {p['non2xx']}  "
                    f"balancer CPU/req {p['cpu_ms_per_request'].get('balancer', '-')} ms  "
                    f"load {p['loadavg_1m_at_start']}")
        # the median round by req/s stands for the path (all rounds are in the JSON)
        peaks = {path: sorted(r, key=lambda x: x["rps"])[len(r) // 2] | {"rounds": r}
                 for path, r in runs.items()}
        rate = 0.5 * min(p["rps"] for p in peaks.values())
        delay_ms = 1000.0 * o.paced_connections / rate
        paced_runs: dict[str, list[dict[str, Any]]] = {path: [] for path in PATHS}
        for rnd in range(o.rounds):
            for path in PATHS if rnd % 2 == 0 else PATHS[::-1]:
                paced_runs[path].append(_wrk(urls[path][tier], endpoint, o.duration,
                                             o.paced_connections, mean_delay_ms=delay_ms))
                p = paced_runs[path][-1]
                say(f"{endpoint:9s} at {rate:6.0f}/s {path:8s} {p['rps']:8.1f} req/s  p50 "
                    f"{p['p50_ms']:6.2f} ms  p99 {p['p99_ms']:6.2f} ms  non-2xx {p['non2xx']}")
        # medians of each figure over the rounds (other work on the machine moves p99 most)
        paced = {path: {"rps": statistics.median(r["rps"] for r in runs_),
                        "p50_ms": statistics.median(r["p50_ms"] for r in runs_),
                        "p99_ms": statistics.median(r["p99_ms"] for r in runs_),
                        "non2xx": sum(r["non2xx"] for r in runs_), "rounds": runs_}
                 for path, runs_ in paced_runs.items()}
        out[endpoint] = {"peak": peaks, "half_load": {"offered_rps": round(rate, 1),
                                                      "runs": paced}}
    return out


def _in_service(group: Any, target_id: str) -> bool:
    from tierlake.edge.lb.model import TargetState

    return bool(group.health(target_id)[0] == TargetState.HEALTHY)


async def _kill_case(profile: str, passive: bool, survivor: int, victim_port: int,
                     victim: subprocess.Popen[bytes], settle_timeout: float) -> dict[str, Any]:
    import httpx

    from tierlake.edge.lb.balancer import Listener, LoadBalancer
    from tierlake.edge.lb.rules import Forward

    group = _group(f"kill-{profile}-{'passive' if passive else 'active'}", [survivor],
                   profile=profile, passive=passive,
                   healthy_threshold=2 if profile == "alb" else None)
    victim_id = f"{group.name}-victim"
    group.register(victim_id, HOST, victim_port)
    lb = LoadBalancer(group.name[:32], scheme="internal", host=HOST,
                      listeners=[Listener(0, [], Forward.to(group))])
    await lb.start()
    result: dict[str, Any] = {"profile": profile, "passive_detection": passive}
    try:
        deadline = time.monotonic() + settle_timeout
        while not all(_in_service(group, t.id) for t in group.targets):
            if time.monotonic() > deadline:
                result["error"] = f"targets not healthy after {settle_timeout:.0f} s"
                return result
            await asyncio.sleep(0.05)
        url = f"http://{HOST}:{lb.listeners[0].port}/api/v1/products?page_size=1"
        failed = sent = 0
        stop = asyncio.Event()

        async def traffic() -> None:
            nonlocal failed, sent
            async with httpx.AsyncClient(timeout=10) as client:
                while not stop.is_set():
                    sent += 1
                    try:
                        if (await client.get(url)).status_code != 200:
                            failed += 1
                    except httpx.HTTPError:
                        failed += 1
                    await asyncio.sleep(0.05)

        driver = asyncio.create_task(traffic())
        await asyncio.sleep(1.0)
        victim.kill()  # SIGKILL
        killed = time.monotonic()
        while _in_service(group, victim_id):
            if time.monotonic() - killed > 120:
                break
            await asyncio.sleep(0.005)
        out_after = time.monotonic() - killed
        await asyncio.sleep(0.5)
        stop.set()
        await driver
        state, reason, description = group.health(victim_id)
        result.update(seconds_in_rotation_after_kill=round(out_after, 3), state=str(state),
                      reason=str(reason), description=description, requests=sent,
                      failed_requests=failed)
        return result
    finally:
        await lb.stop(0)


def bench_kill(stack: ExitStack, survivor: int, db_url: str, workdir: Path, logdir: Path,
               profiles: list[str], say) -> list[dict[str, Any]]:  # type: ignore[no-untyped-def]
    cases = [(profile, passive) for profile in profiles for passive in (False, True)]
    victims = [start_tier(stack, "app", 10 + i, db_url, workdir, logdir)
               for i in range(len(cases))]

    async def run_all() -> list[dict[str, Any]]:
        return list(await asyncio.gather(*(
            _kill_case(profile, passive, survivor, port, proc, settle_timeout=90)
            for (profile, passive), (port, proc) in zip(cases, victims, strict=True))))

    results = asyncio.run(run_all())
    for r in results:
        say(f"killed target, profile {r['profile']:4s} "
            f"{'passive+active' if r['passive_detection'] else 'active only   '}: "
            + (r["error"] if "error" in r else
               f"in rotation {r['seconds_in_rotation_after_kill']:.3f} s after SIGKILL, then "
               f"{r['state']} ({r['reason']}); failed requests {r['failed_requests']} of "
               f"{r['requests']}"))
    return results


# -- report -------------------------------------------------------------------------------------


def render(results: dict[str, Any]) -> str:
    lines = ["| endpoint | path | peak req/s | peak p50 / p99 ms | balancer CPU ms/req | "
             "at half load p50 / p99 ms | added over direct p50 / p99 ms |", "|" + "---|" * 7]
    for endpoint, e in results.get("paths", {}).items():
        direct = e["half_load"]["runs"]["direct"]
        for path in PATHS:
            peak, paced = e["peak"][path], e["half_load"]["runs"][path]
            cpu = peak["cpu_ms_per_request"].get("balancer")
            added = ("-" if path == "direct" else
                     f"{paced['p50_ms'] - direct['p50_ms']:+.2f} / "
                     f"{paced['p99_ms'] - direct['p99_ms']:+.2f}")
            lines.append(f"| {endpoint} | {path} | {peak['rps']:.0f} | {peak['p50_ms']:.2f} / "
                         f"{peak['p99_ms']:.2f} | {'-' if cpu is None else f'{cpu:.3f}'} | "
                         f"{paced['p50_ms']:.2f} / {paced['p99_ms']:.2f} | {added} |")
    lines.append("")
    for endpoint, e in results.get("paths", {}).items():
        tl, hp = e["peak"]["tierlake"]["rps"], e["peak"]["haproxy"]["rps"]
        runs = e["half_load"]["runs"]
        p50 = runs["tierlake"]["p50_ms"] - runs["direct"]["p50_ms"]
        p99 = runs["tierlake"]["p99_ms"] - runs["direct"]["p99_ms"]
        aim = AIMS[endpoint]
        lines.append(
            f"{endpoint}: tierlake / HAProxy req/s = {tl / hp:.2f} (aim >= {aim:.2f}: "
            f"{'met' if tl / hp >= aim else 'missed'}); at half load "
            f"({e['half_load']['offered_rps']:.0f} req/s offered) tierlake adds {p50:+.2f} ms "
            f"p50 (aim <= +1: {'met' if p50 <= 1 else 'missed'}) and {p99:+.2f} ms p99 "
            f"(aim <= +5: {'met' if p99 <= 5 else 'missed'}) over direct")
    for r in results.get("killed_target", []):
        if "error" not in r:
            lines.append(
                f"killed target, {r['profile']} "
                f"{'with passive detection' if r['passive_detection'] else 'active checks only'}"
                f": {r['seconds_in_rotation_after_kill']:.2f} s in rotation, "
                f"{r['failed_requests']} of {r['requests']} requests failed")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--duration", type=float, default=None,
                   help="seconds per measurement [default: 8; 3 with --quick]")
    p.add_argument("--warmup", type=float, default=None,
                   help="unrecorded seconds before each peak run [default: 2; 1 with --quick]")
    p.add_argument("--rounds", type=int, default=None,
                   help="peak runs per path and endpoint, order alternating; the median "
                        "counts [%(default)s; 1 with --quick]")
    p.add_argument("--connections", type=int, default=32, help="wrk -c at peak [%(default)s]")
    p.add_argument("--paced-connections", type=int, default=16,
                   help="wrk -c at half load [%(default)s]")
    p.add_argument("--no-kill", dest="kill", action="store_false",
                   help="skip the killed-target measurement (the alb cases take ~2 minutes)")
    p.add_argument("--kill-profiles", default="fast,alb",
                   help="health-check profiles of the killed-target cases [%(default)s]")
    p.add_argument("--no-paths", dest="paths", action="store_false",
                   help="skip the throughput and latency runs")
    p.add_argument("--quick", action="store_true", help="short runs (a smoke test)")
    p.add_argument("--out", type=Path, default=BENCH / "results" / "lb.json")
    p.add_argument("--serve-tierlake", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--web-port", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--app-port", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--web-targets", default="", help=argparse.SUPPRESS)
    p.add_argument("--app-targets", default="", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.duration is None:
        args.duration = 3.0 if args.quick else 8.0
    if args.warmup is None:
        args.warmup = 1.0 if args.quick else 2.0
    if args.rounds is None:
        args.rounds = 1 if args.quick else 3
    if args.rounds < 1:
        p.error("--rounds is at least 1")
    if not 0 < args.duration <= 600 or not 0 <= args.warmup <= 60:
        p.error("--duration must be in (0, 600] and --warmup in [0, 60]")
    args.kill_profiles = [k.strip() for k in args.kill_profiles.split(",") if k.strip()]
    if not set(args.kill_profiles) <= {"fast", "alb"}:
        p.error("--kill-profiles takes fast and/or alb")
    if args.connections < 1 or args.paced_connections < 1:
        p.error("--connections and --paced-connections are at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.serve_tierlake:
        return serve_tierlake(args)
    for tool in ("wrk", "haproxy"):
        if shutil.which(tool) is None and not Path(f"/usr/sbin/{tool}").exists():
            print(f"error: {tool} not found (apt-get install -y {tool})", file=sys.stderr)
            return 2
    haproxy = shutil.which("haproxy") or "/usr/sbin/haproxy"
    started = time.monotonic()

    def say(msg: str) -> None:
        print(f"{time.monotonic() - started:6.1f}s {msg}", flush=True)

    import logging

    import structlog

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    results: dict[str, Any] = {
        "command": "bench/lb_bench.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "machine": machine(),
        "options": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()
                    if not k.startswith(("serve", "web_", "app_"))},
    }
    hv = subprocess.run([haproxy, "-v"], capture_output=True, text=True, check=False)
    results["machine"]["versions"]["haproxy"] = hv.stdout.splitlines()[0] if hv.stdout else None
    say(f"machine: {results['machine']['nproc']} cores, load average "
        f"{results['machine']['loadavg_at_start'][0]:.2f} (shared with other work); "
        f"{results['machine']['versions']['haproxy']}")
    logdir = args.out.parent / "logs-lb"
    shutil.rmtree(logdir, ignore_errors=True)
    logdir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="tierlake-lbbench-") as tmp, ExitStack() as stack:
        workdir = Path(tmp)
        db_url = f"sqlite:///{workdir / 'bench.db'}"
        build_store(db_url)
        apps = [start_tier(stack, "app", i + 1, db_url, workdir, logdir)[0] for i in range(2)]
        app_url = f"http://{HOST}:{apps[0]}"
        webs = [start_tier(stack, "web", i + 1, db_url, workdir, logdir, app_url)[0]
                for i in range(2)]
        say(f"backends: web {webs}, app {apps} (tierlake serve; SQLite bench store)")
        ports = {p: (free_port(), free_port()) for p in ("haproxy", "tierlake")}
        cfg = workdir / "haproxy.cfg"
        cfg.write_text(haproxy_config(*ports["haproxy"], webs, apps))
        hp = stack.enter_context(_process(
            "haproxy", [haproxy, "-f", str(cfg), "-db"], dict(os.environ), logdir,
            f"http://{HOST}:{ports['haproxy'][0]}/health"))
        tl = stack.enter_context(_process(
            "tierlake-lb", [sys.executable, str(Path(__file__).resolve()), "--serve-tierlake",
                            "--web-port", str(ports["tierlake"][0]),
                            "--app-port", str(ports["tierlake"][1]),
                            "--web-targets", ",".join(map(str, webs)),
                            "--app-targets", ",".join(map(str, apps))],
            {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}, logdir,
            f"http://{HOST}:{ports['tierlake'][0]}/health"))
        urls = {"direct": {"web": f"http://{HOST}:{webs[0]}", "app": f"http://{HOST}:{apps[0]}"}}
        for name, (wp, ap) in ports.items():
            urls[name] = {"web": f"http://{HOST}:{wp}", "app": f"http://{HOST}:{ap}"}
            for tier in ("web", "app"):
                _wait_all_in_rotation(urls[name][tier] + "/health", 6)
        if args.paths:
            results["paths"] = bench_paths(urls, {"haproxy": hp.pid, "tierlake": tl.pid}, args,
                                           say)
        if args.kill:
            results["killed_target"] = bench_kill(stack, apps[0], db_url, workdir, logdir,
                                                  args.kill_profiles, say)
    results["machine"]["loadavg_at_end"] = os.getloadavg()
    results["elapsed_s"] = round(time.monotonic() - started, 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print()
    print(render(results))
    print(f"Results: {args.out}  ({results['elapsed_s']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
