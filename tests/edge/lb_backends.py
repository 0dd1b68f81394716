"""Real backends for the proxy tests: a uvicorn app, and raw servers that misbehave.

:class:`AppBackend` runs an ASGI app in uvicorn on a free port (in the test's loop, or as
a subprocess for benchmarks); each answer names the backend and counts the connection it
came on (uvicorn's ``scope["client"]`` port identifies one). :class:`RawBackend` is a bare
asyncio server that reads a request head and then resets, closes, hangs or answers
malformed HTTP, as a broken target would.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import socket
import struct
import sys
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import uvicorn

Scope = dict[str, Any]
CHUNK = 64 * 1024




def make_app(name: str, seen: Counter[int] | None = None, log: list[dict[str, Any]] | None = None
             ) -> Any:
    """The backend's ASGI app. ``seen`` counts requests per client port (one port per
    connection); ``log`` receives each request's method, path and headers."""

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        path: str = scope["path"]
        if seen is not None and path != "/health":  # health checks are not counted
            seen[scope["client"][1]] += 1
        query = dict(p.split("=", 1) for p in scope["query_string"].decode().split("&")
                     if "=" in p)
        headers = [(k.decode(), v.decode()) for k, v in scope["headers"]]
        if log is not None:
            log.append({"method": scope["method"], "path": path, "headers": headers})
        base = [(b"x-backend", name.encode())]
        if path == "/upload":
            digest = hashlib.sha256()
            size = 0
            more = True
            while more:
                message = await receive()
                body = message.get("body", b"")
                size += len(body)
                digest.update(body)
                more = message.get("more_body", False)
            out = json.dumps({"bytes": size, "sha256": digest.hexdigest(),
                              "backend": name}).encode()
            await send({"type": "http.response.start", "status": 200, "headers": [
                *base, (b"content-type", b"application/json")]})
            await send({"type": "http.response.body", "body": out})
            return
        if path == "/download":
            n = int(query.get("n", "0"))
            headers_out = [*base, (b"content-type", b"application/octet-stream")]
            if query.get("cl") == "1":
                headers_out.append((b"content-length", str(n).encode()))
            await send({"type": "http.response.start", "status": 200, "headers": headers_out})
            block = bytes(range(256)) * (CHUNK // 256)
            sent = 0
            while sent < n:
                part = block[: min(CHUNK, n - sent)]
                sent += len(part)
                await send({"type": "http.response.body", "body": part,
                            "more_body": sent < n})
            if n == 0:
                await send({"type": "http.response.body", "body": b""})
            return
        if path == "/slow":
            await asyncio.sleep(float(query.get("s", "1")))
        if path == "/echo":
            out = json.dumps({"method": scope["method"], "path": path,
                              "query": scope["query_string"].decode(), "headers": headers,
                              "backend": name}).encode()
            ctype = b"application/json"
        else:
            out = f"{name} {path}".encode()
            ctype = b"text/plain"
        status = int(query.get("status", "200"))
        await send({"type": "http.response.start", "status": status, "headers": [
            *base, (b"content-type", ctype), (b"content-length", str(len(out)).encode())]})
        await send({"type": "http.response.body", "body": out})

    return app


@dataclass
class AppBackend:
    """The app in uvicorn inside the running loop."""

    name: str
    port: int = 0
    connections: Counter[int] = field(default_factory=Counter)
    requests: list[dict[str, Any]] = field(default_factory=list)
    _server: uvicorn.Server | None = None
    _task: asyncio.Task[None] | None = None

    async def start(self) -> AppBackend:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self.port))
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(make_app(self.name, self.connections, self.requests),
                                lifespan="off", log_level="warning", access_log=False,
                                timeout_keep_alive=30, proxy_headers=False)
        self._server = uvicorn.Server(config)
        self._task = asyncio.create_task(self._server.serve(sockets=[sock]))
        async with asyncio.timeout(10):
            while not self._server.started:
                await asyncio.sleep(0.01)
        return self

    async def stop(self) -> None:
        if self._server is not None and self._task is not None:
            self._server.should_exit = True
            self._server.force_exit = True
            await self._task
            self._server = None

    @property
    def request_count(self) -> int:
        return sum(self.connections.values())


@dataclass
class RawBackend:
    """A broken target: reads a request, then ``reset`` (RST), ``close`` (FIN), ``hang``
    (nothing), ``malformed`` (garbage in place of a status line), ``second`` (answers the
    first request of a connection, closes it on the second: a stale keep-alive) or ``ok``.
    ``heads`` keeps every request head but health checks'."""

    mode: str
    port: int = 0
    heads: list[bytes] = field(default_factory=list)
    _server: asyncio.Server | None = None
    _writers: list[asyncio.StreamWriter] = field(default_factory=list)

    async def start(self) -> RawBackend:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for w in self._writers:
                w.transport.abort()
            await self._server.wait_closed()
            self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.append(writer)
        served = 0
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                if head.startswith(b"GET /health "):  # health checks pass; not counted
                    writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                    continue
                self.heads.append(head)
                length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                               if line.lower().startswith(b"content-length:")), 0)
                if length:
                    await reader.readexactly(length)
                if self.mode == "reset":
                    sock = writer.get_extra_info("socket")
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    writer.transport.abort()
                    return
                if self.mode == "close":
                    writer.close()
                    return
                if self.mode == "malformed":
                    writer.write(b"HTTP/1.1 2x0 Nonsense\r\n\x00\x01\r\n\r\n")
                    await writer.drain()
                    writer.close()
                    return
                if self.mode == "second" and served:
                    writer.close()
                    return
                served += 1
                if self.mode == "hang":
                    await asyncio.sleep(3600)
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass
        finally:
            if not writer.transport.is_closing():
                writer.transport.abort()


if __name__ == "__main__":  # a backend process: python lb_backends.py NAME PORT
    uvicorn.run(make_app(sys.argv[1]), host="127.0.0.1", port=int(sys.argv[2]),
                lifespan="off", log_level="warning", access_log=False, proxy_headers=False)
