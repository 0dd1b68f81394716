"""An Application Load Balancer: a name, a scheme, and listeners that route to target groups.

``LoadBalancer`` stands for ``CreateLoadBalancer`` (type ``application``) with its
``Scheme`` (``internet-facing`` or ``internal``: here only a label, both listen where
``host`` says) and its ``idle_timeout.timeout_seconds`` attribute (default 60 s). A
:class:`Listener` stands for ``CreateListener`` on protocol HTTP: a port, its rules and a
default action. Target groups are referenced by the actions; ``start`` starts each one
(health checks; ``manage_target_groups=False`` leaves that to the caller, e.g. for groups
shared by two balancers) and binds the listeners, ``stop`` stops accepting, lets requests in
flight finish for up to ``drain_seconds``, closes what is left and stops the groups it
started.

AWS documentation followed: "Application Load Balancers" (scheme, idle timeout) and
"Listeners for your Application Load Balancers".
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import socket
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

import structlog

from tierlake.edge.lb.model import RequestObserver
from tierlake.edge.lb.proxy import ClientConnection
from tierlake.edge.lb.request import ListenerContext
from tierlake.edge.lb.rules import Action, Rule, RuleSet
from tierlake.edge.lb.targets import TargetGroup
from tierlake.edge.lb.upstream import UpstreamPool

log = structlog.get_logger(__name__)

Scheme = Literal["internet-facing", "internal"]
MAX_IDLE_TIMEOUT = 4000.0  # ALB: 1-4000 s


@dataclass
class Listener:
    """An HTTP listener: ``port`` (0: the OS picks one; read it after ``start``), its rules
    and the action for requests no rule matches."""

    port: int
    rules: list[Rule]
    default_action: Action
    ruleset: RuleSet = field(init=False, repr=False)
    _server: asyncio.Server | None = field(default=None, init=False, repr=False)
    _ctx: ListenerContext | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ValueError(f"listener port {self.port}: use 1..65535, or 0 for a free port")
        self.ruleset = RuleSet(self.rules, self.default_action)


class LoadBalancer:
    """One ALB: its listeners, the connections they accept, and the target groups behind."""

    def __init__(self, name: str, *, scheme: Scheme = "internet-facing",
                 host: str = "127.0.0.1", listeners: list[Listener],
                 observers: Iterable[RequestObserver] = (), idle_timeout: float = 60.0,
                 manage_target_groups: bool = True) -> None:
        if not name or len(name) > 32 or not all(c.isalnum() or c == "-" for c in name) or (
                name.startswith("-") or name.endswith("-")):
            raise ValueError(f"load balancer name {name!r}: 1-32 letters, digits and hyphens, "
                             "not starting or ending with a hyphen (as ALB's)")
        if scheme not in ("internet-facing", "internal"):
            raise ValueError(f"scheme {scheme!r}: use 'internet-facing' or 'internal'")
        if not 0 < idle_timeout <= MAX_IDLE_TIMEOUT:
            raise ValueError(f"idle timeout {idle_timeout} s: ALB allows 1..4000 seconds")
        ports = [lst.port for lst in listeners if lst.port]
        if len(ports) != len(set(ports)):
            raise ValueError(f"load balancer {name!r}: two listeners on one port ({ports})")
        if not listeners:
            raise ValueError(f"load balancer {name!r}: give at least one listener")
        self.name = name
        self.scheme = scheme
        self.host = host
        self.listeners = listeners
        self.observers = list(observers)
        self.idle_timeout = idle_timeout
        self.pool = UpstreamPool()
        self.manage_target_groups = manage_target_groups
        self._started_groups: list[TargetGroup] = []

    @property
    def target_groups(self) -> list[TargetGroup]:
        seen: dict[int, TargetGroup] = {}
        for listener in self.listeners:
            for tg in listener.ruleset.target_groups():
                seen.setdefault(id(tg), tg)
        return list(seen.values())

    @property
    def connections(self) -> int:
        """Client connections open now."""
        return sum(len(lst._ctx.connections) for lst in self.listeners if lst._ctx)

    async def start(self) -> None:
        """Start the target groups' health checks and bind every listener."""
        if self.manage_target_groups:
            for tg in self.target_groups:
                await tg.start()
                self._started_groups.append(tg)
        loop = asyncio.get_running_loop()
        try:
            for listener in self.listeners:
                ctx = ListenerContext(self.name, listener.ruleset, self.observers,
                                      self.idle_timeout, self.pool)
                sock = socket.socket(socket.AF_INET6 if ":" in self.host else socket.AF_INET)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    sock.bind((self.host, listener.port))
                except OSError as exc:
                    sock.close()
                    raise OSError(exc.errno, f"load balancer {self.name!r}: cannot listen on "
                                  f"{self.host}:{listener.port} ({exc.strerror}); choose "
                                  "another port or stop what uses it") from None
                listener._server = await loop.create_server(
                    functools.partial(ClientConnection, ctx), sock=sock, backlog=1024)
                listener.port = ctx.port = sock.getsockname()[1]
                listener._ctx = ctx
                ctx.start_ticker()
                log.info("lb.listener_started", lb=self.name, scheme=self.scheme,
                         address=f"{self.host}:{listener.port}")
        except BaseException:
            await self.stop(0)
            raise

    async def stop(self, drain_seconds: float = 0.0) -> None:
        """Stop accepting; requests in flight may finish for ``drain_seconds``; then close
        every connection and stop the target groups."""
        contexts = [lst._ctx for lst in self.listeners if lst._ctx is not None]
        for listener in self.listeners:
            if listener._server is not None:
                listener._server.close()
        for ctx in contexts:
            ctx.draining = True
            for conn in list(ctx.connections):
                conn.drain_and_close()
        if drain_seconds > 0:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(drain_seconds):
                    for ctx in contexts:
                        if ctx.connections:
                            await ctx.on_empty.wait()
        for ctx in contexts:
            for conn in list(ctx.connections):
                conn.abort()
        for listener in self.listeners:
            if listener._server is not None:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(1.0):
                        await listener._server.wait_closed()
                listener._server = None
            if listener._ctx is not None:
                listener._ctx.stop_ticker()
            listener._ctx = None
        self.pool.close()
        for tg in self._started_groups:
            await tg.stop()
        self._started_groups.clear()
        log.info("lb.stopped", lb=self.name)
