"""The running cluster's control socket: how `tierlake db cluster status` and `tierlake db
failover` reach the process that owns the servers.

A Unix socket in the cluster's directory (only its owner can use it: no password, no port),
one JSON request per line (``{"action": "status"}`` or ``{"action": "failover"}``) and one JSON
answer per line (``{"ok": true, "result": ...}`` or ``{"ok": false, "error": "..."}``). When
``tierlake up`` owns the cluster, its control API can call the same methods directly.
"""

from __future__ import annotations

import asyncio
import json
import socket
from pathlib import Path
from typing import Any

import structlog

from tierlake.data.cluster.cluster import DBCluster
from tierlake.data.cluster.instance import DBClusterError

log = structlog.get_logger(__name__)

CONTROL_SOCKET = "control.sock"
MAX_SOCKET_PATH = 107  # sun_path holds 108 bytes with the final NUL


async def serve_control(cluster: DBCluster, path: Path) -> asyncio.AbstractServer:
    """Answer status and failover requests on the Unix socket ``path``."""
    if len(str(path).encode()) > MAX_SOCKET_PATH:
        raise DBClusterError(f"{path} is too long for a Unix socket ({MAX_SOCKET_PATH} bytes "
                             "at most); choose a shorter data directory")
    path.unlink(missing_ok=True)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await reader.readline()
            answer = await _answer(cluster, line)
            writer.write(json.dumps(answer).encode() + b"\n")
            await writer.drain()
        finally:
            writer.close()

    server = await asyncio.start_unix_server(handle, str(path))
    path.chmod(0o600)
    return server


async def _answer(cluster: DBCluster, line: bytes) -> dict[str, Any]:
    try:
        action = json.loads(line).get("action")
    except (ValueError, AttributeError):
        return {"ok": False, "error": 'send one JSON object per line, e.g. {"action": "status"}'}
    try:
        if action == "status":
            return {"ok": True, "result": cluster.status()}
        if action == "failover":
            return {"ok": True, "result": await cluster.failover()}
    except DBClusterError as exc:
        return {"ok": False, "error": str(exc)}
    return {"ok": False, "error": f"unknown action {action!r}: use status or failover"}


def request(path: Path, action: str, timeout: float = 120.0) -> Any:
    """Send ``action`` to the cluster listening on ``path``; its result, or DBClusterError."""
    if not path.exists():
        raise DBClusterError(f"no database cluster is running here ({path} does not exist); "
                             "start one with `tierlake db cluster up`")
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(str(path))
            sock.sendall(json.dumps({"action": action}).encode() + b"\n")
            data = b""
            while not data.endswith(b"\n"):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
    except OSError as exc:
        raise DBClusterError(f"the database cluster at {path} does not answer ({exc}); is "
                             "`tierlake db cluster up` still running?") from exc
    try:
        answer = json.loads(data)
    except ValueError as exc:
        raise DBClusterError(f"the database cluster at {path} sent no answer") from exc
    if not answer.get("ok"):
        raise DBClusterError(str(answer.get("error")))
    return answer["result"]
