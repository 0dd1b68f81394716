"""Helpers of the fleet tests: a tiny launch template, deadlines, process checks."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from tierlake.edge.lb.model import HealthCheckSettings, TargetGroupSettings
from tierlake.edge.lb.targets import TargetGroup
from tierlake.fleet.asg import AutoScalingGroup
from tierlake.fleet.instance import GroupInstance, LifecycleState
from tierlake.fleet.launch import LaunchTemplate

HTTP_SERVER = (sys.executable, "-m", "http.server", "{port}", "--bind", "127.0.0.1")


def template(name: str = "tiny", **kw: object) -> LaunchTemplate:
    return LaunchTemplate(name, HTTP_SERVER, **kw)  # type: ignore[arg-type]


async def until(predicate: Callable[[], bool], timeout: float = 20.0, what: str = "") -> None:
    """Wait for ``predicate`` (bounded; the message names what did not happen)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what or predicate}")
        await asyncio.sleep(0.05)


def in_service(group: AutoScalingGroup) -> list[GroupInstance]:
    return [i for i in group.instances if i.lifecycle_state == LifecycleState.IN_SERVICE]


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is gone for our purpose
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


async def answers(inst: GroupInstance, timeout: float = 20.0) -> bool:
    """Whether the instance serves on its port within ``timeout``. With the EC2 health check
    an instance is InService once its process runs, which may be before it listens."""
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient() as client:
        while True:
            try:
                r = await client.get(f"http://{inst.host}:{inst.port}/", timeout=2.0)
                return r.status_code == 200
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    return False
                await asyncio.sleep(0.05)


INSTANCE_SERVER = str(Path(__file__).with_name("instance_server.py"))


def server_template(version: str = "v1", name: str = "app") -> LaunchTemplate:
    """An instance whose /health can be failed (GET /fail) and whose pages say VERSION."""
    return LaunchTemplate(name, (sys.executable, INSTANCE_SERVER, "{port}"),
                          environment={"VERSION": version})


def fast_target_group(name: str = "app-tg", drain: float = 0.5) -> TargetGroup:
    """A target group that decides in fractions of a second."""
    return TargetGroup(name, TargetGroupSettings(
        health_check=HealthCheckSettings(path="/health", interval_seconds=0.2,
                                         timeout_seconds=0.15, healthy_threshold=2,
                                         unhealthy_threshold=2),
        deregistration_delay_seconds=drain), seed=7)


async def get(host: str, port: int, path: str = "/") -> tuple[int, str]:
    async with httpx.AsyncClient(trust_env=False) as client:
        r = await client.get(f"http://{host}:{port}{path}", timeout=2.0)
    return r.status_code, r.text
