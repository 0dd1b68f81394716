"""The load balancer's access log: ALB's log lines, gzip files, ALB's S3 key layout.

What is kept of ALB access logs (AWS, "Access logs for your Application Load Balancer",
https://docs.aws.amazon.com/elasticloadbalancing/latest/application/load-balancer-access-logs.html):

* one line per request, fields in the documented order and quoting, ``-`` where a value does
  not apply, times in ISO 8601 with microseconds and ``Z``, processing times in seconds with
  three decimals and ``-1`` when the request was not dispatched (the entry gives -1);
* files gzip-compressed and delivered under
  ``AWSLogs/<account-id>/elasticloadbalancing/<region>/yyyy/mm/dd/<account-id>_elasticloadbalancing_<region>_app.<name>.<id>_<end-time>_<ip-address>_<random-string>.log.gz``,
  the date being the delivery date, the end time ``YYYYMMDDTHHMMZ``. tierlake's account is
  ``000000000000`` and its region ``local-1`` (:data:`ACCOUNT_ID`, :data:`REGION`);
* fields ALB fills from features tierlake has not (TLS, certificates, WAF classification,
  connection ids, URL rewrite) are ``-``; ``target_group_arn`` is an ARN built from the
  target group's name in that account and region.

Values written in quotes lose what would break the line: ``"`` becomes ``%22`` and control
characters (newlines) ``%XX``, as in a URL, so every line parses with Athena's regex.

ALB delivers a file every 5 minutes; here a file is delivered at least every
``rotate_seconds`` (and on :meth:`AccessLogWriter.close`), if it has lines. A delivery is
atomic: lines go to a hidden temporary file (``.<name>.tmp`` beside the date folders), which
is renamed into place when complete, so a reader never sees half a file.

The balancer's event loop only appends the formatted line to a list
(:meth:`~AccessLogWriter.request_done`); a writer thread compresses and writes the lines
about every second. A failing disk is logged (``lb.access_log_write_failed``) and the lines
of the file that failed are dropped and counted (:attr:`AccessLogWriter.dropped_lines`),
never raised into the balancer; the next file is tried afresh.
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import os
import re
import secrets
import string
import threading
import time
from collections.abc import Callable
from contextlib import suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

import structlog

from tierlake.edge.lb.model import AccessLogEntry

log = structlog.get_logger(__name__)

ACCOUNT_ID = "000000000000"
REGION = "local-1"
MAX_PENDING_LINES = 200_000  # lines waiting for the writer thread; more are dropped
_NAME = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,30}[A-Za-z0-9])?$")  # ALB's name rule
_UNSAFE = re.compile(r'["\x00-\x1f\x7f]')
_RANDOM = string.ascii_lowercase + string.digits


def resource_id(name: str) -> str:
    """A stable 16-hex-digit id for a named resource (ALB gives each balancer and target
    group one; tierlake derives it from the name, so names and ids stay together)."""
    return hashlib.sha256(name.encode()).hexdigest()[:16]


def load_balancer_id(name: str) -> str:
    """The ``elb`` field of a line: ``app/<name>/<id>``."""
    return name if name.startswith("app/") else f"app/{name}/{resource_id(name)}"


def target_group_arn(name: str, *, account_id: str = ACCOUNT_ID, region: str = REGION) -> str:
    """``arn:aws:elasticloadbalancing:<region>:<account>:targetgroup/<name>/<id>`` (``-``
    when there is no target group)."""
    if name in ("", "-"):
        return "-"
    return (f"arn:aws:elasticloadbalancing:{region}:{account_id}:targetgroup/{name}/"
            f"{resource_id(name)}")


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _seconds(value: float) -> str:
    return "-1" if value < 0 else f"{value:.3f}"


def _quoted(value: str) -> str:
    text = _UNSAFE.sub(lambda m: f"%{ord(m.group()):02X}", value) if value else "-"
    return f'"{text}"'


def _code(value: int | None) -> str:
    return "-" if value is None else str(value)


def format_entry(entry: AccessLogEntry, *, account_id: str = ACCOUNT_ID,
                 region: str = REGION) -> str:
    """One access-log line (no newline), in ALB's field order."""
    target = f"{entry.target[0]}:{entry.target[1]}" if entry.target else "-"
    tried = " ".join(f"{h}:{p}" for h, p in entry.targets_tried)
    codes = " ".join(str(c) for c in entry.target_status_codes)
    return " ".join((
        entry.type,
        _iso(entry.time),
        load_balancer_id(entry.elb),
        f"{entry.client[0]}:{entry.client[1]}",
        target,
        _seconds(entry.request_processing_time),
        _seconds(entry.target_processing_time),
        _seconds(entry.response_processing_time),
        _code(entry.elb_status_code),
        _code(entry.target_status_code),
        str(entry.received_bytes),
        str(entry.sent_bytes),
        _quoted(entry.request),
        _quoted(entry.user_agent),
        "-",  # ssl_cipher
        "-",  # ssl_protocol
        target_group_arn(entry.target_group, account_id=account_id, region=region),
        _quoted(entry.trace_id),
        _quoted(entry.domain_name),
        _quoted("-"),  # chosen_cert_arn
        entry.matched_rule_priority or "-",
        _iso(entry.request_creation_time),
        _quoted(",".join(entry.actions_executed)),
        _quoted(entry.redirect_url),
        _quoted(entry.error_reason),
        _quoted(tried),
        _quoted(codes),
        _quoted("-"),  # classification
        _quoted("-"),  # classification_reason
        "-",  # conn_trace_id
        _quoted("-"),  # transformed_host
        _quoted("-"),  # transformed_uri
        _quoted("-"),  # request_transform_status
    ))


class AccessLogWriter:
    """ALB access logs of one load balancer under ``directory`` (a
    :class:`~tierlake.edge.lb.model.RequestObserver`).

    ``clock`` gives the wall time of deliveries (their folder date and end time);
    ``rotate_seconds`` is measured on the monotonic clock. Call :meth:`close` (or
    ``await`` :meth:`aclose` from async code) to deliver the last file.
    """

    def __init__(self, directory: Path, elb_name: str, *, rotate_seconds: float = 60.0,
                 clock: Callable[[], float] = time.time, account_id: str = ACCOUNT_ID,
                 region: str = REGION, ip_address: str = "127.0.0.1",
                 max_pending_lines: int = MAX_PENDING_LINES) -> None:
        if not _NAME.match(elb_name):
            raise ValueError(
                f"load balancer name {elb_name!r} is not valid: ALB names are 1-32 letters, "
                "digits and hyphens, not beginning or ending with a hyphen")
        if rotate_seconds <= 0:
            raise ValueError(f"rotate_seconds must be positive, not {rotate_seconds}")
        self.directory = Path(directory)
        self.elb_name = elb_name
        self.rotate_seconds = rotate_seconds
        self.clock = clock
        self.account_id = account_id
        self.region = region
        self.ip_address = ip_address
        self.max_pending_lines = max_pending_lines
        self.dropped_lines = 0  # lines lost (disk errors, or too many waiting)
        self.delivered: list[Path] = []  # files delivered, oldest first
        self._pending: list[str] = []
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name=f"accesslog-{elb_name}",
                                        daemon=True)
        self._thread.start()

    @property
    def region_dir(self) -> Path:
        return (self.directory / "AWSLogs" / self.account_id / "elasticloadbalancing"
                / self.region)

    def request_done(self, entry: AccessLogEntry) -> None:
        """Queue the request's line; never blocks on the disk, never raises."""
        try:
            line = format_entry(entry, account_id=self.account_id, region=self.region)
        except Exception:  # a malformed entry must not break the request (logged)
            log.exception("lb.access_log_bad_entry", elb=self.elb_name)
            self._drop(1)
            return
        with self._lock:
            if self._closed or len(self._pending) >= self.max_pending_lines:
                self.dropped_lines += 1
                return
            self._pending.append(line)

    def _drop(self, lines: int) -> None:
        with self._lock:  # counted from the balancer's thread and the writer's
            self.dropped_lines += lines

    def close(self) -> None:
        """Write what is queued and deliver the last file (blocks until done)."""
        with self._lock:
            self._closed = True
        self._wake.set()
        self._thread.join()

    async def aclose(self) -> None:
        await asyncio.to_thread(self.close)

    def delivery_path(self, end: float) -> Path:
        """Where a file whose period ends at ``end`` (epoch seconds) is delivered."""
        at = datetime.fromtimestamp(end, UTC)
        suffix = "".join(secrets.choice(_RANDOM) for _ in range(8))
        name = (f"{self.account_id}_elasticloadbalancing_{self.region}_app.{self.elb_name}."
                f"{resource_id(self.elb_name)}_{at:%Y%m%dT%H%MZ}_{self.ip_address}_{suffix}"
                ".log.gz")
        return self.region_dir / f"{at:%Y}" / f"{at:%m}" / f"{at:%d}" / name

    # the writer thread

    def _run(self) -> None:
        current: _OpenFile | None = None
        began = time.monotonic()
        while True:
            left = self.rotate_seconds - (time.monotonic() - began)
            self._wake.wait(timeout=max(0.0, min(1.0, left)))
            self._wake.clear()
            with self._lock:
                lines, self._pending = self._pending, []
                closing = self._closed
            if lines:
                if current is None:
                    current = self._open()
                if current is not None:
                    current = self._write(current, lines)
                else:
                    self._drop(len(lines))
            if closing or time.monotonic() - began >= self.rotate_seconds:
                if current is not None:
                    self._deliver(current)
                current = None
                began = time.monotonic()
            if closing:
                return

    def _open(self) -> _OpenFile | None:
        tmp = self.region_dir / f".{self.elb_name}.{secrets.token_hex(6)}.log.gz.tmp"
        try:
            tmp.parent.mkdir(parents=True, exist_ok=True)
            raw = open(tmp, "wb")  # noqa: SIM115 - kept open across writes, closed on delivery
        except OSError as exc:
            log.error("lb.access_log_write_failed", elb=self.elb_name, path=str(tmp),
                      error=str(exc))
            return None
        return _OpenFile(tmp, raw, gzip.GzipFile(fileobj=raw, mode="wb"))

    def _write(self, file: _OpenFile, lines: list[str]) -> _OpenFile | None:
        try:
            file.gz.write(("\n".join(lines) + "\n").encode())
            file.lines += len(lines)
            return file
        except OSError as exc:
            self._fail(file, exc, len(lines))
            return None

    def _deliver(self, file: _OpenFile) -> None:
        final = self.delivery_path(self.clock())
        try:
            file.gz.close()
            file.raw.flush()
            os.fsync(file.raw.fileno())
            file.raw.close()
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(file.tmp, final)
        except OSError as exc:
            self._fail(file, exc, 0)
            return
        self.delivered.append(final)
        log.info("lb.access_log_delivered", elb=self.elb_name, path=str(final),
                 lines=file.lines)

    def _fail(self, file: _OpenFile, exc: OSError, unwritten: int) -> None:
        lost = file.lines + unwritten
        self._drop(lost)
        log.error("lb.access_log_write_failed", elb=self.elb_name, path=str(file.tmp),
                  error=str(exc), dropped_lines=lost)
        with suppress(OSError):
            file.gz.close()
        with suppress(OSError):
            file.raw.close()
        with suppress(OSError):
            file.tmp.unlink(missing_ok=True)


class _OpenFile:
    """The file being written: its hidden path, the raw file and the gzip stream on it."""

    def __init__(self, tmp: Path, raw: IO[bytes], gz: gzip.GzipFile) -> None:
        self.tmp = tmp
        self.raw = raw
        self.gz = gz
        self.lines = 0
