"""Reading and seeding the sla tables: calendars (cached parsed), policies, tickets."""
from __future__ import annotations

import logging
import threading
from typing import Mapping

from marshmallow import ValidationError
from sqlalchemy import func, or_, select, text
from sqlalchemy.orm import Session

from services.sla.calendar import Calendar
from services.sla.models import CalendarRow, Clock, PolicyRow, Ticket
from services.sla.policies import Policy
from services.sla.schemas import CalendarInSchema, PolicyInSchema
from shared.config import ConfigError
from shared.db import Database

log = logging.getLogger(__name__)
SEED_LOCK = 0x51A5EED  # advisory lock id: replicas starting together seed once


class Calendars:
    """Parsed calendars of this process, reparsed only when a row's version changes, so the
    timer engine pays one small query per pass and no parsing."""

    def __init__(self):
        self._parsed: dict[str, tuple[int, Calendar]] = {}
        self._lock = threading.Lock()

    def all(self, session: Session) -> "CalendarSet":
        versions = dict(session.execute(select(CalendarRow.name, CalendarRow.version)).all())
        with self._lock:
            stale = [name for name, version in versions.items()
                     if self._parsed.get(name, (None,))[0] != version]
        if stale:
            rows = session.execute(select(CalendarRow.name, CalendarRow.version, CalendarRow.spec)
                                   .where(CalendarRow.name.in_(stale))).all()
            parsed = {row.name: (row.version, Calendar.from_dict(row.spec)) for row in rows}
            with self._lock:
                self._parsed.update(parsed)
        with self._lock:
            return CalendarSet({name: self._parsed[name][1] for name in versions if name in self._parsed})


class CalendarSet(dict):
    def get(self, name: str) -> Calendar:  # type: ignore[override]
        """A clock whose calendar vanished keeps counting around the clock rather than stop."""
        found = super().get(name)
        if found is None:
            log.warning("calendar %r not found; counting 24x7", name)
            return Calendar.twenty_four_seven(name or "24x7")
        return found


def policy_rows(session: Session) -> list[PolicyRow]:
    return list(session.scalars(select(PolicyRow).order_by(PolicyRow.position, PolicyRow.id)).all())


def policies(session: Session) -> list[Policy]:
    return [row.to_policy() for row in policy_rows(session)]


def calendar_rows(session: Session) -> list[CalendarRow]:
    return list(session.scalars(select(CalendarRow).order_by(CalendarRow.name)).all())


def lock_ticket(session: Session, ticket_id: str) -> Ticket | None:
    """The ticket row, locked: events of one ticket are applied one at a time across replicas."""
    return session.get(Ticket, ticket_id, with_for_update=True)


def find_ticket(session: Session, id_or_key: str) -> Ticket | None:
    return session.get(Ticket, id_or_key) or session.scalars(
        select(Ticket).where(Ticket.key == id_or_key).limit(1)).first()


def ticket_clocks(session: Session, ticket_id: str, *, lock: bool = True) -> list[Clock]:
    query = select(Clock).where(Clock.ticket_id == ticket_id).order_by(Clock.id)
    if lock:
        query = query.with_for_update()  # waits for an engine pass holding them; never skipped
    return list(session.scalars(query).all())


def calendar_in_use(session: Session, name: str) -> list[str]:
    """Who still counts in this calendar: policy names, and 'open clocks' if any."""
    users = list(session.scalars(select(PolicyRow.name).where(
        or_(PolicyRow.calendar == name, PolicyRow.resolution_calendar == name))).all())
    open_clocks = session.scalar(select(func.count()).select_from(Clock).where(
        Clock.calendar == name, Clock.status != "stopped"))
    if open_clocks:
        users.append(f"{open_clocks} open clocks")
    return users


def parse_calendar(data: Mapping) -> Calendar:
    """Validate a calendar (API/config shape); raises ValueError('<field>: <message>')."""
    loaded = CalendarInSchema().load(dict(data))
    return Calendar.from_dict(loaded)


def seed(db: Database, domain: Mapping, now) -> None:
    """Copy the shipped calendars and policies into empty tables (the API owns them after)."""
    with db.transaction() as session:
        if db.is_postgres:
            session.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": SEED_LOCK})
        if not session.scalar(select(func.count()).select_from(CalendarRow)):
            for i, raw in enumerate(domain.get("calendars") or []):
                try:
                    cal = parse_calendar(raw)
                except (ValidationError, ValueError) as exc:
                    raise ConfigError(f"calendars[{i}] ({raw.get('name')}): {_message(exc)}") from None
                session.add(CalendarRow(name=cal.name, spec=cal.to_dict(), version=1, created_at=now, updated_at=now))
        session.flush()
        known = set(session.scalars(select(CalendarRow.name)).all())
        if not session.scalar(select(func.count()).select_from(PolicyRow)):
            for i, raw in enumerate(domain.get("policies") or []):
                try:
                    data = PolicyInSchema().load(dict(raw))
                except ValidationError as exc:
                    raise ConfigError(f"policies[{i}] ({raw.get('name')}): {_message(exc)}") from None
                missing = {data["calendar"], data["resolution_calendar"] or data["calendar"]} - known
                if missing:
                    raise ConfigError(f"policies[{i}] ({data['name']}): unknown calendar {sorted(missing)[0]!r}")
                data["position"] = data["position"] if data["position"] is not None else (i + 1) * 10
                session.add(policy_row(data, now))


def policy_row(data: Mapping, now, row: PolicyRow | None = None) -> PolicyRow:
    row = row or PolicyRow(created_at=now)
    match = data["match"]
    row.name, row.position = data["name"], data["position"]
    row.priority, row.category = match["priority"], match.get("category")
    row.service, row.channel = match.get("service"), match.get("channel")
    row.calendar, row.resolution_calendar = data["calendar"], data.get("resolution_calendar")
    row.first_response, row.resolution = data["first_response"], data["resolution"]
    row.warnings = sorted(set(data.get("warnings") or ()))
    row.ola = dict(data.get("ola") or {})
    row.updated_at = now
    return row


def _message(exc: Exception) -> str:
    return str(exc.messages) if isinstance(exc, ValidationError) else str(exc)
