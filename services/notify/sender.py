"""The sender: delivers planned rows outside the consumer, with persisted retries.

One pass claims due rows (queued, or retrying and due, or `sending` for longer than the lease:
a sender that died mid-send) with FOR UPDATE SKIP LOCKED on PostgreSQL, marks them `sending`
and commits; then sends each and records the outcome in its own transaction, with
notify.delivered / notify.failed in the outbox. A failure is retried with exponential backoff and
jitter; after the last attempt (or at once for a permanent error) the row is dead and the next
channel in the recipient's preference order, if any, gets a new row (fallback).

Residual risk, by design: a sender killed after the server accepted a message but before the
commit sends it again after the lease. The stable Message-ID lets mail clients collapse that;
webhook receivers get the same X-Tierline-Delivery id to deduplicate on.

The passes run on one small thread, woken by an APScheduler tick (notify_retry_seconds) and
right after the consumer commits new rows, and stopped with the scheduler.
"""
from __future__ import annotations

import datetime as dt
import logging
import random
import threading
import time
import uuid
from dataclasses import dataclass

import requests
from apscheduler.events import EVENT_SCHEDULER_SHUTDOWN, EVENT_SCHEDULER_STARTED
from sqlalchemy import and_, or_, select

from services.notify import chat, domain, readmodel
from services.notify.mail import DeliveryError, build_message, sender_address, transport_for
from services.notify.models import Delivery, Recipient
from shared import metrics, outbox
from shared.bus.base import TRANSIENT_ERRORS
from shared.clock import as_utc
from shared.db import Database, insert_ignoring_duplicates
from shared.events import new_event

log = logging.getLogger(__name__)
LAST_CHANNEL_RETRY_CAP = 900.0  # seconds between attempts once the bounded attempts are used up


@dataclass(frozen=True)
class Claim:
    """A delivery taken for one attempt (the lease id proves it is still ours)."""
    id: str
    lease_id: str
    channel: str
    recipient: str
    recipient_name: str
    subject: str
    body_text: str
    body_html: str
    ticket_id: str | None
    ticket_key: str | None
    source_event_id: str
    source_event_type: str
    config: dict | None


class Sender:
    def __init__(self, db: Database, *, clock, settings, batch: int = 50, lease_seconds: float = 60.0,
                 rand=random.random):
        self.db, self.clock = db, clock
        sender_address(settings.mail_from)  # a bad From is a configuration error at start, not per mail
        self.mail_from = settings.mail_from
        self.max_attempts, self.backoff_base = settings.notify_max_attempts, settings.notify_backoff_base
        self.give_up_after = dt.timedelta(seconds=settings.notify_give_up_seconds)
        self.batch, self.lease = batch, dt.timedelta(seconds=lease_seconds)
        self.rand = rand
        self.transport = transport_for(settings.smtp_url, settings.outbox_dir())
        self.http = requests.Session()
        self._wake, self._stop = threading.Event(), threading.Event()
        self._thread: threading.Thread | None = None

    # --- background ------------------------------------------------------------------------
    def attach(self, scheduler) -> None:
        """Run with the service's scheduler: start with it, stop (finishing the pass) with it."""
        scheduler.add_listener(self._on_scheduler, EVENT_SCHEDULER_STARTED | EVENT_SCHEDULER_SHUTDOWN)

    def _on_scheduler(self, event) -> None:
        if event.code == EVENT_SCHEDULER_STARTED:
            self.start()
        elif event.code == EVENT_SCHEDULER_SHUTDOWN:
            self.stop()

    def wake(self) -> None:
        self._wake.set()

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="notify-sender", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread:
            self._thread.join(timeout)
            self._thread = None

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(30.0)  # the tick wakes it; the timeout is only a safety net
            self._wake.clear()     # before the pass: a wake during it runs the next one at once
            if self._stop.is_set():
                return
            try:
                while self.run_once() == self.batch and not self._stop.is_set():
                    pass
            except Exception as exc:  # database away: rows stay due (or leased) for the next pass
                log.warning("notify sending pass failed: %r", exc)

    # --- one pass --------------------------------------------------------------------------
    def run_once(self) -> int:
        """Claim due deliveries and attempt each once; returns how many were claimed."""
        claims = self.claim()
        try:
            for index, claim in enumerate(claims):
                if self._stop.is_set():  # shutting down: hand the rest back untried
                    self._release(claims[index:])
                    break
                self.attempt(claim)
        finally:
            self.transport.close()
        return len(claims)

    def claim(self) -> list[Claim]:
        now = self.clock.now()
        with self.db.transaction() as session:
            query = (select(Delivery)
                     .where(or_(and_(Delivery.state.in_(("queued", "retrying")), Delivery.next_attempt_at <= now),
                                and_(Delivery.state == "sending", Delivery.claimed_at <= now - self.lease)))
                     .order_by(Delivery.urgent.desc(), Delivery.next_attempt_at).limit(self.batch))
            if self.db.is_postgres:
                query = query.with_for_update(skip_locked=True)
            rows = session.scalars(query).all()
            recipients = readmodel.recipients_by_address(session, {r.recipient for r in rows})
            claims = []
            for row in rows:
                if row.state == "sending":
                    log.warning("delivery %s was left in sending (sender stopped mid-send?): trying again", row.id)
                row.state, row.lease_id, row.claimed_at, row.updated_at = "sending", str(uuid.uuid4()), now, now
                row.attempts += 1
                claims.append(Claim(
                    id=row.id, lease_id=row.lease_id, channel=row.channel, recipient=row.recipient,
                    recipient_name=row.recipient_name, subject=row.subject, body_text=row.body_text,
                    body_html=row.body_html, ticket_id=row.ticket_id, ticket_key=row.ticket_key,
                    source_event_id=row.source_event_id, source_event_type=row.source_event_type,
                    config=_channel_config(recipients.get(row.recipient), row.channel)))
        return claims

    def attempt(self, claim: Claim) -> None:
        try:
            self.send(claim)
        except DeliveryError as exc:
            self._record(lambda: self._failed(claim, str(exc), permanent=exc.permanent))
        except Exception as exc:  # a bug must not stop the other deliveries
            log.exception("delivery %s failed unexpectedly", claim.id)
            self._record(lambda: self._failed(claim, f"internal error: {type(exc).__name__}", permanent=False))
        else:
            self._record(lambda: self._sent(claim))

    def _record(self, outcome, patience: float = 300.0) -> None:
        """The attempt has happened; its outcome must reach the database even while it restarts,
        or the lease would expire and the message be sent a second time."""
        delay, deadline = 0.5, time.monotonic() + patience
        while True:
            try:
                return outcome()
            except TRANSIENT_ERRORS as exc:
                if time.monotonic() > deadline:
                    raise
                log.warning("cannot record a delivery outcome yet (%r); retrying in %.1fs", exc, delay)
                time.sleep(delay)
                delay = min(delay * 2, 5.0)

    def send(self, claim: Claim) -> None:
        if claim.channel == "email":
            msg = build_message(delivery_id=claim.id, mail_from=self.mail_from, to_name=claim.recipient_name,
                                to_address=claim.recipient, subject=claim.subject, text=claim.body_text,
                                html=claim.body_html, ticket_key=claim.ticket_key, date=self.clock.now())
            self.transport.send(msg, claim.id)
            return
        if claim.config is None:
            raise DeliveryError(f"the recipient has no {claim.channel} channel any more", permanent=True)
        text = chat.chat_text(claim.subject, claim.body_text)
        if claim.channel == "slack":
            chat.send_slack(claim.config, text, session=self.http)
        elif claim.channel == "telegram":
            chat.send_telegram(claim.config, text, session=self.http)
        elif claim.channel == "webhook":
            payload = {"delivery_id": claim.id, "event_type": claim.source_event_type,
                       "event_id": claim.source_event_id, "ticket": {"id": claim.ticket_id, "key": claim.ticket_key},
                       "recipient": {"email": claim.recipient, "name": claim.recipient_name},
                       "subject": claim.subject, "text": claim.body_text}
            chat.send_webhook(claim.config, payload, delivery_id=claim.id, event_type=claim.source_event_type,
                              session=self.http)
        else:
            raise DeliveryError(f"unknown channel {claim.channel!r}", permanent=True)

    # --- outcomes --------------------------------------------------------------------------
    def _ours(self, session, claim: Claim) -> Delivery | None:
        row = session.get(Delivery, claim.id, with_for_update=True)
        if row is None or row.state != "sending" or row.lease_id != claim.lease_id:
            log.warning("delivery %s was taken over by another sender; outcome not recorded", claim.id)
            return None
        return row

    def _sent(self, claim: Claim) -> None:
        now = self.clock.now()
        with self.db.transaction() as session:
            row = self._ours(session, claim)
            if row is None:
                return
            row.state, row.sent_at, row.updated_at, row.lease_id, row.last_error = "sent", now, now, None, None
            outbox.add(session, _outcome("notify.delivered", row, None))
        metrics.NOTIFICATIONS.labels(channel=claim.channel, outcome="sent").inc()
        log.info("delivery %s (%s) sent by %s", claim.id, claim.source_event_type, claim.channel)

    def _failed(self, claim: Claim, error: str, *, permanent: bool) -> None:
        now = self.clock.now()
        with self.db.transaction() as session:
            row = self._ours(session, claim)
            if row is None:
                return
            row.last_error, row.updated_at, row.lease_id = error[:500], now, None
            fallback = self._fallback_channel(session, row)
            if permanent or (row.attempts >= self.max_attempts and (
                    fallback is not None or now - as_utc(row.created_at) >= self.give_up_after)):
                row.state = "dead"
                outbox.add(session, _outcome("notify.failed", row, row.last_error))
                if fallback is not None:
                    self._plan_fallback(session, row, fallback, now)
            else:
                # Past the attempts with no other channel left (usually email): keep trying, as
                # a mail server queues, so a mail relay down for minutes loses nothing.
                row.state = "retrying"
                cap = LAST_CHANNEL_RETRY_CAP if row.attempts >= self.max_attempts else domain.BACKOFF_CAP
                row.next_attempt_at = now + dt.timedelta(
                    seconds=domain.backoff_seconds(row.attempts, self.backoff_base, cap=cap, rand=self.rand))
            outcome = row.state
        metrics.NOTIFICATIONS.labels(channel=claim.channel, outcome=outcome).inc()
        log.warning("delivery %s by %s failed (attempt %d): %s -> %s", claim.id, claim.channel,
                    row.attempts, error, outcome)

    def _fallback_channel(self, session, row: Delivery) -> str | None:
        """The recipient's next preferred channel not yet tried for this message, if any."""
        recipient = session.get(Recipient, row.recipient)
        channels = (recipient.channels if recipient else None) or list(domain.DEFAULT_CHANNELS)
        tried = set(session.scalars(select(Delivery.channel).where(
            Delivery.source_event_id == row.source_event_id, Delivery.recipient == row.recipient)))
        found = domain.next_channel(channels, tried)
        return found[1]["type"] if found else None

    def _plan_fallback(self, session, dead: Delivery, channel: str, now: dt.datetime) -> None:
        columns = ("source_event_id", "source_event_type", "correlation_id", "ticket_id", "ticket_key", "recipient",
                   "recipient_name", "role", "language", "subject", "body_text", "body_html", "urgent")
        insert_ignoring_duplicates(session, Delivery.__table__, {
            **{c: getattr(dead, c) for c in columns}, "id": str(uuid.uuid4()), "channel": channel,
            "state": "queued", "attempts": 0, "next_attempt_at": now, "fallback_of": dead.id,
            "created_at": now, "updated_at": now})
        log.info("delivery %s dead on %s: falling back to %s", dead.id, dead.channel, channel)
        self._wake.set()

    def _release(self, claims: list[Claim]) -> None:
        with self.db.transaction() as session:
            for claim in claims:
                row = self._ours(session, claim)
                if row is not None:
                    row.state, row.lease_id, row.attempts = "queued", None, max(0, row.attempts - 1)


def _channel_config(recipient: Recipient | None, channel: str) -> dict | None:
    for config in (recipient.channels if recipient else None) or ():
        if config.get("type") == channel:
            return dict(config)
    return {"type": "email"} if channel == "email" else None


def _outcome(event_type: str, row: Delivery, error: str | None):
    return new_event(event_type, {
        "delivery_id": row.id, "channel": row.channel, "recipient": row.recipient,
        "source_event_id": row.source_event_id, "source_event_type": row.source_event_type,
        "attempts": row.attempts, "error": error},
        producer="notify", ticket_id=row.ticket_id, correlation_id=row.correlation_id,
        causation_id=row.source_event_id)
