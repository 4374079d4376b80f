"""Email: building the message (pure) and the two transports, SMTP and the local outbox folder.

Everything that goes into a header passes domain.header_text first (no CR/LF or any other
control character), and the stdlib's SMTP policy refuses line breaks on top of that. The
Message-ID is stable per delivery, so a message sent twice (a sender killed between SMTP's
"250 OK" and the commit) is collapsed by mail clients; In-Reply-To/References point at a
per-ticket root id so a ticket's mails form one thread.
"""
from __future__ import annotations

import datetime as dt
import email.policy
import os
import smtplib
import socket
import ssl
import uuid
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

from services.notify.domain import header_text, message_id_part, normalise_address

MESSAGE_ID_DOMAIN = "tierline"


class DeliveryError(Exception):
    """A failed attempt. `permanent`: trying again cannot help (address refused, hook gone)."""

    def __init__(self, message: str, *, permanent: bool = False):
        super().__init__(message)
        self.permanent = permanent


def _address(name: str, address: str) -> Address:
    username, domain = address.split("@", 1)
    return Address(display_name=header_text(name, 100), username=username, domain=domain)


def sender_address(mail_from: str) -> tuple[str, str]:
    """(display name, address) of the configured From; refuses anything that is not one mailbox."""
    name, address = parseaddr(mail_from or "")
    address = normalise_address(address)
    if address is None:
        raise ValueError(f"TIERLINE_MAIL_FROM: not a mail address: {mail_from!r}")
    return header_text(name, 100), address


def build_message(*, delivery_id: str, mail_from: str, to_name: str, to_address: str, subject: str,
                  text: str, html: str, ticket_key: str | None, date: dt.datetime) -> EmailMessage:
    from_name, from_address = sender_address(mail_from)
    to = normalise_address(to_address)
    if to is None:
        raise DeliveryError(f"not a mail address: {header_text(to_address, 80)!r}", permanent=True)
    msg = EmailMessage(policy=email.policy.SMTP)
    msg["Subject"] = header_text(subject, 250)
    msg["From"] = _address(from_name, from_address)
    msg["To"] = _address(to_name, to)
    msg["Date"] = format_datetime(date.astimezone(dt.timezone.utc))
    msg["Message-ID"] = f"<{message_id_part(delivery_id)}@{MESSAGE_ID_DOMAIN}>"
    if ticket_key:
        root = f"<{message_id_part(ticket_key)}@{MESSAGE_ID_DOMAIN}>"
        msg["In-Reply-To"] = root
        msg["References"] = root
    msg["Auto-Submitted"] = "auto-generated"  # RFC 3834: no out-of-office loops
    msg.set_content(text, subtype="plain", charset="utf-8")
    msg.add_alternative(html, subtype="html", charset="utf-8")
    return msg


class FolderTransport:
    """The embedded mode's local outbox: one <delivery id>.eml per message. Writing the same
    delivery twice overwrites the same file, so a retry never makes a second message."""

    def __init__(self, directory: Path):
        self.directory = Path(directory)

    def send(self, msg: EmailMessage, delivery_id: str) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        name = message_id_part(delivery_id)
        tmp = self.directory / f".{name}.{uuid.uuid4().hex}.tmp"
        tmp.write_bytes(msg.as_bytes())
        os.replace(tmp, self.directory / f"{name}.eml")

    def close(self) -> None:
        pass


class SmtpTransport:
    """smtp://user:pass@host:port?starttls=true or smtps://... One connection per sending pass,
    opened on first use; a failed connect fails the rest of the pass fast."""

    def __init__(self, url: str, *, timeout: float = 10.0):
        parts = urlsplit(url)
        if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
            raise ValueError("TIERLINE_SMTP_URL: expected smtp://[user:pass@]host[:port][?starttls=true] or smtps://...")
        self.ssl = parts.scheme == "smtps"
        self.host, self.port = parts.hostname, parts.port or (465 if self.ssl else 25)
        self.username = unquote(parts.username) if parts.username else None
        self.password = unquote(parts.password) if parts.password else None
        self.starttls = parse_qs(parts.query).get("starttls", ["false"])[0].lower() in ("1", "true", "yes")
        self.timeout = timeout
        # Built once and only for TLS: loading the CA store took 30-100 ms of CPU per sending
        # pass (docs/performance.md).
        self._context = ssl.create_default_context() if self.ssl or self.starttls else None
        self._conn: smtplib.SMTP | None = None
        self._broken: DeliveryError | None = None

    def _connect(self) -> smtplib.SMTP:
        if self._broken:
            raise self._broken
        if self._conn is None:
            try:
                if self.ssl:
                    conn = smtplib.SMTP_SSL(self.host, self.port, timeout=self.timeout, context=self._context)
                else:
                    conn = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
                    if self.starttls:
                        conn.starttls(context=self._context)
                if self.username:
                    conn.login(self.username, self.password or "")
            except (OSError, smtplib.SMTPException) as exc:
                self._broken = DeliveryError(f"SMTP {self.host}:{self.port} unavailable: {type(exc).__name__}")
                raise self._broken from None
            self._conn = conn
        return self._conn

    def send(self, msg: EmailMessage, delivery_id: str) -> None:
        _, from_address = parseaddr(str(msg["From"]))
        _, to_address = parseaddr(str(msg["To"]))
        for attempt in (1, 2):  # a pooled connection the server closed is reopened once
            conn = self._connect()
            try:
                conn.send_message(msg, from_addr=from_address, to_addrs=[to_address])
                return
            except smtplib.SMTPServerDisconnected:
                self._conn = None
                if attempt == 2:
                    raise DeliveryError("SMTP server disconnected") from None
            except smtplib.SMTPRecipientsRefused as exc:
                code = next(iter(exc.recipients.values()))[0]
                raise DeliveryError(f"SMTP refused the recipient ({code})", permanent=500 <= code < 600) from None
            except smtplib.SMTPResponseException as exc:
                # 5xx for the message itself is final; a refused sender or auth is our configuration
                # (fixed by an admin, then retried), everything 4xx is temporary.
                permanent = 500 <= exc.smtp_code < 600 and not isinstance(exc, smtplib.SMTPSenderRefused)
                raise DeliveryError(f"SMTP answered {exc.smtp_code}", permanent=permanent) from None
            except (OSError, socket.timeout, smtplib.SMTPException) as exc:
                self._conn = None
                raise DeliveryError(f"SMTP error: {type(exc).__name__}") from None

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.quit()
            except (OSError, smtplib.SMTPException):
                pass
        self._conn, self._broken = None, None


def transport_for(smtp_url: str, outbox_dir: Path):
    return SmtpTransport(smtp_url) if smtp_url else FolderTransport(outbox_dir)
