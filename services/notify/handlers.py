"""The consumer of notify.events: it only plans. For every person an event must reach it writes
one delivery row per (event, recipient, channel), rendered and queued, in the inbox transaction;
the sender (sender.py) delivers them outside the consumer."""
from __future__ import annotations

import logging
import uuid
from typing import Any, Callable

from sqlalchemy.orm import Session

from services.notify import domain, readmodel
from services.notify.models import Delivery, Recipient
from services.notify.render import Renderer
from shared.db import insert_ignoring_duplicates
from shared.events import Event

log = logging.getLogger(__name__)
PLANNED = "notify_planned"  # session.info flag: wake the sender after this commit


def safe_url(value) -> str | None:
    """Links from other systems (tracker URLs) go into mails only if they are plain web links."""
    return value if isinstance(value, str) and value.startswith(("https://", "http://")) else None


class Planner:
    def __init__(self, *, rules: dict, default_language: str, renderer: Renderer, clock, public_url: str):
        self.rules = domain.check_rules(rules)
        self.default_language = default_language
        self.renderer, self.clock = renderer, clock
        self.public_url = public_url.rstrip("/")

    def handlers(self, event_types) -> dict[str, Callable[[Session, Event], None]]:
        return {event_type: self.on_event for event_type in event_types}

    def on_event(self, session: Session, event: Event) -> None:
        ticket = readmodel.apply(session, event)
        ticket_view = readmodel.view(ticket)
        now = self.clock.now()
        people = domain.audience(event.type, event.payload, ticket_view, self.rules.get(event.type, ()))
        recipients = readmodel.learn_all(session, [*domain.known_people(event.payload, ticket_view), *people], now)
        if not people:
            log.info("%s %s: nobody to tell", event.type, event.id)
            return
        for person in people:
            recipient = recipients[person.email]
            channels = recipient.channels or list(domain.DEFAULT_CHANNELS)
            _, channel = domain.next_channel(channels, ()) or (0, {"type": "email"})
            self.plan(session, event, ticket_view, person, recipient, channel["type"], now=now)
        session.info[PLANNED] = True

    def plan(self, session: Session, event: Event, ticket: dict, person: domain.Person, recipient: Recipient,
             channel: str, *, now) -> bool:
        """Write one queued delivery; False if this (event, recipient, channel) was planned before."""
        language = domain.choose_language(recipient.language, person.language, ticket.get("language"),
                                          self.default_language)
        timezone = recipient.timezone or recipient.contact_timezone or person.timezone
        content = self.renderer.render(event.type, language, self.context(event, ticket, person, language, timezone))
        urgent = domain.is_urgent(event.type, ticket.get("priority") or event.payload.get("priority"))
        # Quiet hours defer the first attempt only; urgent news goes at once.
        due = now if urgent else domain.quiet_until(now, recipient.quiet_hours, timezone) or now
        inserted = insert_ignoring_duplicates(session, Delivery.__table__, {
            "id": str(uuid.uuid4()), "source_event_id": event.id, "source_event_type": event.type,
            "correlation_id": event.correlation_id[:128], "ticket_id": event.ticket_id or ticket.get("id"),
            "ticket_key": (ticket.get("key") or event.payload.get("key") or "")[:64] or None,
            "recipient": recipient.address, "recipient_name": person.name, "role": person.role,
            "channel": channel, "language": language, "subject": content.subject, "body_text": content.text,
            "body_html": content.html, "urgent": urgent, "state": "queued", "attempts": 0,
            "next_attempt_at": due, "created_at": now, "updated_at": now})
        if not inserted:
            log.info("delivery of %s to %s by %s already planned", event.id, recipient.address, channel)
        return inserted

    def context(self, event: Event, ticket: dict, person: domain.Person, language: str, timezone) -> dict[str, Any]:
        payload = event.payload
        ref = payload.get("ticket") or {}
        ticket_id = event.ticket_id or ticket.get("id") or ref.get("id") or ""
        ticket_url = f"{self.public_url}/api/v1/tickets/{ticket_id}"
        return {
            "event_type": event.type, "event": payload, "language": language, "timezone": timezone,
            "recipient": {"name": person.name, "role": person.role, "email": person.email},
            "ticket": {"id": ticket_id, "key": ticket.get("key") or ref.get("key") or payload.get("key") or "",
                       "title": ticket.get("title") or ref.get("title") or "",
                       "priority": ticket.get("priority") or payload.get("priority"),
                       "status": ticket.get("status"), "group": ticket.get("group"), "tier": ticket.get("tier"),
                       "assignee": ticket.get("assignee"),
                       "reporter_name": (ticket.get("reporter") or {}).get("name") or "",
                       "url": ticket_url, "feedback_url": f"{ticket_url}/feedback"},
            "defect_url": safe_url(payload.get("url")),
        }
