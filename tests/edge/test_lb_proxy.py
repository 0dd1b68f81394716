"""The proxy over real sockets: forwarding and headers, keep-alive both ways, streamed
bodies, retries, ALB's own status codes and the access-log entries."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
import tracemalloc
from pathlib import Path

import httpx
import pytest
from lb_backends import AppBackend, RawBackend
from lb_helpers import Entries, balancer, client, dead_port, group, raw, until

from servers import free_port
from tierlake.edge.lb.balancer import Listener, LoadBalancer
from tierlake.edge.lb.model import AccessLogEntry, TargetState
from tierlake.edge.lb.rules import FixedResponse, Forward

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]
TRACE = re.compile(r"^1-[0-9a-f]{8}-[0-9a-f]{24}$")


@pytest.fixture
async def app() -> AppBackend:
    backend = await AppBackend("app").start()
    yield backend  # type: ignore[misc]
    await backend.stop()


async def test_forwarded_headers_trace_id_and_hop_by_hop(app: AppBackend) -> None:
    async with balancer(group("web", app.port)) as (lb, url), client() as c:
        r = await c.get(f"{url}/echo?a=1", headers={
            "X-Forwarded-For": "203.0.113.7", "Connection": "keep-alive, X-Secret",
            "X-Secret": "hop", "Keep-Alive": "timeout=5", "X-Kept": "end-to-end"})
        seen = dict(r.json()["headers"])
        assert seen["x-forwarded-for"] == "203.0.113.7, 127.0.0.1"
        assert seen["x-forwarded-proto"] == "http"
        assert seen["x-forwarded-port"] == str(lb.listeners[0].port)
        assert seen["x-kept"] == "end-to-end"
        assert "x-secret" not in seen and "keep-alive" not in seen
        root = seen["x-amzn-trace-id"]
        assert root.startswith("Root=") and TRACE.match(root.removeprefix("Root="))
        # A client's Root is kept; the balancer adds its Self field in front.
        r = await c.get(f"{url}/echo", headers={
            "X-Amzn-Trace-Id": "Root=1-67891233-abcdef012345678912345678;CalledFrom=app"})
        fields = dict(f.split("=", 1) for f in
                      dict(r.json()["headers"])["x-amzn-trace-id"].split(";"))
        assert fields["Root"] == "1-67891233-abcdef012345678912345678"
        assert fields["CalledFrom"] == "app" and TRACE.match(fields["Self"])


async def test_keep_alive_both_ways(app: AppBackend) -> None:
    log = Entries()
    async with balancer(group("web", app.port), observers=[log]) as (lb, url), client() as c:
        for i in range(20):
            assert (await c.get(f"{url}/p{i}")).status_code == 200
    assert app.request_count == 20
    assert len(app.connections) == 1, app.connections  # one upstream connection reused
    assert len({e.client for e in log.entries}) == 1  # one client connection reused
    assert lb.pool.connects == 1


async def test_pipelined_requests_are_answered_in_order(app: AppBackend) -> None:
    async with balancer(group("web", app.port)) as (lb, _):
        data = b"".join(b"GET /n%d HTTP/1.1\r\nHost: x\r\n\r\n" % i for i in range(3))
        out = await raw(lb.listeners[0].port, data + b"GET /last HTTP/1.1\r\nHost: x\r\n"
                        b"Connection: close\r\n\r\n")
    bodies = re.findall(rb"app (/n\d|/last)", out)
    assert bodies == [b"/n0", b"/n1", b"/n2", b"/last"]


async def test_head_chunked_upload_and_http10(app: AppBackend) -> None:
    async with balancer(group("web", app.port)) as (lb, url), client() as c:
        r = await c.head(f"{url}/x")
        assert r.status_code == 200 and r.content == b""
        assert r.headers["content-length"] == str(len(b"app /x"))

        async def parts():  # no length known: sent chunked
            for _ in range(10):
                yield b"z" * 1000
        r = await c.post(f"{url}/upload", content=parts())
        assert r.json()["bytes"] == 10_000
        assert (await c.get(f"{url}/after")).text == "app /after"
        out = await raw(lb.listeners[0].port, b"GET /download?n=5000 HTTP/1.0\r\n\r\n")
        head, _, body = out.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200") and len(body) == 5000  # ended by the close
        assert b"chunked" not in head.lower()


async def test_streams_20_mb_each_way_with_bounded_memory(tmp_path: Path) -> None:
    """The backend and the client are other processes; the balancer's own allocations stay
    far below the 20 MB that go through it in each direction."""
    port = free_port()
    backend = subprocess.Popen([sys.executable, str(Path(__file__).parent / "lb_backends.py"),
                                "big", str(port)])
    try:
        async with balancer(group("web", port)) as (_, url), client() as c:
            await until_up(c, f"http://127.0.0.1:{port}/")
            size = 20 * 1024 * 1024
            tracemalloc.start()
            try:
                down = await asyncio.create_subprocess_exec(
                    "curl", "-sS", "-o", "/dev/null", "-w", "%{size_download}",
                    f"{url}/download?n={size}", stdout=subprocess.PIPE)
                got, _ = await down.communicate()
                assert int(got) == size
                src = tmp_path / "up.bin"
                with src.open("wb") as f:
                    for i in range(320):
                        f.write(bytes([i % 256]) * 65536)
                up = await asyncio.create_subprocess_exec(
                    "curl", "-sS", "-H", "Expect:", "--data-binary", f"@{src}",
                    f"{url}/upload", stdout=subprocess.PIPE)
                answer, _ = await up.communicate()
                assert json.loads(answer)["bytes"] == size
                _, peak = tracemalloc.get_traced_memory()
            finally:
                tracemalloc.stop()
        assert peak < 6 * 1024 * 1024, f"the balancer held {peak} bytes at once"
    finally:
        backend.terminate()
        backend.wait(10)


async def until_up(c: httpx.AsyncClient, url: str) -> None:
    async with asyncio.timeout(15):
        while True:
            try:
                await c.get(url)
                return
            except httpx.TransportError:
                await asyncio.sleep(0.05)


# --- ALB's own answers -------------------------------------------------------------------------


async def test_502_when_the_target_resets_or_answers_garbage() -> None:
    for mode in ("reset", "malformed", "close"):
        bad = await RawBackend(mode).start()
        log = Entries()
        try:
            async with balancer(group("web", bad.port), observers=[log]) as (_, url), \
                    client() as c:
                r = await c.post(f"{url}/order", content=b"{}")
                assert r.status_code == 502, mode
                assert "<title>502 Bad Gateway</title>" in r.text
        finally:
            await bad.stop()
        entry = log.entries[-1]
        assert (entry.elb_status_code, entry.error_reason) == (502, "TargetResponseError")
        assert entry.target_status_code is None and len(bad.heads) == 1


async def test_503_when_the_group_has_no_target() -> None:
    log = Entries()
    async with balancer(group("empty"), observers=[log]) as (_, url), client() as c:
        r = await c.get(f"{url}/")
    assert r.status_code == 503 and "503 Service Unavailable" in r.text
    e = log.entries[0]
    assert (e.target, e.request_processing_time, e.target_processing_time) == (None, -1, -1)


async def test_504_when_the_target_stays_silent() -> None:
    silent = await RawBackend("hang").start()
    log = Entries()
    try:
        async with balancer(group("web", silent.port), observers=[log], idle_timeout=0.3) as (
                _, url), client() as c:
            r = await c.get(f"{url}/")
    finally:
        await silent.stop()
    assert r.status_code == 504 and "<title>504 Gateway Timeout</title>" in r.text
    assert log.entries[0].error_reason == "TargetTimeout"


@pytest.mark.parametrize(("request_bytes", "what"), [
    (b"GET /" + b"a" * 17_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", "request line over 16 K"),
    (b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 17_000 + b"\r\n\r\n", "header over 16 K"),
    (b"GET / HTTP/1.1\r\nHost: x\r\n" + b"".join(
        b"X-H%d: %s\r\n" % (i, b"c" * 15_000) for i in range(5)) + b"\r\n", "headers over 64 K"),
    (b"GARBAGE\r\n\r\n", "malformed"),
    (b"GET / HTTP/1.1\r\n\r\n", "HTTP/1.1 without Host"),
    (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n"
     b"0\r\n\r\n", "both framings (request smuggling)"),
    (b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
     "two lengths"),
])
async def test_400_for_malformed_or_oversized_requests(app: AppBackend, request_bytes: bytes,
                                                       what: str) -> None:
    log = Entries()
    async with balancer(group("web", app.port), observers=[log]) as (lb, _):
        out = await raw(lb.listeners[0].port, request_bytes)
    assert out.startswith(b"HTTP/1.1 400 Bad Request"), what
    assert b"<title>400 Bad Request</title>" in out
    assert app.request_count == 0 and log.entries[0].elb_status_code == 400


async def test_463_when_x_forwarded_for_has_over_30_addresses(app: AppBackend) -> None:
    chain = ", ".join(f"198.51.100.{i}" for i in range(31))
    async with balancer(group("web", app.port)) as (_, url), client() as c:
        assert (await c.get(f"{url}/", headers={"X-Forwarded-For": chain})).status_code == 463
        ok = ", ".join(f"198.51.100.{i}" for i in range(30))
        assert (await c.get(f"{url}/", headers={"X-Forwarded-For": ok})).status_code == 200


async def test_460_when_the_client_leaves_first(app: AppBackend) -> None:
    log = Entries()
    async with balancer(group("web", app.port), observers=[log]) as (lb, _):
        reader, writer = await asyncio.open_connection("127.0.0.1", lb.listeners[0].port)
        writer.write(b"GET /slow?s=0.5 HTTP/1.1\r\nHost: x\r\n\r\n")
        await writer.drain()
        await until(lambda: lb.pool.connects == 1, "the request reached the target")
        writer.close()
        await until(lambda: bool(log.entries), "the entry of the abandoned request")
    e = log.entries[0]
    assert (e.elb_status_code, e.error_reason, e.sent_bytes) == (460, "ClientClosed", 0)


async def test_an_idle_client_connection_is_closed_after_the_idle_timeout(app: AppBackend
                                                                         ) -> None:
    async with balancer(group("web", app.port), idle_timeout=0.3) as (lb, _):
        reader, writer = await asyncio.open_connection("127.0.0.1", lb.listeners[0].port)
        writer.write(b"GET /one HTTP/1.1\r\nHost: x\r\n\r\n")
        async with asyncio.timeout(10):
            answer = await reader.read(-1)  # the end comes from the balancer's idle timeout
        writer.close()
    assert answer.startswith(b"HTTP/1.1 200") and answer.endswith(b"app /one")


# --- retries -----------------------------------------------------------------------------------


async def test_get_to_a_dead_target_goes_elsewhere_and_marks_it_unhealthy(app: AppBackend
                                                                         ) -> None:
    tg = group("web", dead_port(), app.port)
    log = Entries()
    async with balancer(tg, observers=[log]) as (_, url), client() as c:
        answers = [(await c.get(f"{url}/r{i}")).status_code for i in range(4)]
        assert answers == [200] * 4
        assert tg.health("web-0")[0] is TargetState.UNHEALTHY  # passive detection
    retried = [e for e in log.entries if len(e.targets_tried) == 2]
    assert retried and all(e.target_status_codes == [0, 200] for e in retried)


async def test_post_to_a_refused_port_goes_elsewhere(app: AppBackend) -> None:
    async with balancer(group("web", dead_port(), app.port)) as (_, url), client() as c:
        for _ in range(3):
            r = await c.post(f"{url}/upload", content=b"pay")
            assert r.status_code == 200 and r.json()["bytes"] == 3


async def test_a_post_that_reached_a_target_is_never_replayed() -> None:
    reset, good = await RawBackend("reset").start(), await RawBackend("ok").start()
    tg = group("web", reset.port, good.port)
    try:
        async with balancer(tg) as (_, url), client() as c:
            posts = [(await c.post(f"{url}/order", content=b"{}")).status_code
                     for _ in range(4)]
            gets = [(await c.get(f"{url}/item")).status_code for _ in range(4)]
    finally:
        await reset.stop()
        await good.stop()
    post_heads = [h for h in reset.heads + good.heads if h.startswith(b"POST")]
    assert len(post_heads) == 4  # every POST arrived exactly once
    assert posts.count(502) == sum(h.startswith(b"POST") for h in reset.heads) >= 1
    assert gets == [200] * 4  # GETs the reset target took were replayed on the other


async def test_an_idempotent_put_is_replayed_with_its_body(app: AppBackend) -> None:
    reset = await RawBackend("reset").start()
    log = Entries()
    try:
        async with balancer(group("web", reset.port, app.port), observers=[log]) as (
                _, url), client() as c:
            for _ in range(4):
                r = await c.put(f"{url}/upload", content=b"p" * 5000)
                assert r.status_code == 200 and r.json()["bytes"] == 5000
    finally:
        await reset.stop()
    replayed = [e for e in log.entries if len(e.targets_tried) == 2]
    assert len(replayed) == len(reset.heads) >= 1
    assert all(e.target_status_codes == [0, 200] for e in replayed)


async def test_expect_100_continue_is_answered_by_the_balancer(app: AppBackend) -> None:
    async with balancer(group("web", app.port)) as (lb, url):
        curl = await asyncio.create_subprocess_exec(
            "curl", "-sS", "-H", "Expect: 100-continue", "--data-binary", "x" * 3000,
            f"{url}/upload", stdout=subprocess.PIPE)
        out, _ = await curl.communicate()
    assert json.loads(out)["bytes"] == 3000


async def test_a_stale_pooled_connection_is_retried_on_a_fresh_one() -> None:
    stale = await RawBackend("second").start()
    try:
        async with balancer(group("web", stale.port)) as (lb, url), client() as c:
            assert [(await c.get(f"{url}/")).status_code for _ in range(3)] == [200] * 3
            assert lb.pool.connects == 3  # each reuse met a closed connection
    finally:
        await stale.stop()


# --- access log, observers, draining, uvloop --------------------------------------------------


async def test_observers_get_every_field_and_cannot_break_requests(app: AppBackend) -> None:
    class Broken:
        def request_done(self, entry: AccessLogEntry) -> None:
            raise RuntimeError("observer bug")

    log = Entries()
    async with balancer(group("web", app.port), observers=[Broken(), log]) as (lb, url), \
            client() as c:
        r = await c.post(f"{url}/upload?x=1", content=b"1" * 5000,
                         headers={"User-Agent": "shopper/1.0"})
        assert r.status_code == 200
    e = log.entries[0]
    port = lb.listeners[0].port
    assert e.type == "http" and e.elb == "test-alb" and e.client[0] == "127.0.0.1"
    assert e.target == ("127.0.0.1", app.port) and e.targets_tried == [e.target]
    assert (e.elb_status_code, e.target_status_code, e.target_status_codes) == (200, 200, [200])
    assert e.request == f"POST http://127.0.0.1:{port}/upload?x=1 HTTP/1.1"
    assert e.user_agent == "shopper/1.0" and e.domain_name == "127.0.0.1"
    assert e.target_group == "web" and e.matched_rule_priority == "0"
    assert e.actions_executed == ["forward"] and e.error_reason == "-"
    assert e.trace_id.startswith("Root=1-")
    assert min(e.request_processing_time, e.target_processing_time,
               e.response_processing_time) >= 0
    assert e.received_bytes > 5000 and e.sent_bytes > len(r.content)  # heads and bodies
    assert e.request_creation_time <= e.time


async def test_stop_lets_requests_in_flight_finish(app: AppBackend) -> None:
    async with balancer(FixedResponse(200)) as _:
        pass  # a balancer with no target group starts and stops cleanly
    lb = LoadBalancer("drain", listeners=[Listener(0, [], Forward.to(group("w", app.port)))])
    await lb.start()
    url = f"http://127.0.0.1:{lb.listeners[0].port}"
    async with client() as c:
        slow = asyncio.create_task(c.get(f"{url}/slow?s=0.3"))
        await until(lambda: lb.pool.connects == 1, "the slow request reached the target")
        await lb.stop(drain_seconds=5)
        assert (await slow).text == "app /slow"
        with pytest.raises(httpx.ConnectError):
            await c.get(url)


def test_the_proxy_runs_on_uvloop() -> None:
    uvloop = pytest.importorskip("uvloop")

    async def main() -> list[int]:
        backend = await AppBackend("uv").start()
        try:
            async with balancer(group("web", backend.port)) as (_, url), client() as c:
                small = [(await c.get(f"{url}/x")).status_code for _ in range(5)]
                big = await c.get(f"{url}/download?n=3000000")
                return [*small, len(big.content)]
        finally:
            await backend.stop()

    assert uvloop.run(main()) == [200] * 5 + [3_000_000]


async def test_a_target_killed_under_load_costs_no_request() -> None:
    """Two backend processes, eight clients in a loop; one backend is SIGKILLed mid-load:
    requests in flight on it are replayed (GET), new ones find the other (connect refused,
    passive detection). Every answer is a 200."""
    ports = [free_port(), free_port()]
    script = str(Path(__file__).parent / "lb_backends.py")
    procs = [subprocess.Popen([sys.executable, script, f"b{i}", str(p)])
             for i, p in enumerate(ports)]
    statuses: list[int] = []
    log = Entries()
    try:
        tg = group("web", *ports)
        async with balancer(tg, observers=[log]) as (_, url), client() as c:
            for p in ports:
                await until_up(c, f"http://127.0.0.1:{p}/")
            await until(lambda: tg.healthy_count == 2, "both targets healthy", 15)
            stop = asyncio.Event()

            async def shopper() -> None:
                while not stop.is_set():
                    statuses.append((await c.get(f"{url}/slow?s=0.02")).status_code)

            shoppers = [asyncio.create_task(shopper()) for _ in range(8)]
            await until(lambda: len(statuses) >= 40, "load before the kill", 30)
            procs[0].kill()
            procs[0].wait(10)
            killed_at = len(statuses)
            await until(lambda: len(statuses) >= killed_at + 80, "load after the kill", 30)
            stop.set()
            await asyncio.gather(*shoppers)
    finally:
        for proc in procs:
            proc.kill()
            proc.wait(10)
    assert statuses and set(statuses) == {200}, [s for s in statuses if s != 200]
    retried = [e for e in log.entries if len(e.targets_tried) > 1]
    assert retried, "the kill met no request in flight"  # the test did test something


async def test_a_busy_port_is_a_clear_error(app: AppBackend) -> None:
    lb = LoadBalancer("busy", listeners=[Listener(app.port, [], Forward.to(group("w")))])
    with pytest.raises(OSError, match="cannot listen on 127.0.0.1:.*choose another port"):
        await lb.start()
    await lb.stop()  # stopping what never started (or stopping twice) is harmless
