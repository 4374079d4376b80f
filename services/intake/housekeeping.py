"""Periodic upkeep: resolved tickets close once their reopen window has passed, and old
Idempotency-Key answers are forgotten. Safe in several replicas (SKIP LOCKED on PostgreSQL)."""
from __future__ import annotations

import datetime as dt
import logging

from sqlalchemy import delete, select

from services.intake import store
from services.intake.commands import Intake
from services.intake.models import IdempotencyKey, Ticket

log = logging.getLogger(__name__)
IDEMPOTENCY_TTL = dt.timedelta(hours=24)
BATCH = 100


def close_expired(deps: Intake) -> int:
    """Close resolved tickets the reporter can no longer reopen; returns how many were closed."""
    now = deps.clock.now()
    cutoff = now - dt.timedelta(days=deps.reopen_window_days)
    reason = f"closed automatically {deps.reopen_window_days} days after resolution"
    with deps.db.transaction() as session:
        query = (select(Ticket).where(Ticket.status == "resolved", Ticket.resolved_at <= cutoff)
                 .order_by(Ticket.resolved_at).limit(BATCH))
        if deps.db.is_postgres:
            query = query.with_for_update(skip_locked=True)
        tickets = list(session.execute(query).scalars())
        for ticket in tickets:
            store.set_status(session, ticket, "closed", now, reason, actor=store.SYSTEM, person=None)
    if tickets:
        log.info("closed %d resolved tickets past their reopen window", len(tickets))
    return len(tickets)


def purge_idempotency_keys(deps: Intake) -> None:
    with deps.db.transaction() as session:
        session.execute(delete(IdempotencyKey).where(IdempotencyKey.created_at < deps.clock.now() - IDEMPOTENCY_TTL))


def run(deps: Intake) -> None:
    while close_expired(deps) == BATCH:
        pass
    purge_idempotency_keys(deps)
