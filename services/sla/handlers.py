"""ticket.* event handlers: each runs in the inbox transaction (shared.outbox.idempotent).

Every handler first finds the ticket, locked, or arms it from the event's snapshot when this is
the first event sla sees of it (events may come late or out of order); `ticket.created` for a
ticket already armed changes nothing. Changes take effect at the event's own time (when intake
made them), never later than now, so a backlog drained after an outage still pauses and stops
clocks at the right instants.
"""
from __future__ import annotations

import datetime as dt
import logging

from sqlalchemy.orm import Session

from services.sla import store
from services.sla.models import Ticket
from services.sla.tickets import TicketClocks
from shared import outbox
from shared.clock import as_utc
from shared.events import Event

log = logging.getLogger(__name__)
PRODUCER = "sla"


class TicketHandlers:
    def __init__(self, clock, calendars: store.Calendars):
        self.clock, self.calendars = clock, calendars

    def routes(self) -> dict:
        return {"ticket.created": self.on_created, "ticket.updated": self.on_updated,
                "ticket.assigned": self.on_assigned, "ticket.status_changed": self.on_status_changed,
                "ticket.commented": self.on_commented}

    # --- handlers ------------------------------------------------------------------------------
    def on_created(self, session: Session, event: Event) -> None:
        self._apply(session, event, lambda flow, at: None)

    def on_assigned(self, session: Session, event: Event) -> None:
        tier = event.payload["ticket"].get("tier")
        self._apply(session, event, lambda flow, at: flow.assign(tier, at))

    def on_status_changed(self, session: Session, event: Event) -> None:
        status = event.payload["status"]
        self._apply(session, event, lambda flow, at: flow.set_status(status, at))

    def on_commented(self, session: Session, event: Event) -> None:
        first = bool(event.payload.get("first_response"))
        self._apply(session, event, lambda flow, at: flow.first_response(at) if first else None)

    def on_updated(self, session: Session, event: Event) -> None:
        ref = event.payload["ticket"]

        def change(flow: TicketClocks, at: dt.datetime) -> None:
            ticket = flow.ticket
            before = (ticket.priority, ticket.category, ticket.service, ticket.channel)
            ticket.priority, ticket.category = ref["priority"], ref.get("category")
            ticket.service, ticket.channel = ref.get("service"), ref.get("channel")
            if (ticket.priority, ticket.category, ticket.service, ticket.channel) != before:
                flow.reselect(at)
        self._apply(session, event, change)

    # --- the common part -----------------------------------------------------------------------
    def _apply(self, session: Session, event: Event, change) -> None:
        now = self.clock.now()
        at = min(as_utc(event.occurred_at), now)
        ref = event.payload["ticket"]
        ticket_id = event.ticket_id or ref["id"]
        ticket = store.lock_ticket(session, ticket_id)
        fresh = ticket is None
        if fresh:
            ticket = self._new_ticket(session, event, ref, now)
        flow = TicketClocks(session, ticket, store.ticket_clocks(session, ticket_id) if not fresh else [],
                            store.policies(session), self.calendars.all(session), now)
        if fresh:
            flow.arm(as_utc(ticket.created_at))
            if event.type != "ticket.assigned":
                flow.assign(ref.get("tier"), at)
            if event.type != "ticket.status_changed":
                flow.set_status(ref["status"], at)
        change(flow, at)
        flow.settle()
        ticket.group_name, ticket.assignee = ref.get("group"), ref.get("assignee")
        ticket.reporter_email = (ref.get("reporter") or {}).get("email")
        ticket.updated_at = now
        for type_, payload in flow.out:
            outbox.add(session, event.caused(type_, payload, producer=PRODUCER, occurred_at=now))

    def _new_ticket(self, session: Session, event: Event, ref: dict, now: dt.datetime) -> Ticket:
        try:
            start = min(as_utc(dt.datetime.fromisoformat(ref["created_at"])), now)
        except (TypeError, ValueError):
            log.warning("ticket %s: unreadable created_at %r; starting its clocks at the event time",
                        ref.get("key"), ref.get("created_at"))
            start = min(as_utc(event.occurred_at), now)
        ticket = Ticket(id=event.ticket_id or ref["id"], key=ref["key"], priority=ref["priority"],
                        category=ref.get("category"), service=ref.get("service"), channel=ref.get("channel"),
                        status="new", tier=None, policy=None, correlation_id=event.correlation_id,
                        created_at=start, updated_at=now)
        session.add(ticket)
        if event.type != "ticket.created":
            log.info("first event of %s is %s: arming its clocks from the snapshot", ref.get("key"), event.type)
        return ticket
