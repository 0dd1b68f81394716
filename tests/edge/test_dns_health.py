"""Route 53 health checks against tiny real HTTP and TCP endpoints, and the records they
keep in or out of the answers, asked with dnspython over UDP and TCP."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import dns.asyncquery
import dns.message
import pytest

from tierlake.edge.dns import (
    Change,
    DnsServer,
    HealthCheck,
    HealthCheckConfig,
    HealthChecks,
    HostedZone,
    InvalidInputError,
    NoSuchHealthCheckError,
    ResourceRecordSet,
)

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]
ZONE = "tierlake.test"
HOST = "127.0.0.1"
DEADLINE = 20.0  # seconds a state change may take on a loaded machine; never asserted


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@dataclass
class Endpoint:
    """A tiny HTTP server whose status and body the test sets; ``hang`` (or more requests
    than ``hang_after``) makes it hold requests unanswered until ``release`` is set."""

    status: int = 200
    body: bytes = b"ok"
    hang: bool = False
    hang_after: int | None = None
    release: asyncio.Event = field(default_factory=asyncio.Event)
    requests: list[bytes] = field(default_factory=list)
    port: int = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            self.requests.append(head)
            if self.hang or (self.hang_after is not None
                             and len(self.requests) > self.hang_after):
                await self.release.wait()
            writer.write(b"HTTP/1.1 %d X\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s"
                         % (self.status, len(self.body), self.body))
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@pytest.fixture
async def endpoints() -> AsyncIterator[Callable[[], Awaitable[Endpoint]]]:
    servers: list[asyncio.Server] = []

    async def make() -> Endpoint:
        endpoint = Endpoint()
        server = await asyncio.start_server(endpoint.handle, HOST, 0)
        servers.append(server)
        endpoint.port = server.sockets[0].getsockname()[1]
        return endpoint

    yield make
    for server in servers:
        server.close()


@pytest.fixture
async def checks() -> AsyncIterator[HealthChecks]:
    registry = HealthChecks()
    await registry.start()
    try:
        yield registry
    finally:
        await registry.stop()


@pytest.fixture
async def server(checks: HealthChecks) -> AsyncIterator[DnsServer]:
    srv = DnsServer(HOST, 0, HostedZone(ZONE, health_checks=checks, seed=7))
    await srv.start()
    try:
        yield srv
    finally:
        await srv.stop()


def closed_port() -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def http_check(port: int, **kw: object) -> HealthCheckConfig:
    settings: dict[str, object] = {"request_interval": 0.1, "failure_threshold": 2, **kw}
    return HealthCheckConfig(HOST, port, **settings)  # type: ignore[arg-type]


async def ask(srv: DnsServer, name: str, *, tcp: bool = False) -> list[str]:
    query = dns.message.make_query(name, "A")
    send = dns.asyncquery.tcp if tcp else dns.asyncquery.udp
    response = await send(query, HOST, port=srv.port, timeout=5)
    return sorted(rd.to_text() for rrset in response.answer for rd in rrset)


async def until(condition: Callable[[], Awaitable[bool]] | Callable[[], bool],
                what: str) -> None:
    deadline = asyncio.get_running_loop().time() + DEADLINE
    while True:
        result = condition()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"not reached within {DEADLINE} s: {what}")
        await asyncio.sleep(0.05)


async def test_failover_switches_when_the_primary_check_fails_and_back(
        server: DnsServer, checks: HealthChecks,
        endpoints: Callable[[], Awaitable[Endpoint]]) -> None:
    endpoint = await endpoints()
    check = checks.create_health_check(http_check(endpoint.port, resource_path="/health"))
    server.zone.change([
        Change("CREATE", ResourceRecordSet(f"shop.{ZONE}", "A", 1, ("127.0.0.1",),
                                           set_identifier="primary", failover="PRIMARY",
                                           health_check_id=check.id)),
        Change("CREATE", ResourceRecordSet(f"shop.{ZONE}", "A", 1, ("127.0.0.9",),
                                           set_identifier="secondary", failover="SECONDARY")),
    ])
    await until(lambda: check.checks_done >= 2, "the first checks")
    assert check.status == "Healthy"
    for tcp in (False, True):
        assert await ask(server, f"shop.{ZONE}", tcp=tcp) == ["127.0.0.1"]
    assert endpoint.requests[0].startswith(b"GET /health HTTP/1.1\r\n")
    assert b"Amazon Route 53 Health Check Service" in endpoint.requests[0]

    endpoint.status = 500
    await until(lambda: check.status == "Unhealthy", "the primary's check fails")
    for tcp in (False, True):
        assert await ask(server, f"shop.{ZONE}", tcp=tcp) == ["127.0.0.9"]
    assert check.reason == "Failure: HTTP Status Code 500, Internal Server Error"
    health = {r.get("SetIdentifier"): r["Healthy"] for r in server.zone.describe()
              if r["Name"] == f"shop.{ZONE}."}
    assert health == {"primary": False, "secondary": True}
    report = check.status_report()
    assert report["Status"] == "Unhealthy"
    observations = report["HealthCheckObservations"]
    assert isinstance(observations, list)
    assert observations[0]["StatusReport"]["Status"].startswith("Failure: HTTP Status Code 500")

    endpoint.status = 302  # 3xx counts as healthy, as in Route 53
    await until(lambda: check.status == "Healthy", "the primary's check passes again")
    for tcp in (False, True):
        assert await ask(server, f"shop.{ZONE}", tcp=tcp) == ["127.0.0.1"]


async def test_status_changes_only_after_failure_threshold_checks(
        checks: HealthChecks, endpoints: Callable[[], Awaitable[Endpoint]]) -> None:
    endpoint = await endpoints()
    endpoint.status, endpoint.hang_after = 503, 2  # two failures, then the third is held
    check = checks.create_health_check(http_check(endpoint.port, failure_threshold=3,
                                                  timeout_seconds=50.0))
    await until(lambda: len(endpoint.requests) >= 3, "the third check is waiting")
    assert check.checks_done == 2
    assert check.status == "Healthy"  # one failure short of the threshold
    assert check.reason == "Failure: HTTP Status Code 503, Service Unavailable"
    endpoint.release.set()
    await until(lambda: check.checks_done >= 3, "three checks")
    assert check.status == "Unhealthy"
    assert all(not o.success for o in check.observations)


@pytest.mark.parametrize("tcp", [False, True], ids=["udp", "tcp"])
async def test_multivalue_leaves_out_unhealthy_records(
        server: DnsServer, checks: HealthChecks,
        endpoints: Callable[[], Awaitable[Endpoint]], tcp: bool) -> None:
    good = await endpoints()
    sick = await endpoints()
    sick.status = 503
    dead = checks.create_health_check(http_check(closed_port()))
    ill = checks.create_health_check(http_check(sick.port))
    fine = checks.create_health_check(http_check(good.port))
    server.zone.change([
        Change("CREATE", ResourceRecordSet(f"pool.{ZONE}", "A", 1, (address,),
                                           set_identifier=address, multi_value_answer=True,
                                           health_check_id=check.id))
        for address, check in (("127.0.0.1", fine), ("127.0.0.2", ill), ("127.0.0.3", dead))
    ] + [Change("CREATE", ResourceRecordSet(f"pool.{ZONE}", "A", 1, ("127.0.0.4",),
                                            set_identifier="unchecked",
                                            multi_value_answer=True))])
    await until(lambda: dead.status == ill.status == "Unhealthy", "two checks fail")
    assert dead.reason.startswith("Failure: Connection refused")
    assert await ask(server, f"pool.{ZONE}", tcp=tcp) == ["127.0.0.1", "127.0.0.4"]

    good.status = 500  # every checked record unhealthy: the unchecked one stays healthy
    await until(lambda: fine.status == "Unhealthy", "the last check fails")
    assert await ask(server, f"pool.{ZONE}", tcp=tcp) == ["127.0.0.4"]


async def test_all_unhealthy_answers_as_if_all_were_healthy(
        server: DnsServer, checks: HealthChecks) -> None:
    """Route 53's rule when every record of a group is unhealthy: consider all healthy."""
    port = closed_port()
    first = checks.create_health_check(http_check(port))
    second = checks.create_health_check(HealthCheckConfig(HOST, port, "TCP",
                                                          request_interval=0.1,
                                                          failure_threshold=1))
    server.zone.change([
        Change("CREATE", ResourceRecordSet(f"pool.{ZONE}", "A", 1, (address,),
                                           set_identifier=address, multi_value_answer=True,
                                           health_check_id=check.id))
        for address, check in (("127.0.0.1", first), ("127.0.0.2", second))])
    server.zone.change([
        Change("CREATE", ResourceRecordSet(f"fo.{ZONE}", "A", 1, (address,),
                                           set_identifier=role, failover=role,
                                           health_check_id=check.id))
        for address, role, check in (("127.0.0.1", "PRIMARY", first),
                                     ("127.0.0.2", "SECONDARY", second))])
    await until(lambda: first.status == second.status == "Unhealthy", "both checks fail")
    assert await ask(server, f"pool.{ZONE}") == ["127.0.0.1", "127.0.0.2"]
    assert await ask(server, f"fo.{ZONE}", tcp=True) == ["127.0.0.1"]  # the primary


async def test_weight_zero_answers_only_when_every_weighted_record_is_unhealthy(
        server: DnsServer, checks: HealthChecks,
        endpoints: Callable[[], Awaitable[Endpoint]]) -> None:
    endpoint = await endpoints()
    main = checks.create_health_check(http_check(endpoint.port))
    spare = checks.create_health_check(http_check(endpoint.port, resource_path="/spare"))
    server.zone.change([
        Change("CREATE", ResourceRecordSet(f"shop.{ZONE}", "A", 1, ("127.0.0.1",),
                                           set_identifier="main", weight=10,
                                           health_check_id=main.id)),
        Change("CREATE", ResourceRecordSet(f"shop.{ZONE}", "A", 1, ("127.0.0.2",),
                                           set_identifier="spare", weight=0,
                                           health_check_id=spare.id)),
    ])
    await until(lambda: main.checks_done >= 1, "the first check")
    assert {tuple(await ask(server, f"shop.{ZONE}")) for _ in range(20)} == {("127.0.0.1",)}
    checks.update_health_check(main.id, inverted=True)  # now reads Unhealthy
    assert main.status == "Unhealthy"
    assert {tuple(await ask(server, f"shop.{ZONE}")) for _ in range(20)} == {("127.0.0.2",)}


async def test_tcp_check_inverted_and_disabled(
        checks: HealthChecks, endpoints: Callable[[], Awaitable[Endpoint]]) -> None:
    endpoint = await endpoints()
    up = checks.create_health_check(HealthCheckConfig(HOST, endpoint.port, "TCP",
                                                      request_interval=0.1))
    down = checks.create_health_check(HealthCheckConfig(HOST, closed_port(), "TCP",
                                                        request_interval=0.1,
                                                        failure_threshold=1,
                                                        inverted=True))
    await until(lambda: up.checks_done >= 1 and down.checks_done >= 1, "first checks")
    assert up.reason == "Success: TCP connection established."
    assert (up.status, down.status) == ("Healthy", "Healthy")  # down, inverted: healthy

    off = checks.create_health_check(HealthCheckConfig(HOST, closed_port(),
                                                       request_interval=0.1,
                                                       failure_threshold=1, disabled=True))
    await until(lambda: up.checks_done >= 4, "a few more checks")
    assert off.checks_done == 0  # a disabled check sends nothing
    assert off.status == "Healthy"
    checks.update_health_check(off.id, inverted=True)
    assert off.status == "Unhealthy"  # disabled and inverted: the way to stop traffic


async def test_string_match_searches_the_body(
        checks: HealthChecks, endpoints: Callable[[], Awaitable[Endpoint]]) -> None:
    endpoint = await endpoints()
    endpoint.body = b"<html>status: ready</html>"
    match = checks.create_health_check(http_check(endpoint.port, type="HTTP_STR_MATCH",
                                                  search_string="ready"))
    miss = checks.create_health_check(http_check(endpoint.port, type="HTTP_STR_MATCH",
                                                 search_string="banana"))
    await until(lambda: miss.status == "Unhealthy", "the missing string fails the check")
    assert match.status == "Healthy"
    assert "Search string 'banana' was not found" in miss.reason


async def test_a_slow_endpoint_does_not_delay_other_checks(
        checks: HealthChecks, endpoints: Callable[[], Awaitable[Endpoint]]) -> None:
    slow_endpoint = await endpoints()
    slow_endpoint.hang = True
    fast_endpoint = await endpoints()
    slow = checks.create_health_check(HealthCheckConfig(
        HOST, slow_endpoint.port, request_interval=0.1, timeout_seconds=50.0))
    fast = checks.create_health_check(http_check(fast_endpoint.port))
    await until(lambda: fast.checks_done >= 10, "ten checks of the fast endpoint")
    assert slow_endpoint.requests  # the slow check is waiting on its endpoint...
    assert slow.checks_done == 0  # ...and has not finished one, while the other ran ten


async def test_checks_created_later_run_and_deleted_ones_stop(
        checks: HealthChecks, endpoints: Callable[[], Awaitable[Endpoint]]) -> None:
    endpoint = await endpoints()
    check: HealthCheck = checks.create_health_check(http_check(endpoint.port),
                                                    caller_reference="shop-1")
    assert checks.create_health_check(http_check(endpoint.port),
                                      caller_reference="shop-1") is check
    with pytest.raises(InvalidInputError, match="HealthCheckAlreadyExists"):
        checks.create_health_check(http_check(endpoint.port + 1), caller_reference="shop-1")
    await until(lambda: check.checks_done >= 2, "checks")
    checks.delete_health_check(check.id)
    assert checks.is_healthy(check.id)  # a deleted check keeps no record out
    done, sent = check.checks_done, len(endpoint.requests)
    await asyncio.sleep(0.5)  # five intervals: a running check would have sent more
    assert (check.checks_done, len(endpoint.requests)) == (done, sent)
    with pytest.raises(NoSuchHealthCheckError, match="NoSuchHealthCheck"):
        checks.get(check.id)
    later = checks.create_health_check(http_check(endpoint.port))  # registry still running
    await until(lambda: later.checks_done >= 1, "a check created later runs")


@pytest.mark.parametrize(("kw", "words"), [
    ({"port": 0}, "Port 0 is out of range"),
    ({"resource_path": "health"}, "must start with '/'"),
    ({"type": "HTTPS"}, "HTTP, HTTP_STR_MATCH or TCP"),
    ({"type": "HTTP_STR_MATCH"}, "needs a SearchString"),
    ({"failure_threshold": 11}, "use 1 to 10"),
    ({"request_interval": 0.01}, "too short"),
])
def test_health_check_settings_are_validated(kw: dict[str, object], words: str) -> None:
    settings: dict[str, object] = {"ip_address": HOST, "port": 80, **kw}
    with pytest.raises(InvalidInputError, match=words):
        HealthCheckConfig(**settings)  # type: ignore[arg-type]
