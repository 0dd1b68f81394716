"""The cluster's endpoint (an RDS-Proxy-like TCP proxy) on plain asyncio servers: held
connections wait for the new writer, a move closes connections to the old one, a target that
refuses is retried until the endpoint moves, and a hold has a bound."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from tierlake.data.cluster import Endpoint

pytestmark = pytest.mark.timeout(30)
WAIT = 10.0


async def _backend(name: bytes) -> tuple[asyncio.Server, tuple[str, int]]:
    """A server answering each line with ``name: line``."""
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while line := await reader.readline():
            writer.write(name + b": " + line)
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, ("127.0.0.1", server.sockets[0].getsockname()[1])


async def _ask(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, text: bytes) -> bytes:
    writer.write(text + b"\n")
    await writer.drain()
    return await asyncio.wait_for(reader.readline(), WAIT)


def run(test: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(test(), WAIT * 2))


def test_db_cluster_endpoint_holds_new_connections_until_released() -> None:
    async def test() -> None:
        server_a, a = await _backend(b"a")
        server_b, b = await _backend(b"b")
        endpoint = Endpoint("writer", "127.0.0.1", 0)
        await endpoint.start()
        endpoint.release(a)
        reader, writer = await asyncio.open_connection("127.0.0.1", endpoint.port)
        assert await _ask(reader, writer, b"one") == b"a: one\n"

        endpoint.hold()
        held_reader, held_writer = await asyncio.open_connection("127.0.0.1", endpoint.port)
        held_writer.write(b"two\n")
        await held_writer.drain()
        await asyncio.sleep(0.2)
        assert endpoint.connections == 1  # only the first: the new one waits
        assert endpoint.release(b) == 1  # the connection to a is closed ...
        assert await asyncio.wait_for(reader.read(), WAIT) == b""  # ... and its client sees it
        assert await asyncio.wait_for(held_reader.readline(), WAIT) == b"b: two\n"
        held_writer.close()
        writer.close()
        await endpoint.stop()
        for server in (server_a, server_b):
            server.close()
    run(test)


def test_db_cluster_endpoint_retries_a_refusing_target_until_moved() -> None:
    async def test() -> None:
        dead, dead_address = await _backend(b"dead")
        dead.close()
        await dead.wait_closed()  # nothing listens there now: connections are refused
        server_b, b = await _backend(b"b")
        endpoint = Endpoint("writer", "127.0.0.1", 0)
        await endpoint.start()
        endpoint.release(dead_address)
        reader, writer = await asyncio.open_connection("127.0.0.1", endpoint.port)
        writer.write(b"hello\n")
        await writer.drain()
        await asyncio.sleep(0.2)
        endpoint.release(b)  # what the monitor does after promoting the standby
        assert await asyncio.wait_for(reader.readline(), WAIT) == b"b: hello\n"
        assert endpoint.connections_refused == 0
        writer.close()
        await endpoint.stop()
        server_b.close()
    run(test)


def test_db_cluster_endpoint_hold_is_bounded() -> None:
    async def test() -> None:
        endpoint = Endpoint("writer", "127.0.0.1", 0, hold_timeout=0.3)
        await endpoint.start()
        endpoint.hold()
        reader, writer = await asyncio.open_connection("127.0.0.1", endpoint.port)
        assert await asyncio.wait_for(reader.read(), WAIT) == b""  # closed after the hold
        assert endpoint.connections_refused == 1
        writer.close()
        await endpoint.stop()
    run(test)
