"""Mail for the BI tier: sending reports and alerts over SMTP, and a catcher that keeps them.

QuickSight e-mails scheduled reports and threshold alerts to subscribers
(https://docs.aws.amazon.com/quicksight/latest/user/sending-reports.html,
https://docs.aws.amazon.com/quicksight/latest/user/threshold-alerts.html); here the BI tier
speaks plain SMTP to ``bi.smtp_host:bi.smtp_port`` with the standard library. Under
`tierlake up` that port is an embedded catcher (aiosmtpd) that delivers nothing outside: it
keeps every message in a Maildir under ``<data_dir>/mail``, and the BI tier's Mail page lists
them, so a person sees what would have been sent without a mail server. It keeps the newest
``bi.mail_keep`` (500) and deletes older ones as new ones arrive, so a long-running system's
hourly alerts do not fill the disk.
"""

from __future__ import annotations

import mailbox
import re
import smtplib
import socket
from collections.abc import Sequence
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from email.utils import formatdate, make_msgid, parsedate_to_datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP as SMTPServer
from aiosmtpd.smtp import Envelope, Session

from tierlake.errors import TierlakeError

if TYPE_CHECKING:
    from tierlake.config import Settings

log = structlog.get_logger(__name__)

SEND_TIMEOUT_SECONDS = 30.0
ENVELOPE_TO_HEADER = "X-Tierlake-Envelope-To"  # who the catcher received it for


class MailError(TierlakeError, ConnectionError):
    """The SMTP server refused or could not be reached; the message names it and the fix."""

    transient = True


@dataclass(frozen=True)
class Attachment:
    filename: str
    content: bytes
    mime_type: str = "application/octet-stream"


@dataclass(frozen=True)
class MailInfo:
    """One message the catcher holds, as the Mail page lists it."""

    key: str
    sender: str
    to: tuple[str, ...]
    subject: str
    date: float  # epoch seconds, from the Date header (delivery time if it has none)
    size: int
    received: float  # when the catcher stored it (epoch seconds)
    attachments: tuple[str, ...] = ()


@dataclass(frozen=True)
class MailView:
    """One message opened: its headers, its HTML (or text) body and its attachments."""

    info: MailInfo
    html: str | None
    text: str | None
    attachments: tuple[Attachment, ...] = field(default_factory=tuple)


def mail_dir(settings: Settings) -> Path:
    """Where the catcher of `tierlake up` keeps what it receives."""
    return settings.data_dir / "mail"


def build_message(sender: str, to: Sequence[str], subject: str, html: str,
                  attachments: Sequence[Attachment] = (), text: str | None = None
                  ) -> EmailMessage:
    """A MIME message: a text part, the HTML alternative, then the attachments."""
    if not to:
        raise ValueError("a mail needs at least one recipient: list them in `to`")
    message = EmailMessage()
    message["From"] = sender
    message["To"] = ", ".join(to)
    message["Subject"] = subject
    message["Date"] = formatdate(usegmt=True)
    message["Message-ID"] = make_msgid(domain=sender.rpartition("@")[2] or "tierlake.test")
    message.set_content(text or f"{subject}\n\nThis message is HTML: open it in a mail reader "
                                "that shows HTML, or see the attachments.")
    message.add_alternative(html, subtype="html")
    for a in attachments:
        maintype, _, subtype = a.mime_type.partition("/")
        message.add_attachment(a.content, maintype=maintype, subtype=subtype or "octet-stream",
                               filename=a.filename)
    return message


def send(settings: Settings, to: Sequence[str], subject: str, html: str,
         attachments: Sequence[Attachment] = (), *, text: str | None = None) -> str:
    """Send one message to ``bi.smtp_host:bi.smtp_port`` from ``bi.mail_from``; returns its
    Message-ID. Raises MailError when the server cannot be reached or refuses it."""
    bi = settings.bi
    message = build_message(bi.mail_from, to, subject, html, attachments, text)
    where = f"{bi.smtp_host}:{bi.smtp_port}"
    try:
        with smtplib.SMTP(bi.smtp_host, bi.smtp_port, timeout=SEND_TIMEOUT_SECONDS) as smtp:
            refused = smtp.send_message(message)
    except (OSError, smtplib.SMTPException) as exc:
        log.warning("bi.mail_failed", server=where, subject=subject, error=str(exc))
        raise MailError(
            f"could not send {subject!r} through the SMTP server at {where}: {exc}. Start a "
            "mail server there (`tierlake mail serve` runs the catcher), or set "
            "TIERLAKE_BI__SMTP_HOST / TIERLAKE_BI__SMTP_PORT to yours") from exc
    if refused:
        log.warning("bi.mail_recipients_refused", server=where, refused=sorted(refused))
    log.info("bi.mail_sent", server=where, to=list(to), subject=subject,
             attachments=[a.filename for a in attachments])
    return str(message["Message-ID"])


class _MaildirHandler:
    """aiosmtpd's handler: every message accepted goes into the Maildir, as received; then
    all but the newest ``keep`` are deleted."""

    def __init__(self, maildir: Path, keep: int) -> None:
        self.maildir = maildir
        self.keep = keep

    async def handle_DATA(self, server: SMTPServer, session: Session,
                          envelope: Envelope) -> str:
        content = envelope.original_content or b""
        rcpt = ", ".join(envelope.rcpt_tos).encode()
        # Delivery adds the envelope's recipients the way an MDA adds Delivered-To.
        data = f"{ENVELOPE_TO_HEADER}: ".encode() + rcpt + b"\r\n" + content
        box = mailbox.Maildir(self.maildir, create=True)
        key = box.add(mailbox.MaildirMessage(data))
        log.info("bi.mail_caught", key=key, mail_from=envelope.mail_from,
                 to=list(envelope.rcpt_tos), size=len(content))
        _keep_newest(self.maildir, self.keep)
        return "250 Message accepted for delivery"


def _keep_newest(maildir: Path, keep: int) -> None:
    """Delete all but the ``keep`` newest messages (in the Mail page's order)."""
    found = []
    for key, path in _messages_dir_files(maildir).items():
        try:
            found.append((_delivery_order(key, path), path))
        except FileNotFoundError:
            continue
    found.sort(reverse=True)
    for _, path in found[keep:]:
        path.unlink(missing_ok=True)
    if len(found) > keep:
        log.info("bi.mail_pruned", deleted=len(found) - keep, kept=keep)


# How the standard library's ``mailbox.Maildir`` names a message: "<seconds>.M<microseconds>
# P<pid>Q<count>.<host>" (the Maildir convention).
_KEY = re.compile(r"^(\d+)\.M(\d+)P\d+Q(\d+)\.")


def _delivery_order(key: str, path: Path) -> tuple[int, int, str]:
    """When the message was delivered, in ns, to order messages: from its Maildir name (to the
    microsecond, then the delivering process's count), else the file's mtime (whose clock
    ticks are milliseconds apart, so messages in one tick would tie)."""
    match = _KEY.match(key)
    if match:
        return int(match[1]) * 10**9 + int(match[2]) * 1000, int(match[3]), key
    return path.stat().st_mtime_ns, 0, key


class MailCatcher:
    """An SMTP server on ``host:port`` that keeps what it receives in ``maildir``.

    It runs in its own thread (aiosmtpd's Controller), so the control plane, the CLI and tests
    start and stop it the same way."""

    def __init__(self, host: str, port: int, maildir: Path, keep: int = 500) -> None:
        self.host, self.port, self.maildir, self.keep = host, port, maildir, keep
        self._controller: Controller | None = None

    def start(self) -> None:
        for sub in ("tmp", "new", "cur"):  # a Maildir's three folders, even in an empty dir
            (self.maildir / sub).mkdir(parents=True, exist_ok=True)
        controller = Controller(_MaildirHandler(self.maildir, self.keep), hostname=self.host,
                                port=self.port, ready_timeout=10.0)
        try:
            # aiosmtpd would wait out its ready_timeout on a taken port; ask the OS first.
            with socket.socket(socket.AF_INET6 if ":" in self.host else socket.AF_INET) as probe:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                probe.bind((self.host, self.port))
            controller.start()
        except (OSError, RuntimeError) as exc:
            raise MailError(
                f"the mail catcher cannot listen on {self.host}:{self.port}: {exc}. Free the "
                "port or set TIERLAKE_BI__SMTP_PORT to another one") from exc
        self._controller = controller
        log.info("bi.mail_catcher_started", host=self.host, port=self.port,
                 maildir=str(self.maildir))

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None
            log.info("bi.mail_catcher_stopped", host=self.host, port=self.port)

    def __enter__(self) -> MailCatcher:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _parse(data: bytes) -> EmailMessage:
    message = BytesParser(policy=policy.default).parsebytes(data)
    assert isinstance(message, EmailMessage)  # policy.default builds EmailMessage
    return message


def _info(key: str, message: EmailMessage, size: int, delivered: float) -> MailInfo:
    try:
        when = parsedate_to_datetime(str(message["Date"])).timestamp()
    except (TypeError, ValueError):
        when = delivered
    to = str(message[ENVELOPE_TO_HEADER] or message["To"] or "")
    names = tuple(str(p.get_filename()) for p in message.iter_attachments() if p.get_filename())
    return MailInfo(key=key, sender=str(message["From"] or ""),
                    to=tuple(a.strip() for a in to.split(",") if a.strip()),
                    subject=str(message["Subject"] or ""), date=when, size=size,
                    received=delivered, attachments=names)


def _messages_dir_files(maildir: Path) -> dict[str, Path]:
    files: dict[str, Path] = {}
    for sub in ("new", "cur"):
        for path in (maildir / sub).iterdir():
            if not path.name.startswith("."):
                files[path.name.split(":", 1)[0]] = path
    return files


def list_messages(maildir: Path) -> list[MailInfo]:
    """What the catcher holds, newest first; an absent folder holds nothing."""
    if not (maildir / "new").is_dir():
        return []
    found = []
    for key, path in _messages_dir_files(maildir).items():
        try:
            data = path.read_bytes()
            order = _delivery_order(key, path)
        except FileNotFoundError:  # moved or removed meanwhile
            continue
        found.append((order, _info(key, _parse(data), len(data), order[0] / 1e9)))
    found.sort(key=lambda pair: pair[0], reverse=True)
    return [info for _, info in found]


def read_message(maildir: Path, key: str) -> MailView:
    """One message by its key (from ``list_messages``); KeyError for an unknown key."""
    files = _messages_dir_files(maildir) if (maildir / "new").is_dir() else {}
    path = files.get(key)
    if path is None:
        raise KeyError(key)
    data = path.read_bytes()
    message = _parse(data)
    body_html = message.get_body(("html",))
    body_text = message.get_body(("plain",))
    attachments = tuple(
        Attachment(str(p.get_filename()), _payload(p), p.get_content_type())
        for p in message.iter_attachments() if p.get_filename())
    return MailView(info=_info(key, message, len(data), _delivery_order(key, path)[0] / 1e9),
                    html=_text(body_html), text=_text(body_text), attachments=attachments)


def _payload(part: Any) -> bytes:
    payload = part.get_payload(decode=True)
    return payload if isinstance(payload, bytes) else b""


def _text(part: Any) -> str | None:
    if part is None:
        return None
    content = part.get_content()
    return content if isinstance(content, str) else None
