"""Changing policies and calendars, and carrying the change to the open tickets it concerns.

An IT department expects an edited policy or calendar (a new holiday, say) to move the deadlines
of tickets already open, not only of new ones. So every change recounts the affected open
clocks from their original start, as a priority change does, in the same transaction; what is
due under the new rules fires at once.
"""
from __future__ import annotations

import datetime as dt
from typing import Callable, Iterable, Mapping

from marshmallow import ValidationError
from sqlalchemy import func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from services.sla import domain, store
from services.sla.domain import utc
from services.sla.models import CalendarRow, Clock, PolicyRow, Ticket
from services.sla.tickets import TicketClocks
from shared import outbox
from shared.events import new_event
from shared.http import ApiError

CLOSED = ("resolved", "closed", "cancelled")


def policy_dict(row: PolicyRow) -> dict:
    return {"id": row.id, "name": row.name, "position": row.position,
            "match": {"priority": row.priority, "category": row.category, "service": row.service,
                      "channel": row.channel},
            "calendar": row.calendar, "resolution_calendar": row.resolution_calendar,
            "first_response": row.first_response, "resolution": row.resolution,
            "warnings": list(row.warnings or ()), "ola": dict(row.ola or {}),
            "created_at": utc(row.created_at), "updated_at": utc(row.updated_at)}


def calendar_dict(row: CalendarRow) -> dict:
    return {**row.spec, "version": row.version, "created_at": utc(row.created_at), "updated_at": utc(row.updated_at)}


def get_policy(session: Session, policy_id: int) -> PolicyRow:
    # Beyond a 64-bit integer the database driver raises (a 500) instead of finding nothing.
    row = session.get(PolicyRow, policy_id) if 0 < policy_id < 2**63 else None
    if row is None:
        raise ApiError(404, f"no policy {policy_id}")
    return row


def get_calendar(session: Session, name: str) -> CalendarRow:
    row = session.get(CalendarRow, name)
    if row is None:
        raise ApiError(404, f"no calendar {name!r}")
    return row


# --- policies ------------------------------------------------------------------------------------
def save_policy(session: Session, calendars: store.Calendars, data: Mapping, now: dt.datetime,
                row: PolicyRow | None = None) -> PolicyRow:
    known = set(session.scalars(select(CalendarRow.name)).all())
    bad = {f: [f"no calendar named {data[f]!r}"] for f in ("calendar", "resolution_calendar")
           if data.get(f) is not None and data[f] not in known}
    if bad:
        raise ApiError(422, "invalid fields: " + ", ".join(sorted(bad)), bad)
    clash = session.scalar(select(PolicyRow.id).where(PolicyRow.name == data["name"]))
    if clash is not None and (row is None or clash != row.id):
        raise ApiError(409, f"a policy named {data['name']!r} exists", {"name": ["already used"]})
    data = dict(data)
    if data.get("position") is None:
        data["position"] = row.position if row is not None else \
            (session.scalar(select(func.max(PolicyRow.position))) or 0) + 10
    old = (row.name, row.priority) if row is not None else None
    row = store.policy_row(data, now, row)
    session.add(row)
    try:
        session.flush()
    except IntegrityError:
        raise ApiError(409, f"a policy named {data['name']!r} exists", {"name": ["already used"]}) from None
    names = {row.name} | ({old[0]} if old else set())
    priorities = {row.priority} | ({old[1]} if old else set())
    _recount(session, calendars, now, _tickets_of_policies(session, names, priorities),
             lambda flow: flow.reselect(now))
    return row


def delete_policy(session: Session, calendars: store.Calendars, row: PolicyRow, now: dt.datetime) -> None:
    affected = _tickets_of_policies(session, {row.name}, {row.priority})
    session.delete(row)
    session.flush()
    _recount(session, calendars, now, affected, lambda flow: flow.reselect(now))


def _tickets_of_policies(session: Session, names: set, priorities: set) -> list[str]:
    """Open tickets whose policy may change: on one of these policies, or of their priorities
    (a policy only ever matches its own priority)."""
    return list(session.scalars(select(Ticket.id).where(
        Ticket.status.notin_(CLOSED), or_(Ticket.policy.in_(names), Ticket.priority.in_(priorities)))).all())


# --- calendars -----------------------------------------------------------------------------------
def parse(data: Mapping):
    try:
        return store.parse_calendar(data)
    except ValidationError as exc:
        raise ApiError(422, "invalid fields: " + ", ".join(sorted(map(str, exc.messages))), exc.messages) from None
    except ValueError as exc:
        field, _, message = str(exc).partition(": ")
        raise ApiError(422, str(exc), {field: [message or str(exc)]}) from None


def create_calendar(session: Session, data: Mapping, now: dt.datetime) -> CalendarRow:
    cal = parse(data)
    if session.get(CalendarRow, cal.name) is not None:
        raise ApiError(409, f"a calendar named {cal.name!r} exists", {"name": ["already used"]})
    row = CalendarRow(name=cal.name, spec=cal.to_dict(), version=1, created_at=now, updated_at=now)
    session.add(row)
    session.flush()
    return row


def update_calendar(session: Session, calendars: store.Calendars, row: CalendarRow, data: Mapping,
                    now: dt.datetime) -> CalendarRow:
    if data.get("name") not in (None, row.name):
        raise ApiError(422, "renaming a calendar is not supported", {"name": [f"must be {row.name!r}"]})
    cal = parse({**data, "name": row.name})
    row.spec, row.version, row.updated_at = cal.to_dict(), row.version + 1, now
    session.flush()
    affected = session.scalars(select(Clock.ticket_id).where(
        Clock.calendar == row.name, Clock.status != domain.STOPPED).distinct()).all()

    def recount(flow: TicketClocks) -> None:
        for clock in flow.clocks:
            if clock.calendar == row.name:
                domain.retarget(clock, target=clock.target_seconds, warnings=clock.warnings,
                                calendar=clock.calendar, cal=cal, at=now)
    _recount(session, calendars, now, affected, recount)
    return row


def delete_calendar(session: Session, row: CalendarRow) -> None:
    users = store.calendar_in_use(session, row.name)
    if users:
        raise ApiError(409, f"calendar {row.name!r} is in use by {', '.join(users)}")
    session.delete(row)


# --- the common part -------------------------------------------------------------------------------
def _recount(session: Session, calendars: store.Calendars, now: dt.datetime, ticket_ids: Iterable[str],
             change: Callable[[TicketClocks], None]) -> None:
    policies, cals = store.policies(session), calendars.all(session)
    for ticket_id in sorted(ticket_ids):  # one lock order, so concurrent changes cannot deadlock
        ticket = store.lock_ticket(session, ticket_id)
        if ticket is None:
            continue
        flow = TicketClocks(session, ticket, store.ticket_clocks(session, ticket_id), policies, cals, now)
        change(flow)
        flow.settle()
        for type_, payload in flow.out:
            outbox.add(session, new_event(type_, payload, producer="sla", ticket_id=ticket.id,
                                          correlation_id=ticket.correlation_id, occurred_at=now))
