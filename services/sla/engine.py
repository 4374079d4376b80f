"""The timer engine: one periodic scan of the clocks table, not one scheduler job per ticket.

Each pass takes due clocks (`next_fire_at <= now`) in due order with FOR UPDATE SKIP LOCKED, so
several replicas share the work and never take the same row; fires their thresholds and writes
the sla.warning / sla.breached events to the outbox in the same transaction as the clock's new
state. Two engines can therefore never fire one threshold twice: the second sees the row
locked (skips it) or, after the first committed, no longer due. A clock that came due while no
engine ran is simply due at the first pass after start-up.
"""
from __future__ import annotations

import dataclasses
import logging

from sqlalchemy import bindparam, select, update

from services.sla import domain
from services.sla.models import Clock, Ticket
from services.sla.store import Calendars
from services.sla.tickets import clock_payload, fired_event
from shared import metrics, outbox
from shared.db import Database
from shared.events import new_event

log = logging.getLogger(__name__)


class Engine:
    def __init__(self, db: Database, clock, calendars: Calendars, *, batch: int = 500, max_batches: int = 40):
        self.db, self.clock, self.calendars = db, clock, calendars
        self.batch, self.max_batches = batch, max_batches

    def tick(self) -> int:
        """Fire everything due; returns how many clocks fired. Bounded, so a huge backlog is
        spread over several passes instead of holding one forever."""
        total = 0
        for _ in range(self.max_batches):
            taken, fired = self._pass()
            total += fired
            if taken < self.batch:
                break
        return total

    def _pass(self) -> tuple[int, int]:
        counts: dict[str, int] = {}
        with self.db.transaction() as session:
            now = self.clock.now()
            # Core, not ORM objects: the pass is the hot path (see bench/sla_timer.py).
            rows = session.execute(
                select(*CLOCK_COLUMNS, CLOCKS.c.id, TICKETS.c.key, TICKETS.c.priority, TICKETS.c.correlation_id)
                .join(TICKETS, TICKETS.c.id == CLOCKS.c.ticket_id)
                .where(CLOCKS.c.next_fire_at <= now)
                .order_by(CLOCKS.c.next_fire_at)
                .limit(self.batch)
                .with_for_update(skip_locked=True, of=CLOCKS)).all()
            if not rows:
                return 0, 0
            calendars = self.calendars.all(session)
            events: list = []
            changes = [self._fire(row, calendars, now, events) for row in rows]
            # One INSERT for the pass's events, one batched UPDATE for the clocks: a round trip
            # per event, not the arithmetic, is what would limit a pass.
            outbox.add_all(session, events)
            session.execute(UPDATE_FIRED, changes)
        for event in events:
            counts[event.type] = counts.get(event.type, 0) + 1
        for type_, n in counts.items():
            metrics.SLA_EVENTS.labels(type=type_).inc(n)
        return len(rows), sum(1 for c in changes if c["fired"])

    def _fire(self, row, calendars, now, events: list) -> dict:
        clock = domain.Clock(*row[:len(CLOCK_COLUMNS)])
        cal = calendars.get(clock.calendar)
        try:
            percents = domain.fire(clock, cal, now)
        except ValueError as exc:  # a calendar with no working time left: park the clock
            log.error("clock %s of %s cannot be planned, parked: %s", clock.name, row.key, exc)
            percents, clock.next_fire_at = [], None
        for percent in percents:
            payload = clock_payload(row.key, row.priority, clock, cal, now, None if percent == domain.BREACH else percent)
            events.append(new_event(fired_event(percent), payload, producer="sla", ticket_id=clock.ticket_id,
                                    correlation_id=row.correlation_id, occurred_at=now))
        return {"clock_id": row.id, "fired": bool(percents), **{name: getattr(clock, name) for name in FIRE_FIELDS}}


CLOCKS, TICKETS = Clock.__table__, Ticket.__table__
CLOCK_COLUMNS = [CLOCKS.c[f.name] for f in dataclasses.fields(domain.Clock)]  # domain.Clock(*row) order
FIRE_FIELDS = ("warned", "outcome", "breached_at", "due_at", "next_fire_at")  # all that fire() changes
UPDATE_FIRED = (update(CLOCKS).where(CLOCKS.c.id == bindparam("clock_id"))
                .values({name: bindparam(name) for name in FIRE_FIELDS}))
