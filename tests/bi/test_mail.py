"""Mail over real SMTP: the stdlib client against the aiosmtpd catcher on a free port."""

from __future__ import annotations

from pathlib import Path

import pytest

from servers import free_port
from tierlake.bi.mail import (
    Attachment,
    MailCatcher,
    MailError,
    list_messages,
    mail_dir,
    read_message,
    send,
)
from tierlake.config import Settings

pytestmark = pytest.mark.timeout(60)


def _settings(tmp_path: Path, port: int) -> Settings:
    return Settings(data_dir=tmp_path, bi={"smtp_port": port, "mail_from": "bi@tierlake.test"})


def test_a_sent_message_arrives_with_its_html_and_attachments(tmp_path: Path) -> None:
    settings = _settings(tmp_path, free_port())
    pdf = b"%PDF-1.4 not really a pdf \x00\xff"
    with MailCatcher("127.0.0.1", settings.bi.smtp_port, mail_dir(settings)):
        send(settings, ["first@tierlake.test"], "First", "<p>one</p>")
        send(settings, ["a@tierlake.test", "b@tierlake.test"], "Sales report",
             "<h1>Sales</h1>", [Attachment("sales.html", b"<html>report</html>", "text/html"),
                                Attachment("sales.pdf", pdf, "application/pdf")])
    messages = list_messages(mail_dir(settings))
    assert [m.subject for m in messages] == ["Sales report", "First"]  # newest first
    newest = messages[0]
    assert newest.to == ("a@tierlake.test", "b@tierlake.test")
    assert newest.sender == "bi@tierlake.test"
    assert newest.attachments == ("sales.html", "sales.pdf")
    view = read_message(mail_dir(settings), newest.key)
    assert view.html is not None and "<h1>Sales</h1>" in view.html
    assert [(a.filename, a.content, a.mime_type) for a in view.attachments] == [
        ("sales.html", b"<html>report</html>", "text/html"),
        ("sales.pdf", pdf, "application/pdf")]
    with pytest.raises(KeyError):
        read_message(mail_dir(settings), "no-such-key")


def test_the_catcher_keeps_the_newest_messages_and_deletes_older_ones(tmp_path: Path) -> None:
    settings = _settings(tmp_path, free_port())
    with MailCatcher("127.0.0.1", settings.bi.smtp_port, mail_dir(settings), keep=3):
        for n in range(1, 6):  # sent one after the other, in milliseconds
            send(settings, ["ops@tierlake.test"], f"Alert {n}", f"<p>{n}</p>")
            kept = [m.subject for m in list_messages(mail_dir(settings))]
            assert kept == [f"Alert {i}" for i in range(n, max(0, n - 3), -1)]
    files = [p for sub in ("new", "cur") for p in (mail_dir(settings) / sub).iterdir()]
    assert len(files) == 3


def test_no_server_is_a_clear_error(tmp_path: Path) -> None:
    settings = _settings(tmp_path, free_port())  # nothing listens there
    with pytest.raises(MailError) as caught:
        send(settings, ["x@tierlake.test"], "Lost", "<p>lost</p>")
    message = str(caught.value)
    assert f"127.0.0.1:{settings.bi.smtp_port}" in message
    assert "tierlake mail serve" in message
    assert caught.value.transient


def test_the_catcher_says_when_its_port_is_taken(tmp_path: Path) -> None:
    port = free_port()
    with MailCatcher("127.0.0.1", port, tmp_path / "one"):
        second = MailCatcher("127.0.0.1", port, tmp_path / "two")
        with pytest.raises(MailError, match="SMTP_PORT"):
            second.start()


def test_an_empty_or_absent_maildir_lists_nothing(tmp_path: Path) -> None:
    assert list_messages(tmp_path / "never-created") == []
    port = free_port()
    with MailCatcher("127.0.0.1", port, tmp_path / "mail"):
        pass
    assert list_messages(tmp_path / "mail") == []


def test_a_message_needs_a_recipient(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="recipient"):
        send(_settings(tmp_path, free_port()), [], "Nobody", "<p>x</p>")
