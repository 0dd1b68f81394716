"""The listener alone: real sockets, targets registered and deregistered."""

from __future__ import annotations

import asyncio

from tierlake.fleet.listener import Listener


async def _target(name: bytes) -> asyncio.Server:
    """A TCP server that reads until the client's end of stream, then answers with its
    name and what it read."""
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(name + b":" + await reader.read())
        await writer.drain()
        writer.close()

    return await asyncio.start_server(answer, "127.0.0.1", 0)


async def _ask(listener: Listener, line: bytes) -> bytes:
    reader, writer = await asyncio.open_connection(listener.host, listener.port)
    try:
        writer.write(line)
        writer.write_eof()
        return await asyncio.wait_for(reader.read(), 10)
    except ConnectionResetError:  # closed with our bytes unread: the same answer, nothing
        return b""
    finally:
        writer.close()


def test_connections_go_round_robin_to_registered_targets() -> None:
    async def scenario() -> None:
        a, b = await _target(b"a"), await _target(b"b")
        listener = Listener("test", "127.0.0.1", 0)
        await listener.start()
        try:
            assert await _ask(listener, b"hello\n") == b"", "no target: closed at once"
            for server in (a, b):
                listener.register(server.sockets[0].getsockname()[:2])
            answers = [await _ask(listener, f"{i}\n".encode()) for i in range(4)]
            assert answers == [b"a:0\n", b"b:1\n", b"a:2\n", b"b:3\n"]
            big = b"x" * 1_000_000 + b"\n"  # spliced both ways, whole
            assert (await _ask(listener, big)).endswith(big)
            listener.deregister(a.sockets[0].getsockname()[:2])
            assert {await _ask(listener, b"q\n") for _ in range(3)} == {b"b:q\n"}
        finally:
            await listener.stop()
            for server in (a, b):
                server.close()

    asyncio.run(scenario())
