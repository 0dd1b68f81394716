"""Fixtures of the lake tests: a local lake, and an S3 endpoint (moto's server)."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest

import servers
from tierlake.lake import Lake


@pytest.fixture
def lake(tmp_path: Path) -> Lake:
    return Lake(str(tmp_path / "lake"))


@pytest.fixture(scope="session")
def moto_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """moto's S3 server as its own process on a free port; yields its endpoint URL.

    Not ``ThreadedMotoServer``: delta-rs keeps the GIL during some calls (``history``), so a
    server thread in the test process would deadlock with it.
    """
    port = servers.free_port()
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    binary = Path(sys.executable).with_name("moto_server")
    with log.open("wb") as out:
        proc = subprocess.Popen([str(binary), "-H", "127.0.0.1", "-p", str(port)],
                                stdout=out, stderr=subprocess.STDOUT)
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"moto_server did not start; its log:\n{log.read_text()[-2000:]}")
            time.sleep(0.05)
    yield endpoint
    proc.terminate()
    proc.wait(timeout=10)


@pytest.fixture
def s3_env(moto_server: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """The standard AWS variables pointed at moto; returns the endpoint."""
    for key, value in {"AWS_ENDPOINT_URL": moto_server, "AWS_ACCESS_KEY_ID": "test",
                       "AWS_SECRET_ACCESS_KEY": "test", "AWS_REGION": "us-east-1"}.items():
        monkeypatch.setenv(key, value)
    return moto_server


@pytest.fixture
def s3_lake(s3_env: str, request: pytest.FixtureRequest) -> Lake:
    """A lake on a new bucket of moto's S3."""
    bucket = f"lake-{abs(hash(request.node.nodeid)) % 10**8}"
    s3 = boto3.client("s3", endpoint_url=s3_env, aws_access_key_id="test",
                      aws_secret_access_key="test", region_name="us-east-1")
    s3.create_bucket(Bucket=bucket)
    return Lake(f"s3://{bucket}/tierlake")
