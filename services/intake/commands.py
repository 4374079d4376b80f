"""What callers of the HTTP API can do to tickets; each function is one transaction that makes the
change, writes its history row and writes its ticket.* events to the outbox."""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from services.intake import domain, store
from services.intake.models import IdempotencyKey, Ticket
from shared.clock import as_utc
from shared.db import Database
from shared.http import ApiError

CREATE_ATTEMPTS = 5
log = logging.getLogger(__name__)


@dataclass
class Intake:
    """The dependencies the views reach through shared.http.deps()."""
    db: Database
    clock: Any
    priorities: dict
    reopen_window_days: int


def actor_of(principal) -> tuple[str, str]:
    return principal.name, principal.role


# --- create ----------------------------------------------------------------------------------
def create_ticket(deps: Intake, principal, data: dict, idempotency_key: str | None) -> tuple[int, dict]:
    """201 and the new ticket, or 200 and the open ticket with the same dedup key (occurrence
    counted). A retried Idempotency-Key gets the first answer back. Concurrent duplicates collide
    on a unique key, are rolled back and retried, and then find the winner's row."""
    request_hash = hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()
    for attempt in range(CREATE_ATTEMPTS):
        try:
            with deps.db.transaction() as session:
                if idempotency_key:
                    stored = session.get(IdempotencyKey, (principal.name, idempotency_key))
                    if stored is not None:
                        if stored.request_hash != request_hash:
                            raise ApiError(422, "this Idempotency-Key was used with a different request",
                                           {"Idempotency-Key": ["already used with a different body"]})
                        return stored.status_code, json.loads(stored.body)
                status, body = _create_or_count(session, deps, principal, data)
                if idempotency_key:
                    session.add(IdempotencyKey(principal=principal.name, key=idempotency_key,
                                               request_hash=request_hash, status_code=status,
                                               body=json.dumps(body), ticket_id=body["id"],
                                               created_at=deps.clock.now()))
                    session.flush()
                return status, body
        except IntegrityError as exc:
            if attempt == CREATE_ATTEMPTS - 1:
                raise
            log.info("concurrent duplicate create (%s); looking again", exc.orig.__class__.__name__)
    raise AssertionError("unreachable")


def _reporter(principal, given: dict | None) -> dict:
    """Defaults to the caller; staff may report on someone's behalf, a reporter only for themselves."""
    if given is None:
        if not principal.email:
            raise ApiError(422, "invalid fields: reporter", {"reporter": ["required (the caller has no email)"]})
        given = {"name": principal.name, "email": principal.email}
    elif principal.role == "reporter" and given["email"].lower() != (principal.email or "").lower():
        raise ApiError(403, "a reporter may only report for themselves", {"reporter": ["must be you"]})
    return {"name": given["name"], "email": given["email"].lower()}


def _create_or_count(session, deps: Intake, principal, data: dict) -> tuple[int, dict]:
    now = deps.clock.now()
    if data["priority"] and not principal.is_staff:
        raise ApiError(403, "only staff may set a priority; give impact and urgency",
                       {"priority": ["staff only"]})
    reporter = _reporter(principal, data["reporter"])
    impact, urgency = domain.impact_urgency(deps.priorities, data["impact"], data["urgency"])
    dedup = store.dedup_hash(reporter["email"], data["dedup_key"]) if data["dedup_key"] else None
    if dedup:
        existing = session.execute(select(Ticket).where(Ticket.dedup_active == dedup)
                                   .with_for_update()).scalar_one_or_none()
        if existing is not None:
            return 200, _count_occurrence(session, existing, principal, now)
    number = store.next_number(session)
    ticket = Ticket(
        id=str(uuid.uuid4()), number=number, key=f"INC-{number}", title=data["title"].strip(),
        description=data["description"], status="new",
        priority=data["priority"] or domain.priority_for(deps.priorities, impact, urgency),
        impact=impact, urgency=urgency, category=data["category"], service=data["service"],
        channel=data["channel"], reporter_name=reporter["name"], reporter_email=reporter["email"],
        language=data["language"], created_by=principal.name, dedup_key=data["dedup_key"], dedup_active=dedup,
        occurrences=1, reassignments=0, tiers_reached=[], at_risk=False, breached=False, breached_clocks=[],
        created_at=now, updated_at=now, version=1)
    session.add(ticket)
    session.flush()  # a dedup collision surfaces here, before anything else is written
    store.record(session, ticket, "created", actor=actor_of(principal), now=now, channel=ticket.channel,
                 priority=ticket.priority)
    store.emit(session, ticket, "ticket.created", now, description=ticket.description, impact=impact,
               urgency=urgency)
    return 201, store.to_dict(ticket, defects=[])  # a new ticket has no defects: no query


def _count_occurrence(session, ticket: Ticket, principal, now: dt.datetime) -> dict:
    old = ticket.occurrences
    ticket.occurrences = old + 1
    store.touch(ticket, now)
    changes = {"occurrences": {"old": old, "new": old + 1}}
    store.record(session, ticket, "occurrence", actor=actor_of(principal), now=now, **changes)
    store.emit(session, ticket, "ticket.updated", now, changes=changes, actor=store.person(principal))
    return store.represent(session, ticket)


# --- changes to an existing ticket -----------------------------------------------------------
def check_version(ticket: Ticket, if_match: str | None) -> None:
    """Optional optimistic concurrency: If-Match carries the version the client last saw."""
    if not if_match:
        return
    value = if_match.strip().removeprefix("W/").strip('"')
    if not value.isdigit():
        raise ApiError(422, "If-Match must be a ticket version", {"If-Match": ["not a version number"]})
    if int(value) != ticket.version:
        raise ApiError(409, f"stale update: the ticket is at version {ticket.version}",
                       {"If-Match": [f"current version is {ticket.version}"]})


def update_ticket(deps: Intake, principal, ticket_ref: str, data: dict, if_match: str | None) -> dict:
    now = deps.clock.now()
    with deps.db.transaction() as session:
        ticket = store.get_visible(session, ticket_ref, principal, lock=True)
        check_version(ticket, if_match)
        if ticket.status in ("closed", "cancelled"):
            raise ApiError(409, f"a {ticket.status} ticket cannot be changed", {"status": [ticket.status]})
        wanted = dict(data)
        if ("impact" in wanted or "urgency" in wanted) and "priority" not in wanted:
            impact, urgency = domain.impact_urgency(deps.priorities, wanted.get("impact", ticket.impact),
                                                    wanted.get("urgency", ticket.urgency))
            wanted["priority"] = domain.priority_for(deps.priorities, impact, urgency)
        elif "impact" in wanted or "urgency" in wanted:
            domain.impact_urgency(deps.priorities, wanted.get("impact"), wanted.get("urgency"))
        if "title" in wanted:
            wanted["title"] = wanted["title"].strip()
        changes = {}
        for name, value in wanted.items():
            if getattr(ticket, name) != value:
                changes[name] = {"old": getattr(ticket, name), "new": value}
                setattr(ticket, name, value)
        if not changes:
            return store.represent(session, ticket)
        store.touch(ticket, now)
        store.record(session, ticket, "updated", actor=actor_of(principal), now=now, **changes)
        store.emit(session, ticket, "ticket.updated", now, changes=changes, actor=store.person(principal))
        if "assignee" in changes and ticket.assignee and ticket.status == "new":
            store.set_status(session, ticket, "assigned", now, f"assigned to {ticket.assignee}",
                             actor=actor_of(principal), person=store.person(principal))
        return store.represent(session, ticket)


def change_status(deps: Intake, principal, ticket_ref: str, data: dict, if_match: str | None) -> dict:
    now = deps.clock.now()
    with deps.db.transaction() as session:
        ticket = store.get_visible(session, ticket_ref, principal, lock=True)
        check_version(ticket, if_match)
        domain.check_transition(ticket.status, data["status"], role=principal.role, reason=data["reason"],
                                resolved_at=as_utc(ticket.resolved_at) if ticket.resolved_at else None,
                                now=now, reopen_window_days=deps.reopen_window_days)
        store.set_status(session, ticket, data["status"], now, data["reason"], actor=actor_of(principal),
                         person=store.person(principal))
        return store.represent(session, ticket)
