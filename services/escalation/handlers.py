"""Event handlers of queue escalation.events: plain functions `(deps, session, event)`, run
inside the inbox transaction. `table(deps)` binds them for `service.consume`.

Events may come late, early or for tickets not seen yet: every ticket.* event carries the whole
ticket, so the read model is created from whichever arrives first; sla.* events for an unknown
ticket are logged and dropped (there is nothing to escalate yet).
"""
from __future__ import annotations

import functools
import logging

from sqlalchemy.orm import Session

from services.escalation import domain, registry
from services.escalation.models import EscalationRecord, FiredStep, Ticket
from services.escalation.moves import SYSTEM, Deps, Moves
from shared.clock import as_utc
from shared.events import Event

log = logging.getLogger(__name__)
CLOSED = ("resolved", "closed", "cancelled")


def table(deps: Deps) -> dict:
    return {event_type: functools.partial(handler, deps) for event_type, handler in (
        ("ticket.created", on_ticket_created), ("ticket.updated", on_ticket_updated),
        ("ticket.assigned", on_ticket_assigned), ("ticket.escalation_requested", on_escalation_requested),
        ("sla.warning", on_sla_event), ("sla.breached", on_sla_event))}


# --- the read model -------------------------------------------------------------------------
def sync_ticket(session: Session, event: Event, description: str | None = None) -> Ticket:
    """Upsert the ticket from the event's snapshot; an older snapshot never overwrites a newer one."""
    ref = event.payload["ticket"]
    ticket = session.get(Ticket, ref["id"], with_for_update=True)
    if ticket is None:
        ticket = Ticket(id=ref["id"], key=ref["key"], moves=0, auto_placed=False, description="",
                        tier=ref.get("tier"), group=ref.get("group"), assignee=ref.get("assignee"),
                        correlation_id=event.correlation_id, snapshot_at=event.occurred_at)
        if ref.get("tier") == "L1":
            ticket.l1_group, ticket.l1_assignee = ref.get("group"), ref.get("assignee")
        session.add(ticket)
    elif as_utc(ticket.snapshot_at) > event.occurred_at:
        if description and not ticket.description:  # ticket.created came after a newer update
            ticket.description = description[:20000]
        return ticket
    ticket.key, ticket.title = ref["key"], (ref.get("title") or "")[:200]
    ticket.priority, ticket.status, ticket.channel = ref.get("priority"), ref.get("status"), ref.get("channel")
    ticket.category, ticket.service = _clip(ref.get("category")), _clip(ref.get("service"))
    ticket.reporter, ticket.snapshot_at = ref.get("reporter"), event.occurred_at
    if description is not None:
        ticket.description = description[:20000]
    return ticket


def _clip(value: str | None) -> str | None:
    return value[:200] if value else value


def facts(ticket: Ticket) -> domain.TicketFacts:
    return domain.TicketFacts(priority=ticket.priority, category=ticket.category, service=ticket.service,
                              channel=ticket.channel)


def route_if_unplaced(moves: Moves, ticket: Ticket) -> bool:
    """Initial routing for a ticket no group holds yet (whichever ticket.* event came first)."""
    if ticket.group is not None:
        return False
    picked = domain.initial_group(registry.rules(moves.session), registry.default_group(moves.session),
                                  moves.groups.values(), facts(ticket))
    if picked is None:
        moves.record(ticket, "initial", outcome="skipped", why="no routing rule, default group or L1 group exists")
        return True
    group, why = picked
    moves.route(ticket, group, "initial", why=why)
    return True


def _ladder(session: Session, ticket: Ticket) -> domain.Ladder | None:
    return domain.ladder_for(registry.ladders(session), ticket.priority)


# --- handlers -------------------------------------------------------------------------------
def on_ticket_created(deps: Deps, session: Session, event: Event) -> None:
    ticket = sync_ticket(session, event, description=event.payload.get("description") or "")
    route_if_unplaced(Moves(deps, session, event), ticket)


def on_ticket_updated(deps: Deps, session: Session, event: Event) -> None:
    ticket = sync_ticket(session, event)
    moves = Moves(deps, session, event)
    if route_if_unplaced(moves, ticket):
        return
    changes = event.payload.get("changes") or {}
    if not ({"category", "service"} & changes.keys()) or not ticket.auto_placed:
        return  # only a ticket still where the rules put it is re-routed; people's moves stand
    picked = domain.initial_group(registry.rules(session), registry.default_group(session),
                                  moves.groups.values(), facts(ticket))
    if picked is None or picked[0].name == ticket.group:
        return
    group, why = picked
    ladder = _ladder(session, ticket)
    changed = ", ".join(f"{k} {v.get('old')!r} -> {v.get('new')!r}" for k, v in changes.items()
                        if k in ("category", "service"))
    actor = (event.payload.get("actor") or {}).get("name") or SYSTEM
    moves.guarded_route(ticket, group, "reroute", limit=ladder.ping_pong_limit if ladder else None,
                        who=actor, why=f"{changed}: {why}")


def on_ticket_assigned(deps: Deps, session: Session, event: Event) -> None:
    """Intake applied a placement: ours (escalation_id) or a person's."""
    ticket = sync_ticket(session, event)
    ref, escalation_id = event.payload["ticket"], event.payload.get("escalation_id")
    record = session.get(EscalationRecord, escalation_id) if escalation_id else None
    if record is not None:
        if record.applied_at is None:
            record.applied_at = deps.clock.now()
            if record.outcome == "routed":
                record.outcome = "applied"
        if record.id != ticket.last_escalation_id:
            log.info("%s: late confirmation of %s, a newer decision stands", ticket.key, record.id)
            return
    elif ref.get("group") not in (None, ticket.group):
        # Moved by a person in intake: counts for the ping-pong guard; the rules stop re-routing it.
        if ticket.group is not None:
            ticket.moves += 1
        ticket.auto_placed = False
    ticket.tier, ticket.group, ticket.assignee = ref.get("tier"), ref.get("group"), ref.get("assignee")
    if ticket.tier == "L1":
        ticket.l1_group, ticket.l1_assignee = ticket.group, ticket.assignee


def on_escalation_requested(deps: Deps, session: Session, event: Event) -> None:
    """Manual escalation: up always, sideways to a named group, down only for a lead or admin."""
    ticket = sync_ticket(session, event)
    moves = Moves(deps, session, event)
    p = event.payload
    who, role, to_tier, to_group = p["requested_by"]["name"], p["requested_by_role"], p["to_tier"], p.get("to_group")
    if to_group:
        target = moves.groups.get(to_group)
        missing = f"no support group named {to_group!r}"
    elif to_tier == ticket.tier:
        target, missing = None, f"already at {to_tier}; name a group to transfer within the tier"
    else:
        target = domain.group_for_tier(moves.groups.values(), to_tier, ticket.category, ticket.service)
        missing = f"no support group at tier {to_tier}"
    decision = domain.manual_decision(ticket.tier, ticket.group, target, to_tier, role)
    if target is None:
        decision = domain.ManualDecision(False, missing)
    reason = p["reason"]
    if not decision.allowed:
        moves.notify_manager(ticket, "manual", who=who, to=(to_tier, to_group or (target.name if target else None)),
                             outcome="refused", fallback="refused", event_trigger="refused",
                             why=f"request by {who} ({role}) refused: {decision.why}. Reason given: {reason}")
        return
    ladder = _ladder(session, ticket)
    limit = None if role in domain.PRIVILEGED_ROLES else (ladder.ping_pong_limit if ladder else None)
    moves.guarded_route(ticket, target, "manual", limit=limit, who=who, why=f"{reason} ({decision.why})")


def on_sla_event(deps: Deps, session: Session, event: Event) -> None:
    """The ladder: steps of the ticket's ladder that this warning/breach triggers, each once."""
    ticket = session.get(Ticket, event.ticket_id, with_for_update=True) if event.ticket_id else None
    if ticket is None:
        log.warning("%s for unknown ticket %s (%s): nothing to escalate", event.type, event.ticket_id,
                    event.payload.get("key"))
        return
    if ticket.status in CLOSED:
        return
    ladder = _ladder(session, ticket)
    if ladder is None:
        return
    clock, percent = event.payload["clock"], event.payload.get("percent")
    moves = Moves(deps, session, event)
    moved = False
    for step in domain.due_steps(ladder, event.type, clock, percent, ticket.tier):
        if moved and step.action == "next_tier":
            continue  # one move per SLA event; the new tier's own clocks take it from here
        if session.get(FiredStep, (ticket.id, clock, step.key)) is not None:
            continue
        what = f"{event.type} of {clock}" + (f" at {percent}%" if percent is not None else "")
        if step.action == "notify_manager":
            rec = moves.notify_manager(ticket, "ladder", why=what, clock=clock, percent=percent)
        else:
            rec = _next_tier(moves, ticket, ladder, what, clock, percent)
            moved = rec.outcome == "routed"
        session.add(FiredStep(ticket_id=ticket.id, clock=clock, step=step.key, fired_at=moves.now,
                              escalation_id=rec.id))


def _next_tier(moves: Moves, ticket: Ticket, ladder: domain.Ladder, what: str, clock: str,
               percent: int | None) -> EscalationRecord:
    """Functional escalation to the group of the next tier that handles this ticket."""
    group = domain.next_tier_group(moves.groups.values(), ticket.tier, ticket.category, ticket.service)
    if group is None:
        return moves.record(ticket, "ladder", outcome="skipped", clock=clock, percent=percent,
                            why=f"{what}: no higher tier to move to")
    return moves.guarded_route(ticket, group, "ladder", limit=ladder.ping_pong_limit, clock=clock,
                               percent=percent, why=what)
