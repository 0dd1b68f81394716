"""Where the lake lives: a local directory or an S3 prefix, and its storage errors.

What is kept of Amazon S3: a lake URL ``s3://bucket/prefix`` is served by any S3 endpoint
(AWS, MinIO, moto) configured from the standard AWS variables (``AWS_ENDPOINT_URL``,
``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_SESSION_TOKEN``, ``AWS_REGION`` or
``AWS_DEFAULT_REGION``; ``AWS_ALLOW_HTTP=true`` is set for an ``http://`` endpoint). Objects
are written once and never modified; a commit relies on S3's conditional PUT (``If-None-Match``,
on AWS since 2024) so two writers cannot both create version N. A missing bucket
(``NoSuchBucket``), a refused connection and ``AccessDenied`` become a :class:`LakeError`
naming the fix (:meth:`Storage.translate_errors`). A local directory behaves the same way
(rename-based commits).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from deltalake.exceptions import DeltaError

from tierlake.errors import TierlakeError
from tierlake.lake.errors import LakeError, LakeUnavailableError


class Storage:
    """The lake's root at ``url`` (a local directory or ``s3://bucket/prefix``): its
    filesystem, its checks and the translation of storage failures into errors naming a fix."""

    def __init__(self, url: str) -> None:
        self.url = url
        parsed = urlparse(url)
        if parsed.scheme == "s3":
            self.bucket = parsed.netloc
            if not self.bucket:
                raise LakeError(f"lake URL {url!r} has no bucket; use s3://bucket/prefix "
                                "(TIERLAKE_LAKE_URL)")
            prefix = parsed.path.strip("/")
            self.root = f"s3://{self.bucket}" + (f"/{prefix}" if prefix else "")
        elif parsed.scheme in ("", "file") and url.strip():
            self.bucket = ""
            self.root = str(Path(parsed.path if parsed.scheme else url).expanduser().resolve())
        else:
            raise LakeError(f"lake URL {url!r} is not supported; use a local directory or "
                            "s3://bucket/prefix in TIERLAKE_LAKE_URL")
        self.is_s3 = bool(self.bucket)
        self.storage_options = _s3_options() if self.is_s3 else None

    @property
    def _fs_root(self) -> str:
        return self.root.removeprefix("s3://")

    def filesystem(self) -> Any:
        """An fsspec filesystem on the lake (s3fs for S3), e.g. for DuckDB's
        ``register_filesystem``; paths are ``bucket/key`` for S3, absolute paths locally."""
        import fsspec

        if not self.is_s3:
            return fsspec.filesystem("file")
        import s3fs

        opts = self.storage_options or {}
        fs = s3fs.S3FileSystem(
            key=opts.get("AWS_ACCESS_KEY_ID"), secret=opts.get("AWS_SECRET_ACCESS_KEY"),
            token=opts.get("AWS_SESSION_TOKEN"), endpoint_url=opts.get("AWS_ENDPOINT_URL"),
            client_kwargs={"region_name": opts["AWS_REGION"]},
            config_kwargs={"connect_timeout": 5, "retries": {"max_attempts": 2}},
            skip_instance_cache=True,
        )
        return fs

    def total_bytes(self) -> int:
        """Bytes stored under the lake's root (every version, not only the current one)."""
        fs = self.filesystem()
        with self.translate_errors("measure", self.root):
            return int(fs.du(self._fs_root, total=True)) if fs.exists(self._fs_root) else 0

    def check(self) -> None:
        """Fail early, with the fix, if the lake cannot be written (bucket, directory)."""
        if self.is_s3:
            problem = self._bucket_problem()
            if problem:
                raise problem
            return
        try:
            Path(self.root).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise _local_error(exc, "create", self.root) from exc
        if not os.access(self.root, os.W_OK | os.X_OK):
            raise LakeError(f"the lake directory {self.root} is not writable; fix its "
                            "permissions or point TIERLAKE_LAKE_URL elsewhere")

    def _bucket_problem(self) -> LakeError | None:
        endpoint = (self.storage_options or {}).get("AWS_ENDPOINT_URL", "AWS S3")
        try:
            self.filesystem().ls(self.bucket, detail=False)
        except FileNotFoundError:
            return LakeError(
                f"the S3 bucket {self.bucket!r} does not exist at {endpoint}: create it "
                f"(`aws s3 mb s3://{self.bucket}`) or fix the bucket in TIERLAKE_LAKE_URL")
        except PermissionError:
            return LakeError(
                f"access to the S3 bucket {self.bucket!r} is denied: check AWS_ACCESS_KEY_ID/"
                "AWS_SECRET_ACCESS_KEY and the bucket policy (s3:ListBucket, GetObject, PutObject)")
        except Exception as exc:  # noqa: BLE001 - any transport failure means "unreachable"
            return LakeUnavailableError(
                f"cannot reach S3 at {endpoint} for bucket {self.bucket!r} ({exc}); check "
                "AWS_ENDPOINT_URL and that the service is up")
        return None

    @contextmanager
    def translate_errors(self, action: str, uri: str) -> Iterator[None]:
        """Turn storage failures into :class:`LakeError` naming the fix."""
        try:
            yield
        except TierlakeError:
            raise
        except (OSError, DeltaError) as exc:
            if self.is_s3 and (problem := self._bucket_problem()):
                raise problem from exc
            if _no_space(exc) or isinstance(exc, PermissionError) or (
                    "permission denied" in str(exc).lower()):
                raise _local_error(exc, action, uri) from exc
            raise _generic(action, uri, exc) from exc


def _s3_options() -> dict[str, str]:
    env = os.environ
    opts = {"AWS_REGION": env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or "us-east-1"}
    endpoint = env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL")
    if endpoint:
        opts["AWS_ENDPOINT_URL"] = endpoint
        if endpoint.startswith("http://"):
            opts["AWS_ALLOW_HTTP"] = "true"
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        if env.get(key):
            opts[key] = env[key]
    return opts


def _no_space(exc: BaseException) -> bool:
    return getattr(exc, "errno", None) == 28 or "no space left" in str(exc).lower()


def _local_error(exc: BaseException, action: str, uri: str) -> LakeError:
    if _no_space(exc):
        return LakeError(f"cannot {action} {uri}: the disk is full; free space on it or move "
                         "the lake (TIERLAKE_LAKE_URL). The lake stays at its last good version.")
    if isinstance(exc, PermissionError) or getattr(exc, "errno", None) == 13:
        return LakeError(f"cannot {action} {uri}: permission denied; make the lake directory "
                         "writable or point TIERLAKE_LAKE_URL elsewhere")
    return _generic(action, uri, exc)


def _generic(action: str, uri: str, exc: BaseException) -> LakeError:
    return LakeError(f"cannot {action} lake table {uri}: {exc}. The lake stays at its last good "
                     "version; fix the cause and run the extract again.")
