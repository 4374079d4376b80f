"""Reading and writing tickets: locked loads, visibility, history rows, events through the outbox,
and the JSON shapes (API representation and the TicketRef snapshot carried by ticket.* events)."""
from __future__ import annotations

import datetime as dt
import hashlib
import re
import uuid

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from services.intake.domain import DONE_STATUSES
from services.intake.models import Counter, Defect, History, Ticket
from shared import outbox
from shared.clock import as_utc
from shared.events import Event, new_event
from shared.http import ApiError
from shared.visibility import can_see, visible_where

PRODUCER = "intake"
KEY_RE = re.compile(r"^INC-(\d{1,12})$")
SYSTEM = ("intake", "system")


def iso(value: dt.datetime | None) -> str | None:
    return as_utc(value).isoformat() if value is not None else None


def next_number(session: Session) -> int:
    """Gap-free and safe under concurrency: the UPDATE locks the counter row until commit."""
    return session.execute(update(Counter).where(Counter.name == "ticket").values(value=Counter.value + 1)
                           .returning(Counter.value)).scalar_one()


def _lookup(ticket_ref: str):
    match = KEY_RE.match(ticket_ref)
    if match:
        return Ticket.number == int(match.group(1))
    try:
        return Ticket.id == str(uuid.UUID(ticket_ref))
    except ValueError:
        return None


def find(session: Session, ticket_ref: str, *, lock: bool = False) -> Ticket | None:
    """By id (UUID) or key (INC-42)."""
    condition = _lookup(ticket_ref)
    if condition is None:
        return None
    query = select(Ticket).where(condition)
    if lock:
        query = query.with_for_update()
    return session.execute(query).scalar_one_or_none()


def get_visible(session: Session, ticket_ref: str, principal, *, lock: bool = False) -> Ticket:
    """The ticket, or 404 if it does not exist or the caller may not see it (same answer)."""
    ticket = find(session, ticket_ref, lock=lock)
    if ticket is None or not can_see(principal, tier=ticket.tier, group=ticket.group,
                                     assignee=ticket.assignee, reporter_email=ticket.reporter_email):
        raise ApiError(404, f"ticket {ticket_ref} not found")
    return ticket


def visible(query, principal):
    """Only the tickets the caller may see (shared.visibility)."""
    condition = visible_where(principal, tier=Ticket.tier, group=Ticket.group, assignee=Ticket.assignee,
                              reporter_email=Ticket.reporter_email)
    return query if condition is None else query.where(condition)


def touch(ticket: Ticket, now: dt.datetime, *, bump: bool = True) -> None:
    """Stamp a change; `bump=False` for flags that must not make a client's If-Match stale."""
    ticket.updated_at = now
    if bump:
        ticket.version = (ticket.version or 0) + 1


def record(session: Session, ticket: Ticket, action: str, *, actor: tuple[str, str], now: dt.datetime,
           public: bool = True, reason: str = "", **details) -> None:
    """One audit row: who (actor name, role), when, what (action, details), why (reason)."""
    session.add(History(ticket_id=ticket.id, at=now, actor=actor[0], actor_role=actor[1], action=action,
                        public=public, reason=reason or "", details=details))


def emit(session: Session, ticket: Ticket, type_: str, now: dt.datetime, *, cause: Event | None = None,
         **payload) -> Event:
    """Write a ticket.* event, with the ticket's snapshot, into the outbox of this transaction."""
    payload = {"ticket": ref(ticket), **payload}
    if cause is not None:
        event = cause.caused(type_, payload, producer=PRODUCER, ticket_id=ticket.id, occurred_at=now)
    else:
        event = new_event(type_, payload, producer=PRODUCER, ticket_id=ticket.id, correlation_id=ticket.id,
                          occurred_at=now)
    outbox.add(session, event)
    return event


def person(principal) -> dict:
    return {"name": principal.name, "email": principal.email}


def ref(ticket: Ticket) -> dict:
    """shared.events.TicketRef."""
    return {"id": ticket.id, "key": ticket.key, "title": ticket.title, "priority": ticket.priority,
            "status": ticket.status, "tier": ticket.tier, "group": ticket.group, "assignee": ticket.assignee,
            "category": ticket.category, "service": ticket.service, "channel": ticket.channel,
            "reporter": {"name": ticket.reporter_name, "email": ticket.reporter_email},
            "language": ticket.language, "created_at": iso(ticket.created_at)}


def defects_of(session: Session, ticket_ids: list[str]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {tid: [] for tid in ticket_ids}
    if ticket_ids:
        rows = session.execute(select(Defect).where(Defect.ticket_id.in_(ticket_ids)).order_by(Defect.id)).scalars()
        for d in rows:
            out[d.ticket_id].append({"tracker": d.tracker, "defect_id": d.defect_id, "url": d.url,
                                     "status": d.status})
    return out


def to_dict(ticket: Ticket, defects: list[dict]) -> dict:
    """The API representation of a ticket."""
    feedback = None
    if ticket.feedback_at is not None:
        feedback = {"csat": ticket.csat, "nps": ticket.nps, "comment": ticket.feedback_comment or "",
                    "at": iso(ticket.feedback_at)}
    return {
        "id": ticket.id, "key": ticket.key, "title": ticket.title, "description": ticket.description,
        "status": ticket.status, "priority": ticket.priority, "impact": ticket.impact, "urgency": ticket.urgency,
        "tier": ticket.tier, "group": ticket.group, "assignee": ticket.assignee, "category": ticket.category,
        "service": ticket.service, "channel": ticket.channel,
        "reporter": {"name": ticket.reporter_name, "email": ticket.reporter_email},
        "language": ticket.language, "dedup_key": ticket.dedup_key, "occurrences": ticket.occurrences,
        "reassignments": ticket.reassignments, "at_risk": bool(ticket.at_risk), "breached": bool(ticket.breached),
        "breached_clocks": list(ticket.breached_clocks or []), "defects": defects,
        "first_response_at": iso(ticket.first_response_at), "resolved_at": iso(ticket.resolved_at),
        "closed_at": iso(ticket.closed_at), "created_at": iso(ticket.created_at),
        "updated_at": iso(ticket.updated_at), "feedback": feedback, "version": ticket.version,
    }


def represent(session: Session, ticket: Ticket) -> dict:
    return to_dict(ticket, defects_of(session, [ticket.id])[ticket.id])


def dedup_hash(reporter_email: str | None, dedup_key: str) -> str:
    """Dedup keys are scoped to their source (the reporter), so one source never lands in
    another's ticket; hashed to keep the unique index small."""
    return hashlib.sha256(f"{reporter_email or ''}\n{dedup_key}".encode()).hexdigest()


def set_status(session: Session, ticket: Ticket, target: str, now: dt.datetime, reason: str, *,
               actor: tuple[str, str], person: dict | None, cause: Event | None = None,
               previous: str | None = None) -> None:
    """Move the ticket (the caller checked the rule), stamp it, record it, announce it.
    `previous`: when the caller already set ticket.status (so an earlier event's snapshot showed it)."""
    previous = previous or ticket.status
    ticket.status = target
    if target == "resolved":
        ticket.resolved_at = now
    if target == "closed":
        ticket.closed_at = now
    if target in DONE_STATUSES:
        ticket.dedup_active = None  # a new alert with the same key now opens a new ticket
        ticket.at_risk = False
    if target == "reopened":
        ticket.resolved_at = None
        _reclaim_dedup(session, ticket)
    touch(ticket, now)
    record(session, ticket, "status_changed", actor=actor, now=now, reason=reason, **{"from": previous, "to": target})
    emit(session, ticket, "ticket.status_changed", now, cause=cause, previous_status=previous, status=target,
         reason=reason, actor=person)


def _reclaim_dedup(session: Session, ticket: Ticket) -> None:
    """A reopened alert ticket takes its dedup key back unless a newer open ticket holds it."""
    if not ticket.dedup_key:
        return
    try:
        with session.begin_nested():
            ticket.dedup_active = dedup_hash(ticket.reporter_email, ticket.dedup_key)
            session.flush()
    except IntegrityError:
        ticket.dedup_active = None
