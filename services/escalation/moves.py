"""Carrying out decisions inside the caller's transaction: the history record, the escalation.*
event (through the outbox) and, for the developers, the defect job.

Escalation decides and intake applies: after `route` the read model already shows the new
placement, so the next decision builds on this one; intake's ticket.assigned confirms it.
"""
from __future__ import annotations

import datetime as dt
import logging
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from services.escalation import domain, registry
from services.escalation.models import Defect, EscalationRecord, Ticket
from services.escalation.trackers import Tracker
from shared import outbox
from shared.db import Database
from shared.events import Event, new_event

log = logging.getLogger(__name__)
PRODUCER = "escalation"
SYSTEM = "tierline"
HISTORY_EXCERPT = 10


@dataclass
class Deps:
    """What handlers, views and the defect worker share (the app's `dependencies`)."""
    db: Database
    clock: Any
    trackers: dict[str, Tracker]
    public_url: str
    wake_worker: Callable[[], None] = field(default=lambda: None)


class Moves:
    def __init__(self, deps: Deps, session: Session, cause: Event | None = None, causation_id: str | None = None):
        """`cause`: the event being handled; else `causation_id` names the event behind the work."""
        self.deps, self.session, self.cause, self.causation_id = deps, session, cause, causation_id
        self.now: dt.datetime = deps.clock.now()
        self._groups: dict[str, domain.Group] | None = None

    @property
    def groups(self) -> dict[str, domain.Group]:
        if self._groups is None:
            self._groups = registry.groups(self.session)
        return self._groups

    # --- building blocks ---------------------------------------------------------------------
    def record(self, ticket: Ticket, trigger: str, *, outcome: str, to: tuple | None = None, who: str = SYSTEM,
               why: str = "", clock: str | None = None, percent: int | None = None) -> EscalationRecord:
        seq = (self.session.scalar(select(func.max(EscalationRecord.seq))
                                   .where(EscalationRecord.ticket_id == ticket.id)) or 0) + 1
        to_tier, to_group = to if to else (ticket.tier, ticket.group)
        rec = EscalationRecord(id=str(uuid.uuid4()), ticket_id=ticket.id, at=self.now, seq=seq, trigger=trigger,
                               from_tier=ticket.tier, from_group=ticket.group, to_tier=to_tier, to_group=to_group,
                               who=who[:200], why=why, clock=clock, percent=percent, outcome=outcome)
        self.session.add(rec)
        log.info("%s %s: %s %s/%s -> %s/%s (%s)", ticket.key, trigger, outcome, ticket.tier, ticket.group,
                 to_tier, to_group, why)
        return rec

    def emit(self, ticket: Ticket, type_: str, payload: dict) -> Event:
        if self.cause is not None:
            event = self.cause.caused(type_, payload, producer=PRODUCER, ticket_id=ticket.id, occurred_at=self.now)
        else:
            event = new_event(type_, payload, producer=PRODUCER, ticket_id=ticket.id,
                              correlation_id=ticket.correlation_id, causation_id=self.causation_id,
                              occurred_at=self.now)
        outbox.add(self.session, event)
        return event

    # --- decisions ---------------------------------------------------------------------------
    def route(self, ticket: Ticket, group: domain.Group, trigger: str, *, why: str, who: str = SYSTEM,
              clock: str | None = None, percent: int | None = None) -> EscalationRecord:
        """Move the ticket to `group` (escalation.routed); DEV also gets a defect job."""
        rec = self.record(ticket, trigger, outcome="routed", to=(group.tier, group.name), who=who, why=why,
                          clock=clock, percent=percent)
        self.emit(ticket, "escalation.routed", {
            "key": ticket.key, "tier": group.tier, "group": group.name, "assignee": None, "trigger": trigger,
            "reason": why, "escalation_id": rec.id, "contacts": domain.contacts(group)})
        if trigger != "initial" and ticket.group not in (None, group.name):
            ticket.moves += 1
        ticket.tier, ticket.group, ticket.assignee = group.tier, group.name, None
        ticket.auto_placed = trigger in ("initial", "reroute")
        ticket.last_escalation_id = rec.id
        if group.tier == "L1":
            ticket.l1_group, ticket.l1_assignee = group.name, None
        if group.tier == "DEV":
            self.open_defect(ticket, group, rec)
        return rec

    def guarded_route(self, ticket: Ticket, group: domain.Group, trigger: str, *, limit: int | None, why: str,
                      who: str = SYSTEM, clock: str | None = None, percent: int | None = None) -> EscalationRecord:
        """`route`, unless the ping-pong guard stops it: then the manager is told and it stays."""
        if domain.ping_pong_blocked(ticket.moves, limit):
            return self.notify_manager(
                ticket, "ping_pong", who=who, clock=clock, percent=percent, to=(group.tier, group.name),
                fallback="blocked",
                why=f"moved {ticket.moves} times (limit {limit}); kept in {ticket.group} instead of "
                    f"moving to {group.name}: {why}")
        return self.route(ticket, group, trigger, why=why, who=who, clock=clock, percent=percent)

    def notify_manager(self, ticket: Ticket, trigger: str, *, why: str, who: str = SYSTEM, clock: str | None = None,
                       percent: int | None = None, to: tuple | None = None, outcome: str = "manager_notified",
                       fallback: str = "skipped", event_trigger: str | None = None) -> EscalationRecord:
        """Hierarchical escalation: tell the manager of the group holding the ticket."""
        group = self.groups.get(ticket.group or "")
        manager = group.manager if group else None
        if not manager or not ticket.tier:
            return self.record(ticket, trigger, outcome=fallback, to=to, who=who, clock=clock, percent=percent,
                               why=f"{why} (group {ticket.group or '-'} has no manager to tell)")
        rec = self.record(ticket, trigger, outcome=outcome, to=to, who=who, why=why, clock=clock, percent=percent)
        self.emit(ticket, "escalation.manager_notified", {
            "key": ticket.key, "tier": ticket.tier, "group": ticket.group, "manager": domain.contacts(group)["manager"],
            "reason": why, "trigger": event_trigger or trigger, "escalation_id": rec.id})
        return rec

    # --- the developers ----------------------------------------------------------------------
    def open_defect(self, ticket: Ticket, group: domain.Group, rec: EscalationRecord) -> Defect:
        """A job to create the defect, written with the decision; the worker sends it."""
        open_one = self.session.scalar(select(Defect).where(Defect.ticket_id == ticket.id, Defect.status != "resolved"))
        if open_one is not None:
            log.info("%s already has defect job %s: not creating another", ticket.key, open_one.id)
            return open_one
        job_id = str(uuid.uuid4())
        defect = Defect(id=job_id, ticket_id=ticket.id, key=ticket.key, tracker=group.tracker or "default",
                        group=group.name, escalation_id=rec.id, status="pending",
                        request=self.defect_request(ticket, job_id, rec), attempts=0, next_attempt_at=self.now,
                        correlation_id=ticket.correlation_id, causation_id=self.cause.id if self.cause else None,
                        created_at=self.now)
        self.session.add(defect)
        self.session.info["defect_job"] = True  # wakes the worker after commit
        return defect

    def defect_request(self, ticket: Ticket, job_id: str, rec: EscalationRecord) -> dict:
        link = f"{self.deps.public_url.rstrip('/')}/api/v1/tickets/{ticket.id}"
        self.session.flush()
        records = self.session.scalars(select(EscalationRecord).where(EscalationRecord.ticket_id == ticket.id)
                                       .order_by(EscalationRecord.seq.desc()).limit(HISTORY_EXCERPT)).all()
        history = [f"{r.at:%Y-%m-%d %H:%M} UTC {r.trigger}: {r.from_group or '-'} -> {r.to_group or '-'} "
                   f"({r.outcome}) by {r.who}: {r.why}" for r in reversed(records)]
        return {"idempotency_key": job_id,
                "ticket": {"id": ticket.id, "key": ticket.key, "title": ticket.title, "priority": ticket.priority,
                           "url": link},
                "summary": f"{ticket.key}: {ticket.title}", "description": (ticket.description or "")[:4000],
                "reason": rec.why, "escalated_by": rec.who, "history": history, "link": link}

    def return_from_defect(self, ticket: Ticket, defect: Defect, *, status: str, resolution: str, comment: str,
                           who: str) -> EscalationRecord:
        """The developers are done: the ticket goes back to the L1 placement that had it."""
        l1_group = ticket.l1_group or self._first_l1(ticket) or registry.default_group(self.session)
        why = f"defect {defect.defect_id} in {defect.tracker} is {status}" + (f": {comment}" if comment else "")
        rec = self.record(ticket, "defect_resolved", outcome="returned", to=("L1", l1_group), who=who, why=why)
        self.emit(ticket, "escalation.defect_resolved", {
            "key": ticket.key, "tracker": defect.tracker, "defect_id": defect.defect_id, "url": defect.url,
            "resolution": resolution, "comment": comment[:2000], "escalation_id": rec.id,
            "return_to": {"tier": "L1", "group": l1_group, "assignee": ticket.l1_assignee}})
        ticket.tier, ticket.group, ticket.assignee = "L1", l1_group, ticket.l1_assignee
        ticket.auto_placed, ticket.last_escalation_id = False, rec.id
        return rec

    def _first_l1(self, ticket: Ticket) -> str | None:
        return self.session.scalar(select(EscalationRecord.to_group).where(
            EscalationRecord.ticket_id == ticket.id, EscalationRecord.to_tier == "L1").order_by(EscalationRecord.seq))
